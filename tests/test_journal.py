"""The journal's own logic: fingerprints, entries, selection, locks, throttled
recording. The end-to-end behaviour is in test_resume.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fluppy_cli.errors import UsageError
from fluppy_cli.journal import (
    SAMPLE_SIZE,
    SAMPLES,
    Entry,
    Fingerprint,
    Journal,
    PartRecord,
    Recording,
    sample_offsets,
)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, []),
        (10, [0]),
        (SAMPLE_SIZE * 2, [0, SAMPLE_SIZE]),
        (SAMPLES * SAMPLE_SIZE, [i * SAMPLE_SIZE for i in range(SAMPLES)]),
    ],
)
def test_small_files_are_read_whole(size: int, expected: list[int]) -> None:
    assert sample_offsets(size) == expected


def test_large_files_are_sampled_evenly_including_both_ends() -> None:
    size = 10**9
    offsets = sample_offsets(size)
    assert len(offsets) == SAMPLES
    assert offsets[0] == 0
    assert offsets[-1] == size - SAMPLE_SIZE
    assert offsets == sorted(offsets)


def test_fingerprint_names_what_changed(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(3 * 1024 * 1024))
    before = Fingerprint.of(f)
    assert before.differences(Fingerprint.of(f)) == []
    data = bytearray(f.read_bytes())
    data[0] ^= 1
    st = f.stat()
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert Fingerprint.of(f).differences(before) == ["content"]
    with f.open("ab") as out:
        out.write(b"x")
    assert Fingerprint.of(f).differences(before) == ["size", "modification time", "content"]


def entry(upload_id: str = "UPLOAD-abcdef-1") -> Entry:
    return Entry(
        upload_id=upload_id,
        bucket="b",
        key="k",
        endpoint="http://127.0.0.1:9",
        region="us-east-1",
        path_style=True,
        part_size=5 * 1024 * 1024,
        checksum="crc64nvme",
        content_type="application/octet-stream",
        source="/data/f.bin",
        fingerprint=Fingerprint(10, 20, "ab"),
        credentials={"command": "creds", "timeout": 60.0},
        parts={2: PartRecord(2, 5, "etag2", "c2=="), 1: PartRecord(1, 5, "etag1", "c1==")},
    )


def test_entries_survive_a_round_trip_with_parts_in_order(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j")
    journal.save(entry())
    (path,) = (tmp_path / "j").glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["version"] == 2
    assert [p["number"] for p in doc["parts"]] == [1, 2]
    assert journal.entries() == [entry()]
    assert list((tmp_path / "j").glob(".*.tmp")) == []  # no temp file left behind


def test_select_by_id_or_unique_prefix(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j")
    journal.save(entry("UPLOAD-abcdef-1"))
    journal.save(entry("UPLOAD-abcdef-2"))
    assert journal.select(["UPLOAD-abcdef-2"])[0].upload_id == "UPLOAD-abcdef-2"
    with pytest.raises(UsageError, match="matches several"):
        journal.select(["UPLOAD-abc"])
    with pytest.raises(UsageError, match="no upload 'UPL'"):
        journal.select(["UPL"])  # too short to count as a prefix


def test_a_claimed_upload_cannot_be_claimed_twice(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j")
    e = entry()
    with journal.claim(e), pytest.raises(UsageError, match="in use by another"), journal.claim(e):
        pass
    with journal.claim(e):  # released when the first claim ended
        pass


def test_recording_writes_at_most_once_per_interval_and_everything_on_flush(
    tmp_path: Path,
) -> None:
    journal = Journal.open(tmp_path / "j")
    e = entry()
    e.parts.clear()
    rec = Recording(journal, e, interval=60)
    rec.add_part(PartRecord(1, 5, "e1", "c1"))  # the first one is written at once
    rec.add_part(PartRecord(2, 5, "e2", "c2"))
    assert sorted(journal.entries()[0].parts) == [1]
    rec.flush()
    assert sorted(journal.entries()[0].parts) == [1, 2]
    rec.finish()
    assert journal.entries() == []


def test_journal_folder_that_cannot_be_made_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot use the journal folder"):
        Journal.open(blocker / "j")


def test_entry_age(tmp_path: Path) -> None:
    e = entry()
    e.created = "2020-01-01T00:00:00+00:00"
    assert e.age_seconds() > 3 * 365 * 86400


def test_a_version_1_entry_is_migrated_when_read(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j")
    journal.save(entry())
    (path,) = (tmp_path / "j").glob("*.json")
    doc = json.loads(path.read_text())
    doc["version"] = 1
    del doc["signer"]  # what fluppy 0.1 before backend mode wrote
    path.write_text(json.dumps(doc))
    (read,) = journal.entries()
    assert read.signer == ""
    assert read == entry()
    assert journal.problems == []
