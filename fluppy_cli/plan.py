"""Pure policies: sizes, part layout, object keys and retry delays. No I/O here."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fluppy_cli.errors import UsageError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000

DEFAULT_PART_SIZE = 8 * MiB
DEFAULT_THRESHOLD = 16 * MiB
DEFAULT_CONCURRENCY = 6  # as Uppy's `limit`

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": KiB,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": MiB,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": GiB,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": TiB,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str, *, option: str = "size") -> int:
    """Parse ``8MiB``, ``100MB``, ``1.5GiB`` or plain bytes into a byte count.

    Decimal units (kB, MB, GB) are powers of 1000 and binary units (KiB, MiB,
    GiB) powers of 1024, as in the IEC standard; a bare ``K``/``M``/``G`` is
    decimal too.
    """
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        msg = f"{option}: cannot read {text!r} as a size"
        raise UsageError(msg, hint="write it like 8MiB, 100MB or 5242880")
    return int(float(match.group(1)) * _UNITS[unit])


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Parse ``90s``, ``30m``, ``12h``, ``7d``, ``2w`` or plain seconds."""
    match = _DURATION_RE.match(text.lower())
    if not match:
        raise UsageError(f"{option}: cannot read {text!r} as a duration", hint="e.g. 7d, 12h, 30m")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def format_age(seconds: float) -> str:
    """``3d``, ``5h``, ``12m``, ``40s``: the largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def format_size(n: float) -> str:
    """Human-readable binary size: ``40.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def check_part_size(part_size: int) -> int:
    """Reject a requested part size that S3 would refuse."""
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        msg = f"--part-size {format_size(part_size)} is out of range"
        raise UsageError(msg, hint="S3 accepts parts from 5 MiB to 5 GiB")
    return part_size


def part_size_for(file_size: int, requested: int) -> int:
    """The part size to use for a file: the requested one, doubled until the file
    fits in 10,000 parts (as s3transfer's ChunksizeAdjuster), never above 5 GiB."""
    size = max(requested, MIN_PART_SIZE)
    while size * MAX_PARTS < file_size and size < MAX_PART_SIZE:
        size *= 2
    size = min(size, MAX_PART_SIZE)
    if size * MAX_PARTS < file_size:
        msg = f"a {format_size(file_size)} file is larger than S3's 10,000 parts of 5 GiB"
        raise UsageError(msg)
    return size


@dataclass(frozen=True)
class Part:
    """One part of a multipart upload: its 1-based number and byte range."""

    number: int
    offset: int
    length: int


def split_parts(file_size: int, part_size: int) -> list[Part]:
    """Lay a file out in parts; the last one may be shorter."""
    count = max(1, -(-file_size // part_size))
    return [
        Part(n + 1, n * part_size, min(part_size, file_size - n * part_size)) for n in range(count)
    ]


def use_multipart(file_size: int, threshold: int) -> bool:
    """Multipart above the threshold, and always above 5 GiB, S3's largest PUT.
    An empty file is always a single PUT: S3 cannot complete a multipart upload
    without a part."""
    return file_size > 0 and file_size > min(threshold, MAX_PART_SIZE)


def object_key(file_name: str, *, dest_key: str, several: bool) -> str:
    """The key a file gets, following ``aws s3 cp``.

    ``dest_key`` is what follows the bucket in ``--to``. One file to a key ending
    in ``/`` (or to the bare bucket) keeps its name under that prefix; to any other
    key it takes that key exactly. Several files always go under the prefix.
    """
    if not dest_key:
        return file_name
    if dest_key.endswith("/"):
        return dest_key + file_name
    if several:
        return f"{dest_key}/{file_name}"
    return dest_key


def retry_delay(
    attempt: int, *, base: float = 0.5, cap: float = 20.0, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): exponential
    backoff with full jitter, capped, as in AWS's standard retry mode."""
    return rand() * min(cap, base * 2.0**attempt)


def duplicate_keys(keys: Sequence[str]) -> list[str]:
    """Keys that more than one file would be uploaded to."""
    seen: set[str] = set()
    dup: list[str] = []
    for key in keys:
        if key in seen and key not in dup:
            dup.append(key)
        seen.add(key)
    return dup
