"""Options resolved into values the engine can use: flags win over environment
variables (typer reads those), which win over defaults. No network here."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fluppy_cli.credentials import (
    DEFAULT_TIMEOUT,
    CommandSource,
    CredentialSource,
    UrlSource,
    check_creds_url,
    header_pairs,
)
from fluppy_cli.errors import UsageError

DEFAULT_REGION = "us-east-1"
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
_META_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP header token


@dataclass(frozen=True)
class Destination:
    """``s3://bucket/key``: ``bucket`` is None when it should come from the credentials."""

    bucket: str | None
    key: str


def parse_destination(text: str | None) -> Destination:
    """Read ``--to s3://BUCKET[/KEY-OR-PREFIX]``."""
    if text is None:
        return Destination(None, "")
    if not text.startswith("s3://"):
        msg = f"--to {text!r} is not an s3:// URL"
        raise UsageError(msg, hint="write it like s3://my-bucket/some/prefix/")
    bucket, _, key = text[len("s3://") :].partition("/")
    if not _BUCKET_RE.match(bucket):
        msg = f"--to {text!r} has no valid bucket name"
        raise UsageError(msg, hint="write it like s3://my-bucket/some/prefix/")
    return Destination(bucket, key)


def parse_metadata(items: Sequence[str]) -> dict[str, str]:
    """``--metadata KEY=VALUE`` pairs, checked to fit in HTTP headers."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not _META_NAME_RE.match(name):
            raise UsageError(
                f"--metadata {item!r} is not KEY=VALUE", hint="e.g. --metadata owner=ci"
            )
        if not value.isascii() or any(c in value for c in "\r\n"):
            msg = f"--metadata {name}: the value must be printable ASCII on one line"
            raise UsageError(msg)
        out[name.lower()] = value
    return out


def credential_source(
    *,
    command: str | None,
    url: str | None,
    headers: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    required: bool = True,
) -> CredentialSource | None:
    """Exactly one of ``--creds-cmd`` and ``--creds-url``.

    ``FLUPPY_CREDS_HEADERS`` holds extra headers, one per line, used when no
    ``--creds-header`` is given.
    """
    if command and url:
        msg = "both --creds-cmd and --creds-url are set (flags or FLUPPY_CREDS_* variables)"
        raise UsageError(msg, hint="choose one credential source")
    if timeout <= 0:
        raise UsageError("--creds-timeout must be more than 0 seconds")
    if command:
        if headers:
            raise UsageError("--creds-header goes with --creds-url, not --creds-cmd")
        return CommandSource(command, timeout)
    if url:
        lines = list(headers) or os.environ.get("FLUPPY_CREDS_HEADERS", "").splitlines()
        return UrlSource(check_creds_url(url), header_pairs(lines), timeout)
    if required:
        msg = "no credential source"
        raise UsageError(msg, hint="give --creds-cmd 'COMMAND' or --creds-url URL")
    return None


def check_concurrency(value: int) -> int:
    """At least one request in flight; more than 64 only hurts on one machine."""
    if not 1 <= value <= 64:
        raise UsageError(f"--concurrency {value} is out of range", hint="use 1 to 64")
    return value


def check_signer_url(url: str | None) -> str | None:
    """The signing backend's base URL (its routes are under /s3/)."""
    if not url:
        return None
    if not re.match(r"^https?://[^/?#]+", url):
        msg = f"--signer {url!r} is not an http(s) URL"
        raise UsageError(msg, hint="e.g. https://companion.example.com")
    return url.rstrip("/")


def check_endpoint_url(url: str | None) -> str | None:
    """A bare scheme://host[:port]; a path would silently change every key."""
    if url is None:
        return None
    m = re.match(r"^(https?)://([^/?#]+)/?$", url)
    if not m:
        msg = f"--endpoint-url {url!r} is not http(s)://HOST[:PORT]"
        raise UsageError(msg, hint="e.g. --endpoint-url http://127.0.0.1:9000")
    return f"{m.group(1)}://{m.group(2)}"
