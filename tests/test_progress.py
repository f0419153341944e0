"""Displays: bars on a terminal, plain lines for logs, JSON Lines, quiet."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from fluppy_cli.engine import BytesSent, FileDone, FileFailed, FileResult, FileStarted, Job, Notice
from fluppy_cli.errors import AccessDenied
from fluppy_cli.progress import (
    JsonDisplay,
    LinesDisplay,
    QuietDisplay,
    RichDisplay,
    make_display,
)

JOB = Job(Path("/data/a.bin"), 10 * 1024 * 1024, 0, "bkt", "dir/a.bin", "application/octet-stream")
RESULT = FileResult(JOB, "abc-2", 2, 2.0, "crc64nvme:xyz=", "upload-1")
DENIED = AccessDenied("AccessDenied", operation="PutObject", bucket="bkt", key="dir/a.bin")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def feed(display: object) -> None:
    for event in (
        FileStarted(JOB, 2),
        BytesSent(JOB, 4 * 1024 * 1024),
        BytesSent(JOB, -1024 * 1024),  # a retried part takes its bytes back
        Notice("credentials look long-lived"),
        BytesSent(JOB, 7 * 1024 * 1024),
        FileDone(RESULT),
    ):
        display.handle(event)  # type: ignore[attr-defined]


def test_lines_display_prints_progress_and_a_summary_without_carriage_returns() -> None:
    err = io.StringIO()
    d = LinesDisplay(err, interval=0.05)
    d.handle(FileStarted(JOB, 2))
    d.handle(BytesSent(JOB, 3 * 1024 * 1024))
    time.sleep(0.2)
    assert d.progress_line().startswith("progress: 3.0 MiB of 10.0 MiB (30%)")
    feed(d)
    d.close()
    text = err.getvalue()
    assert "\r" not in text
    assert "progress: 3.0 MiB of 10.0 MiB (30%)" in text
    assert "1 file in flight" in text
    assert "fluppy: warning: credentials look long-lived" in text
    assert (
        "uploaded /data/a.bin -> s3://bkt/dir/a.bin (10.0 MiB, 2 parts, 2.0 s, 5.0 MiB/s)" in text
    )


def test_lines_display_is_silent_when_nothing_is_in_flight() -> None:
    err = io.StringIO()
    d = LinesDisplay(err, interval=0.02)
    time.sleep(0.1)
    d.close()
    assert err.getvalue() == ""


def test_json_display_writes_one_object_per_file_on_stdout() -> None:
    out, err = io.StringIO(), io.StringIO()
    d = JsonDisplay(out, err)
    feed(d)
    d.handle(FileFailed(JOB, DENIED))
    d.close()
    done, failed = (json.loads(line) for line in out.getvalue().splitlines())
    assert done == {
        "event": "uploaded",
        "source": "/data/a.bin",
        "bucket": "bkt",
        "key": "dir/a.bin",
        "url": "s3://bkt/dir/a.bin",
        "size": 10 * 1024 * 1024,
        "etag": "abc-2",
        "parts": 2,
        "checksum": "crc64nvme:xyz=",
        "upload_id": "upload-1",
        "resumed_bytes": 0,
        "sent_bytes": 0,
        "seconds": 2.0,
    }
    assert failed["event"] == "failed"
    assert failed["exit_code"] == 4
    assert "AccessDenied" in failed["error"]
    assert err.getvalue() == "fluppy: warning: credentials look long-lived\n"


def test_rich_display_draws_bars_and_the_summary() -> None:
    err = Tty()
    d = RichDisplay(err)
    feed(d)
    d.close()
    text = err.getvalue()
    assert "uploaded /data/a.bin -> s3://bkt/dir/a.bin" in text
    assert "total" in text
    assert "fluppy: warning: credentials look long-lived" in text


def test_quiet_display_prints_nothing() -> None:
    d = QuietDisplay()
    feed(d)
    d.close()


def test_make_display_picks_by_flags_then_terminal() -> None:
    out = io.StringIO()

    def kind(**kw: object) -> str:
        args = {
            "mode": "auto",
            "json_output": False,
            "quiet": False,
            "out": out,
            "err": io.StringIO(),
        }
        args.update(kw)
        d = make_display(**args)  # type: ignore[arg-type]
        d.close()
        return type(d).__name__

    assert kind(json_output=True, quiet=True) == "JsonDisplay"
    assert kind(quiet=True) == "QuietDisplay"
    assert kind(mode="none") == "QuietDisplay"
    assert kind() == "LinesDisplay"
    assert kind(err=Tty()) == "RichDisplay"
    assert kind(mode="lines", err=Tty()) == "LinesDisplay"
    assert kind(mode="bars") == "RichDisplay"
