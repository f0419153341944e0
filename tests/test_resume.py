"""Resume: the journal survives kill -9, Ctrl-C and concurrent runs; `resume`,
`abort` and `list` work on it. Real processes against moto (auth on, STS
credentials) and SeaweedFS; the server is asked what it holds every time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import servers
from conftest import Result, fetch, mint_cmd, weed_cmd

from fluppy_cli.errors import ExitStatus
from fluppy_cli.plan import MiB

BUCKET = servers.BUCKET
PART = 5 * MiB


@dataclass
class Store:
    """One server under test: its URL, a credentials command, a verifying client."""

    name: str
    url: str
    creds: str
    client: object


@pytest.fixture(params=["moto", "seaweed"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "moto":
        moto: servers.Moto = request.getfixturevalue("moto")
        return Store("moto", moto.url, mint_cmd(), moto.client("s3"))
    weed: servers.Seaweed = request.getfixturevalue("seaweed")
    return Store("seaweed", weed.url, weed_cmd(weed), weed.client())


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def upload_argv(store: Store, f: Path, key: str, journal: Path, *extra: str) -> list[str]:
    return [
        "upload", str(f), "--to", f"s3://{BUCKET}/{key}", "--endpoint-url", store.url,
        "--creds-cmd", store.creds, "--part-size", "5MiB", "--journal", str(journal),
        "--json", *extra,
    ]  # fmt: skip


def entries(journal: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(journal.glob("*.json"))]


def lose(store: Store, entry: dict[str, object]) -> None:
    """The server forgets an upload behind fluppy's back (a lifecycle rule, a person)."""
    store.client.abort_multipart_upload(  # type: ignore[attr-defined]
        Bucket=BUCKET, Key=entry["key"], UploadId=entry["upload_id"]
    )


def open_uploads(store: Store, key: str) -> list[str]:
    got = store.client.list_multipart_uploads(Bucket=BUCKET, Prefix=key)  # type: ignore[attr-defined]
    return [u["UploadId"] for u in got.get("Uploads", [])]


@pytest.mark.parametrize(
    ("fault", "on_server"),
    [("after-create", 0), ("after-ack:3", 3), ("before-complete", 6)],
    ids=["before-the-first-part", "between-ack-and-journal", "before-completion"],
)
def test_kill_9_at_any_point_then_resume_gives_identical_bytes(
    fluppy: Callable[..., Result],
    store: Store,
    make_file: Callable[..., Path],
    journal: Path,
    fault: str,
    on_server: int,
) -> None:
    f = make_file("crash.bin", 6 * PART - 123)
    key = f"crash/{store.name}-{fault}.bin"
    argv = upload_argv(store, f, key, journal, "-j", "1")
    dead = fluppy(*argv, env={"FLUPPY_FAULT": fault})
    assert dead.code == 137, dead.err
    (entry,) = entries(journal)
    assert entry["upload_id"] in open_uploads(store, key)
    # the journal never runs ahead of the server
    assert len(entry["parts"]) <= on_server  # type: ignore[arg-type]

    r = fluppy(*argv)  # the same command resumes by itself, as gsutil does
    assert r.code == 0, r.err
    (rec,) = r.json_lines()
    assert rec["upload_id"] == entry["upload_id"]
    assert rec["resumed_bytes"] == min(on_server * PART, f.stat().st_size)
    assert rec["sent_bytes"] == f.stat().st_size - rec["resumed_bytes"]  # nothing sent twice
    assert fetch(store.client, BUCKET, key) == f.read_bytes()
    assert entries(journal) == []
    assert open_uploads(store, key) == []


def test_real_sigkill_mid_upload_then_resume(
    moto: servers.Moto,
    moto_proxy: servers.Proxy,
    fluppy: Callable[..., Result],
    make_file: Callable[..., Path],
    journal: Path,
) -> None:
    store = Store("moto", moto_proxy.url, mint_cmd(), moto.client("s3"))
    f = make_file("killed.bin", 8 * PART)
    argv = upload_argv(store, f, "killed.bin", journal, "-j", "2")
    moto_proxy.rate = 4 * MiB
    proc = subprocess.Popen([sys.executable, "-m", "fluppy_cli", *argv], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(len(e["parts"]) >= 2 for e in entries(journal)):  # type: ignore[arg-type]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (entry,) = entries(journal)
    recorded = len(entry["parts"])  # type: ignore[arg-type]
    assert recorded >= 2
    moto_proxy.rate = 0
    r = fluppy("resume", str(entry["upload_id"]), "--journal", str(journal), "--json")
    assert r.code == 0, r.err
    (rec,) = r.json_lines()
    assert rec["resumed_bytes"] >= recorded * PART
    # only what the server lacked went again: at most concurrency x part size was in flight
    assert rec["sent_bytes"] == f.stat().st_size - rec["resumed_bytes"]
    assert fetch(moto.client("s3"), BUCKET, "killed.bin") == f.read_bytes()


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_keeps_the_upload_and_prints_the_resume_command(
    moto: servers.Moto,
    moto_proxy: servers.Proxy,
    make_file: Callable[..., Path],
    journal: Path,
    sig: str,
    code: int,
) -> None:
    store = Store("moto", moto_proxy.url, mint_cmd(), moto.client("s3"))
    f = make_file("stopped.bin", 6 * PART)
    moto_proxy.rate = 1 * MiB
    argv = upload_argv(store, f, "stopped.bin", journal, "-j", "2", "--progress", "lines")
    argv.remove("--json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluppy_cli", *argv], stderr=subprocess.PIPE, text=True
    )
    time.sleep(3)
    started = time.monotonic()
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 5  # parts in flight are cut, not awaited
    assert proc.returncode == code, err
    assert f"fluppy: interrupted by {sig}" in err
    assert "Traceback" not in err
    (entry,) = entries(journal)
    resume_line = f"fluppy resume {entry['upload_id']} --journal {journal}"
    assert resume_line in err
    assert entry["upload_id"] in open_uploads(store, "stopped.bin")
    moto_proxy.rate = 0
    r = subprocess.run(
        [sys.executable, "-m", "fluppy_cli", *resume_line.split()[1:]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert fetch(moto.client("s3"), BUCKET, "stopped.bin") == f.read_bytes()


def test_a_second_signal_exits_at_once_and_the_journal_stays_readable(
    moto: servers.Moto,
    moto_proxy: servers.Proxy,
    fluppy: Callable[..., Result],
    make_file: Callable[..., Path],
    journal: Path,
) -> None:
    store = Store("moto", moto_proxy.url, mint_cmd(), moto.client("s3"))
    f = make_file("twice.bin", 6 * PART)
    moto_proxy.rate = 1 * MiB
    argv = upload_argv(store, f, "twice.bin", journal, "-j", "2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluppy_cli", *argv], stderr=subprocess.PIPE, text=True
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (entry,) = entries(journal)  # complete, parseable JSON whatever the moment
    moto_proxy.rate = 0
    r = fluppy("resume", str(entry["upload_id"]), "--journal", str(journal))
    assert r.code == 0, r.err
    assert fetch(moto.client("s3"), BUCKET, "twice.bin") == f.read_bytes()


def test_resume_all_goes_on_past_an_upload_that_cannot_resume(
    fluppy: Callable[..., Result],
    moto: servers.Moto,
    make_file: Callable[..., Path],
    journal: Path,
) -> None:
    store = Store("moto", moto.url, mint_cmd(), moto.client("s3"))
    files = [make_file(f"pair{i}.bin", 4 * PART) for i in range(2)]
    for f in files:
        argv = upload_argv(store, f, f.name, journal, "-j", "1")
        assert fluppy(*argv, env={"FLUPPY_FAULT": "after-ack:2"}).code == 137
    files[0].write_bytes(b"replaced")
    r = fluppy("resume", "--all", "--journal", str(journal), "--json")
    assert r.code == ExitStatus.USAGE
    assert "pair0.bin changed since its upload began" in r.err
    assert "1 of 2 files failed" in r.err
    assert fetch(store.client, BUCKET, "pair1.bin") == files[1].read_bytes()


def test_two_processes_share_one_journal(
    fluppy: Callable[..., Result],
    moto: servers.Moto,
    make_file: Callable[..., Path],
    journal: Path,
) -> None:
    store = Store("moto", moto.url, mint_cmd(), moto.client("s3"))
    files = [make_file(f"twin{i}.bin", 4 * PART) for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fluppy_cli",
                *upload_argv(store, f, f.name, journal, "-j", "1"),
            ],
            env={**os.environ, "FLUPPY_FAULT": "after-ack:3"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for f in files
    ]
    assert [p.wait() for p in procs] == [137, 137]
    listed = fluppy("list", "--json", "--journal", str(journal)).json_lines()
    assert sorted(e["source"] for e in listed) == sorted(str(f) for f in files)
    r = fluppy("resume", "--all", "--journal", str(journal), "--json")
    assert r.code == 0, r.err
    assert len(r.json_lines()) == 2
    for f in files:
        assert fetch(store.client, BUCKET, f.name) == f.read_bytes()
    assert entries(journal) == []


@pytest.fixture
def crashed(
    fluppy: Callable[..., Result],
    moto: servers.Moto,
    make_file: Callable[..., Path],
    journal: Path,
) -> tuple[Store, Path, list[str], dict[str, object]]:
    """An upload killed after its second part was acknowledged (and not journaled)."""
    store = Store("moto", moto.url, mint_cmd(), moto.client("s3"))
    f = make_file("halfway.bin", 4 * PART)
    argv = upload_argv(store, f, "halfway.bin", journal, "-j", "1")
    assert fluppy(*argv, env={"FLUPPY_FAULT": "after-ack:2"}).code == 137
    (entry,) = entries(journal)
    return store, f, argv, entry


def test_a_file_changed_since_the_upload_began_is_never_resumed(
    fluppy: Callable[..., Result], crashed: tuple[Store, Path, list[str], dict[str, object]]
) -> None:
    store, f, argv, entry = crashed
    data = bytearray(f.read_bytes())
    data[MiB] ^= 0xFF  # same size, one byte different, in part 1, between sampled blocks
    st = f.stat()
    f.write_bytes(bytes(data))
    r = fluppy(*argv)
    assert r.code == ExitStatus.USAGE
    assert "changed since its upload began" in r.err
    assert "--restart" in r.err
    assert fluppy("resume", "--all", "--journal", argv[argv.index("--journal") + 1]).code == 2
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # with the old mtime back, outside
    r = fluppy(*argv)  # the sampled blocks, only re-reading the uploaded parts can tell
    assert r.code == ExitStatus.USAGE
    assert "part 1 differs from what the server holds" in r.err
    r = fluppy(*argv, "--restart")
    assert r.code == 0, r.err
    assert r.json_lines()[0]["upload_id"] != entry["upload_id"]
    assert fetch(store.client, BUCKET, "halfway.bin") == bytes(data)
    assert entry["upload_id"] not in open_uploads(store, "halfway.bin")  # the old one aborted


def test_an_upload_gone_from_the_server_is_dropped_with_advice(
    fluppy: Callable[..., Result], crashed: tuple[Store, Path, list[str], dict[str, object]]
) -> None:
    store, _f, argv, entry = crashed
    lose(store, entry)
    journal = argv[argv.index("--journal") + 1]
    r = fluppy("resume", str(entry["upload_id"])[:10], "--journal", journal)
    assert r.code == ExitStatus.FAILED
    assert "gone from the server" in r.err
    assert "start again with: fluppy upload" in r.err
    assert entries(Path(journal)) == []


def test_upload_starts_again_when_the_server_lost_the_upload(
    fluppy: Callable[..., Result], crashed: tuple[Store, Path, list[str], dict[str, object]]
) -> None:
    store, f, argv, entry = crashed
    lose(store, entry)
    r = fluppy(*argv)
    assert r.code == 0, r.err
    assert "gone from the server" in r.err
    assert r.json_lines()[0]["resumed_bytes"] == 0
    assert fetch(store.client, BUCKET, "halfway.bin") == f.read_bytes()


def test_abort_removes_the_upload_and_the_entry(
    fluppy: Callable[..., Result], crashed: tuple[Store, Path, list[str], dict[str, object]]
) -> None:
    store, _f, argv, entry = crashed
    journal = argv[argv.index("--journal") + 1]
    assert "aborted" not in fluppy("abort", "--all", "--older-than", "7d", "--journal", journal).out
    r = fluppy("abort", str(entry["upload_id"]), "--journal", journal)
    assert r.code == 0, r.err
    assert f"aborted {str(entry['upload_id'])[:16]}" in r.out
    assert open_uploads(store, "halfway.bin") == []
    assert entries(Path(journal)) == []
    listed = fluppy("list", "--journal", journal)
    assert (listed.code, listed.out) == (0, "")
    assert "no uploads in progress" in listed.err


def test_abort_of_an_upload_already_gone_is_success(
    fluppy: Callable[..., Result], crashed: tuple[Store, Path, list[str], dict[str, object]]
) -> None:
    store, _f, argv, entry = crashed
    lose(store, entry)
    journal = argv[argv.index("--journal") + 1]
    r = fluppy("abort", "--all", "--journal", journal, "--json")
    assert r.code == 0, r.err
    assert r.json_lines()[0]["event"] == "aborted"


def test_a_part_the_journal_missed_is_verified_or_sent_again(
    fluppy: Callable[..., Result], crashed: tuple[Store, Path, list[str], dict[str, object]]
) -> None:
    store, f, argv, _entry = crashed
    data = bytearray(f.read_bytes())
    data[PART + MiB] ^= 0xFF  # in part 2: acknowledged, never journaled
    st = f.stat()
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = fluppy(*argv)
    assert r.code == 0, r.err
    assert r.json_lines()[0]["resumed_bytes"] == PART  # only part 1 could be verified
    assert fetch(store.client, BUCKET, "halfway.bin") == bytes(data)


def test_abort_remote_cleans_up_uploads_the_journal_does_not_know(
    fluppy: Callable[..., Result],
    seaweed: servers.Seaweed,
    make_file: Callable[..., Path],
    journal: Path,
) -> None:
    # SeaweedFS, since moto reports every upload as initiated in 2010.
    store = Store("seaweed", seaweed.url, weed_cmd(seaweed), seaweed.client())
    f = make_file("remote.bin", 4 * PART)
    argv = upload_argv(store, f, "remote/known.bin", journal, "-j", "1")
    assert fluppy(*argv, env={"FLUPPY_FAULT": "after-ack:1"}).code == 137
    (entry,) = entries(journal)
    stray = store.client.create_multipart_upload(Bucket=BUCKET, Key="remote/stray.bin")  # type: ignore[attr-defined]
    base = ["abort", "--remote", "--to", f"s3://{BUCKET}/remote/", "--endpoint-url", store.url]
    base += ["--creds-cmd", store.creds, "--journal", str(journal)]
    young = fluppy(*base)
    assert young.code == 0, young.err
    assert stray["UploadId"] in open_uploads(store, "remote/stray.bin")  # not 7 days old
    time.sleep(1.1)
    dry = fluppy(*base, "--older-than", "1s", "--dry-run")
    assert f"would abort {stray['UploadId'][:16]}" in dry.out
    assert stray["UploadId"] in open_uploads(store, "remote/stray.bin")
    r = fluppy(*base, "--older-than", "1s")
    assert r.code == 0, r.err
    assert open_uploads(store, "remote/stray.bin") == []
    assert entry["upload_id"] in open_uploads(store, "remote/known.bin")  # the journal's stays


def test_list_shows_progress_and_the_journal_keeps_no_secrets(
    fluppy: Callable[..., Result],
    moto: servers.Moto,
    make_file: Callable[..., Path],
    tmp_path: Path,
) -> None:
    f = make_file("listed.bin", 4 * PART)
    record = tmp_path / "issued.jsonl"
    creds = mint_cmd("process", "--record", str(record))
    argv = ["upload", str(f), "--to", f"s3://{BUCKET}/listed.bin", "--endpoint-url", moto.url]
    argv += ["--creds-cmd", creds, "--part-size", "5MiB", "-j", "1"]
    # no --journal: the default folder under XDG_STATE_HOME (set per test by conftest)
    assert fluppy(*argv, env={"FLUPPY_FAULT": "after-ack:3"}).code == 137
    folder = tmp_path / "state" / "fluppy" / "uploads"
    (path,) = folder.glob("*.json")
    assert folder.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    issued = json.loads(record.read_text())
    assert issued["SecretAccessKey"] not in text
    assert issued["SessionToken"] not in text
    assert json.loads(text)["credentials"] == {"command": creds, "timeout": 60.0}
    (row,) = fluppy("list", "--json").json_lines()
    assert row["parts_total"] == 4
    assert 1 <= row["parts_confirmed"] <= 3
    assert row["url"] == f"s3://{BUCKET}/listed.bin"
    line = fluppy("list").out
    assert "/4 parts" in line
    assert f"{f} -> s3://{BUCKET}/listed.bin" in line
    r = fluppy("resume", "--all")
    assert r.code == 0, r.err


def test_a_damaged_journal_entry_is_kept_aside_and_the_rest_still_work(
    fluppy: Callable[..., Result], crashed: tuple[Store, Path, list[str], dict[str, object]]
) -> None:
    store, f, argv, entry = crashed
    journal = Path(argv[argv.index("--journal") + 1])
    (journal / "0badc0ffee.json").write_text('{"version": 1, "upload_id": "x", "bucket"')
    (journal / "future.json").write_text('{"version": 99}')
    r = fluppy("list", "--journal", str(journal))
    assert r.code == 0, r.err
    assert "0badc0ffee.json unreadable: it is not valid JSON (truncated?)" in r.err
    assert "written by a newer fluppy (format 99); left as it is" in r.err
    assert "Traceback" not in r.err
    assert (journal / "0badc0ffee.json.corrupt").exists()  # a copy is kept beside it
    assert (journal / "future.json").exists()
    assert str(entry["upload_id"])[:16] in r.out  # the readable entry is still there
    r = fluppy(*argv)
    assert r.code == 0, r.err
    assert fetch(store.client, BUCKET, "halfway.bin") == f.read_bytes()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["resume"], "which uploads?"),
        (["resume", "nosuchid"], "no upload 'nosuchid'"),
        (["resume", "abc", "--all"], "not both"),
        (["abort", "--remote"], "no credential source"),
        (["abort", "--all", "--older-than", "soon"], "cannot read 'soon' as a duration"),
    ],
)
def test_resume_and_abort_bad_input(
    cli: Callable[..., Result], journal: Path, args: list[str], needle: str
) -> None:
    r = cli(*args, "--journal", str(journal))
    assert r.code == ExitStatus.USAGE
    assert needle in r.err


def test_resume_keeps_a_small_upload_multipart_whatever_the_threshold(
    fluppy: Callable[..., Result],
    moto: servers.Moto,
    make_file: Callable[..., Path],
    journal: Path,
) -> None:
    store = Store("moto", moto.url, mint_cmd(), moto.client("s3"))
    f = make_file("small-mp.bin", 3 * PART)  # below the default 16 MiB threshold
    argv = upload_argv(
        store, f, "small-mp.bin", journal, "-j", "1", "--multipart-threshold", "5MiB"
    )
    assert fluppy(*argv, env={"FLUPPY_FAULT": "after-ack:1"}).code == 137
    r = fluppy("resume", "--all", "--journal", str(journal), "--json")
    assert r.code == 0, r.err
    (rec,) = r.json_lines()
    assert rec["parts"] == 3
    assert rec["resumed_bytes"] == PART
    assert fetch(store.client, BUCKET, "small-mp.bin") == f.read_bytes()
