"""Checksum algorithms: what to send with each PUT and part, and what the server
should answer once a multipart upload is complete.

CRC algorithms use S3's full-object checksum type for multipart uploads: the
per-part CRCs combine into the CRC of the whole file, which the server verifies
and returns. SHA-256 is only composite on S3 (a hash of the part hashes, with a
``-N`` suffix). MD5 travels as ``Content-MD5`` and is checked against the ETag.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from awscrt import checksums as crt

Buffer = bytes | bytearray | memoryview

NAMES = ("crc64nvme", "crc32c", "crc32", "sha256", "md5", "none")
DEFAULT = "crc64nvme"  # as aws-cli v2: fast, and S3 verifies it for the whole object


@dataclass(frozen=True)
class PartDigest:
    """A checksum of one body: the value to send (base64) and what combining needs."""

    value: str  # base64, as S3 writes it in headers and XML
    raw: bytes
    crc: int = 0
    length: int = 0
    md5_hex: str = ""  # only for the md5 algorithm: the expected ETag


@dataclass(frozen=True)
class Algorithm:
    """One ``--checksum`` choice."""

    name: str
    aws_name: str  # x-amz-checksum-algorithm value, "" when none
    header: str  # request header that carries the value
    xml_tag: str  # element in CompleteMultipartUpload and its answer
    multipart_type: str  # x-amz-checksum-type for multipart: FULL_OBJECT or COMPOSITE
    _digest: Callable[[Buffer], PartDigest]
    _combine: Callable[[int, int, int], int] | None = None
    _width: int = 0

    @property
    def enabled(self) -> bool:
        return self.name != "none"

    def digest(self, data: Buffer) -> PartDigest:
        """Checksum one request body."""
        return self._digest(data)

    def payload_sha256(self, digest: PartDigest | None) -> str | None:
        """The hex SHA-256 for SigV4's payload hash when this algorithm computed it."""
        if self.name == "sha256" and digest is not None:
            return digest.raw.hex()
        return None

    def expected_multipart(self, parts: Sequence[PartDigest]) -> str | None:
        """What the server should report for the whole object after completion."""
        if self._combine is not None:
            total = 0
            for part in parts:
                total = self._combine(total, part.crc, part.length)
            return _b64(total.to_bytes(self._width, "big"))
        if self.name == "sha256":
            joined = b"".join(p.raw for p in parts)
            return f"{_b64(hashlib.sha256(joined).digest())}-{len(parts)}"
        return None

    def expected_multipart_etag(self, parts: Sequence[PartDigest]) -> str | None:
        """S3's multipart ETag (MD5 of the part MD5s, ``-N``), known only for md5."""
        if self.name != "md5":
            return None
        joined = b"".join(p.raw for p in parts)
        return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _crc(fn: Callable[[Buffer], int], width: int) -> Callable[[Buffer], PartDigest]:
    def digest(data: Buffer) -> PartDigest:
        value = fn(data)
        raw = value.to_bytes(width, "big")
        return PartDigest(_b64(raw), raw, crc=value, length=len(data))

    return digest


def _sha256(data: Buffer) -> PartDigest:
    raw = hashlib.sha256(data).digest()
    return PartDigest(_b64(raw), raw, length=len(data))


def _md5(data: Buffer) -> PartDigest:
    h = hashlib.md5(data)
    return PartDigest(_b64(h.digest()), h.digest(), length=len(data), md5_hex=h.hexdigest())


def _nothing(data: Buffer) -> PartDigest:
    return PartDigest("", b"", length=len(data))


ALGORITHMS: dict[str, Algorithm] = {
    "crc64nvme": Algorithm(
        "crc64nvme",
        "CRC64NVME",
        "x-amz-checksum-crc64nvme",
        "ChecksumCRC64NVME",
        "FULL_OBJECT",
        _crc(crt.crc64nvme, 8),
        crt.combine_crc64nvme,
        8,
    ),
    "crc32c": Algorithm(
        "crc32c",
        "CRC32C",
        "x-amz-checksum-crc32c",
        "ChecksumCRC32C",
        "FULL_OBJECT",
        _crc(crt.crc32c, 4),
        crt.combine_crc32c,
        4,
    ),
    "crc32": Algorithm(
        "crc32",
        "CRC32",
        "x-amz-checksum-crc32",
        "ChecksumCRC32",
        "FULL_OBJECT",
        _crc(crt.crc32, 4),
        crt.combine_crc32,
        4,
    ),
    "sha256": Algorithm(
        "sha256",
        "SHA256",
        "x-amz-checksum-sha256",
        "ChecksumSHA256",
        "COMPOSITE",
        _sha256,
    ),
    "md5": Algorithm("md5", "", "Content-MD5", "", "", _md5),
    "none": Algorithm("none", "", "", "", "", _nothing),
}


def get(name: str) -> Algorithm:
    """The algorithm called ``name`` (one of ``NAMES``)."""
    return ALGORITHMS[name]
