"""Checksums: per-part values combine into what the server reports for the whole."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import pytest

from fluppy_cli import checksums

DATA = os.urandom(3 * 1024 * 1024 + 17)
PARTS = [DATA[: 1024 * 1024], DATA[1024 * 1024 : 2 * 1024 * 1024], DATA[2 * 1024 * 1024 :]]


@pytest.mark.parametrize("name", ["crc64nvme", "crc32c", "crc32"])
def test_crc_parts_combine_into_the_crc_of_the_whole_file(name: str) -> None:
    alg = checksums.get(name)
    assert alg.expected_multipart([alg.digest(p) for p in PARTS]) == alg.digest(DATA).value


def test_crc32_matches_zlib() -> None:
    expected = base64.b64encode(zlib.crc32(DATA).to_bytes(4, "big")).decode()
    assert checksums.get("crc32").digest(DATA).value == expected


def test_sha256_multipart_is_composite_with_the_part_count() -> None:
    alg = checksums.get("sha256")
    digests = [alg.digest(p) for p in PARTS]
    joined = b"".join(hashlib.sha256(p).digest() for p in PARTS)
    want = base64.b64encode(hashlib.sha256(joined).digest()).decode() + "-3"
    assert alg.expected_multipart(digests) == want
    assert alg.payload_sha256(digests[0]) == hashlib.sha256(PARTS[0]).hexdigest()


def test_md5_gives_the_multipart_etag_s3_computes() -> None:
    alg = checksums.get("md5")
    digests = [alg.digest(p) for p in PARTS]
    joined = b"".join(hashlib.md5(p).digest() for p in PARTS)
    assert alg.expected_multipart_etag(digests) == hashlib.md5(joined).hexdigest() + "-3"
    assert digests[0].md5_hex == hashlib.md5(PARTS[0]).hexdigest()
    assert alg.header == "Content-MD5"
    assert alg.expected_multipart(digests) is None


def test_none_sends_nothing() -> None:
    alg = checksums.get("none")
    assert not alg.enabled
    assert alg.digest(DATA).value == ""
    assert alg.expected_multipart([alg.digest(DATA)]) is None
    assert alg.expected_multipart_etag([alg.digest(DATA)]) is None
    assert alg.payload_sha256(alg.digest(DATA)) is None


def test_every_name_the_cli_offers_exists() -> None:
    assert set(checksums.NAMES) == set(checksums.ALGORITHMS)
    assert checksums.DEFAULT in checksums.NAMES
