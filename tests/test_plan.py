"""Pure policies: sizes, part layout, keys, retry delays."""

from __future__ import annotations

import pytest

from fluppy_cli import plan
from fluppy_cli.errors import UsageError
from fluppy_cli.plan import GiB, MiB, TiB


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("5242880", 5 * MiB),
        ("8MiB", 8 * MiB),
        ("8mib", 8 * MiB),
        ("100MB", 100_000_000),
        ("100M", 100_000_000),
        ("1.5GiB", int(1.5 * GiB)),
        ("2 KiB", 2048),
        ("1kb", 1000),
        ("3TiB", 3 * TiB),
        ("7B", 7),
    ],
)
def test_parse_size_reads_decimal_and_binary_units(text: str, expected: int) -> None:
    assert plan.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "-5MiB", "5XB", "1e6", "five"])
def test_parse_size_rejects_what_it_cannot_read(text: str) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        plan.parse_size(text, option="--part-size")


@pytest.mark.parametrize(
    ("file_size", "requested", "expected"),
    [
        (40 * MiB, 5 * MiB, 5 * MiB),
        (0, 8 * MiB, 8 * MiB),
        (80_000 * MiB, 8 * MiB, 8 * MiB),  # exactly 10,000 parts
        (80_000 * MiB + 1, 8 * MiB, 16 * MiB),  # one byte more doubles the part
        (1 * TiB, 8 * MiB, 128 * MiB),
        (10_000 * 5 * GiB, 8 * MiB, 5 * GiB),  # the largest possible object
    ],
)
def test_part_size_doubles_until_the_file_fits_in_10000_parts(
    file_size: int, requested: int, expected: int
) -> None:
    size = plan.part_size_for(file_size, requested)
    assert size == expected
    assert len(plan.split_parts(file_size, size)) <= plan.MAX_PARTS


def test_part_size_refuses_a_file_larger_than_s3_allows() -> None:
    with pytest.raises(UsageError, match="10,000 parts of 5 GiB"):
        plan.part_size_for(10_000 * 5 * GiB + 1, 8 * MiB)


@pytest.mark.parametrize("size", [5 * MiB - 1, 5 * GiB + 1, 0])
def test_check_part_size_rejects_sizes_s3_would_refuse(size: int) -> None:
    with pytest.raises(UsageError, match="out of range"):
        plan.check_part_size(size)


def test_split_parts_covers_the_file_once() -> None:
    parts = plan.split_parts(12 * MiB + 3, 5 * MiB)
    assert [(p.number, p.offset, p.length) for p in parts] == [
        (1, 0, 5 * MiB),
        (2, 5 * MiB, 5 * MiB),
        (3, 10 * MiB, 2 * MiB + 3),
    ]


@pytest.mark.parametrize(
    ("size", "threshold", "expected"),
    [
        (0, 0, False),
        (1, 0, True),
        (16 * MiB, 16 * MiB, False),
        (16 * MiB + 1, 16 * MiB, True),
        (5 * GiB, 10 * GiB, False),
        (5 * GiB + 1, 10 * GiB, True),  # larger than S3's largest PUT
    ],
)
def test_use_multipart_above_the_threshold_and_never_for_empty_files(
    size: int, threshold: int, expected: bool
) -> None:
    assert plan.use_multipart(size, threshold) is expected


@pytest.mark.parametrize(
    ("dest_key", "several", "expected"),
    [
        ("", False, "a.txt"),
        ("", True, "a.txt"),
        ("dir/", False, "dir/a.txt"),
        ("dir/", True, "dir/a.txt"),
        ("exact.bin", False, "exact.bin"),
        ("dir", True, "dir/a.txt"),
        ("deep/er/", False, "deep/er/a.txt"),
    ],
)
def test_object_key_follows_aws_s3_cp(dest_key: str, several: bool, expected: str) -> None:
    assert plan.object_key("a.txt", dest_key=dest_key, several=several) == expected


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [(0, 1.0, 0.5), (1, 1.0, 1.0), (3, 0.5, 2.0), (10, 1.0, 20.0), (10, 0.0, 0.0)],
)
def test_retry_delay_is_capped_exponential_with_jitter(
    attempt: int, rand: float, expected: float
) -> None:
    assert plan.retry_delay(attempt, rand=lambda: rand) == expected


def test_duplicate_keys_are_found_once() -> None:
    assert plan.duplicate_keys(["a", "b", "a", "a", "c"]) == ["a"]
    assert plan.duplicate_keys(["a", "b"]) == []


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (40 * MiB, "40.0 MiB")]
)
def test_format_size(n: int, text: str) -> None:
    assert plan.format_size(n) == text
