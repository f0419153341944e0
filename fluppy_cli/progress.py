"""Displays of upload events: rich bars on a terminal, plain lines for logs,
JSON Lines for machines, nothing for ``--quiet``. All draw on stderr except
JSON, which is the command's output on stdout.

Events arrive from worker threads; every display serializes them itself.
"""

from __future__ import annotations

import json
import threading
import time
from typing import IO, Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from fluppy_cli.engine import (
    BytesSent,
    Event,
    FileDone,
    FileFailed,
    FileResult,
    FileStarted,
    Notice,
    UploadKept,
)
from fluppy_cli.errors import FluppyError
from fluppy_cli.plan import format_size


class Display(Protocol):
    """Where events go. ``close`` is called once, after the last event."""

    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


def _rate(size: int, seconds: float) -> str:
    return f"{format_size(size / seconds)}/s" if seconds > 0 else "-"


def summary_line(result: FileResult) -> str:
    """``uploaded a.bin -> s3://b/a.bin (40.0 MiB, 8 parts, 1.2 s, 33.3 MiB/s)``."""
    job = result.job
    parts = f"{result.parts} parts" if result.parts else "single PUT"
    return (
        f"uploaded {job.source} -> s3://{job.bucket}/{job.key} ({format_size(job.size)}, "
        f"{parts}, {result.seconds:.1f} s, {_rate(job.size, result.seconds)})"
    )


def result_record(result: FileResult) -> dict[str, Any]:
    """The JSON object for a finished file (documented in the README)."""
    job = result.job
    return {
        "event": "uploaded",
        "source": str(job.source),
        "bucket": job.bucket,
        "key": job.key,
        "url": f"s3://{job.bucket}/{job.key}",
        "size": job.size,
        "etag": result.etag,
        "parts": result.parts,
        "checksum": result.checksum,
        "upload_id": result.upload_id,
        "resumed_bytes": result.resumed_bytes,
        "sent_bytes": result.sent_bytes,
        "seconds": round(result.seconds, 3),
    }


def failure_record(event: FileFailed) -> dict[str, Any]:
    """The JSON object for a file that failed."""
    job = event.job
    return {
        "event": "failed",
        "source": str(job.source),
        "bucket": job.bucket,
        "key": job.key,
        "size": job.size,
        "error": str(event.error),
        "exit_code": int(event.error.exit_status),
    }


class QuietDisplay:
    """``--quiet``: the CLI prints errors; nothing else."""

    def handle(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass


class JsonDisplay:
    """``--json``: one JSON object per finished or failed file on stdout; warnings
    go to stderr as plain lines so that stdout stays machine-readable."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self._out = out
        self._err = err
        self._lock = threading.Lock()

    def handle(self, event: Event) -> None:
        record: dict[str, Any] | None = None
        if isinstance(event, FileDone):
            record = result_record(event.result)
        elif isinstance(event, FileFailed):
            record = failure_record(event)
        elif isinstance(event, UploadKept):
            record = {
                "event": "kept",
                "source": str(event.job.source),
                "url": f"s3://{event.job.bucket}/{event.job.key}",
                "upload_id": event.upload_id,
            }
        elif isinstance(event, Notice):
            with self._lock:
                print(f"fluppy: warning: {event.message}", file=self._err, flush=True)
        if record is not None:
            with self._lock:
                print(json.dumps(record), file=self._out, flush=True)

    def close(self) -> None:
        pass


class _Totals:
    """Bytes and files in flight, shared by the text displays."""

    def __init__(self) -> None:
        self.sent = 0
        self.total = 0
        self.active: dict[str, int] = {}
        self.started = time.monotonic()

    def start(self, event: FileStarted) -> None:
        self.total += event.job.size
        self.sent += event.already_sent
        self.active[event.job.key] = event.job.size


class LinesDisplay:
    """For logs (CI, cron): no bars and no carriage returns. A progress line every
    ``interval`` seconds while something is in flight, one line per finished file."""

    def __init__(self, err: IO[str], *, interval: float = 5.0) -> None:
        self._err = err
        self._interval = interval
        self._lock = threading.Lock()
        self._t = _Totals()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True, name="fluppy-lines")
        self._ticker.start()

    def handle(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, FileStarted):
                self._t.start(event)
            elif isinstance(event, BytesSent):
                self._t.sent += event.delta
            elif isinstance(event, FileDone):
                self._t.active.pop(event.result.job.key, None)
                self._print(summary_line(event.result))
            elif isinstance(event, FileFailed):
                self._t.active.pop(event.job.key, None)
            elif isinstance(event, Notice):
                self._print(f"fluppy: warning: {event.message}")

    def progress_line(self) -> str:
        """``progress: 12.0 MiB of 40.0 MiB (30%), 5.2 MiB/s, 1 file in flight``."""
        t = self._t
        pct = 100 * t.sent // t.total if t.total else 100
        n = len(t.active)
        rate = _rate(t.sent, time.monotonic() - t.started)
        return (
            f"progress: {format_size(t.sent)} of {format_size(t.total)} ({pct}%), {rate}, "
            f"{n} file{'s' if n != 1 else ''} in flight"
        )

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                if self._t.active:
                    self._print(self.progress_line())

    def _print(self, line: str) -> None:
        print(line, file=self._err, flush=True)

    def close(self) -> None:
        self._stop.set()
        self._ticker.join()


class RichDisplay:
    """A terminal: one bar per file in flight and a total, on stderr."""

    def __init__(self, err: IO[str]) -> None:
        self._console = Console(file=err, stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}
        self._total = self._progress.add_task("total", total=0)
        self._grand_total = 0
        self._progress.start()

    def handle(self, event: Event) -> None:
        p = self._progress
        with self._lock:
            if isinstance(event, FileStarted):
                job = event.job
                task = p.add_task(job.source.name, total=job.size, completed=event.already_sent)
                self._tasks[job.key] = task
                self._grand_total += job.size
                p.update(self._total, total=self._grand_total, advance=event.already_sent)
            elif isinstance(event, BytesSent):
                bar = self._tasks.get(event.job.key)
                if bar is not None:
                    p.update(bar, advance=event.delta)
                    p.update(self._total, advance=event.delta)
            elif isinstance(event, FileDone):
                self._finish(event.result.job.key)
                p.console.print(summary_line(event.result), highlight=False, soft_wrap=True)
            elif isinstance(event, FileFailed):
                self._finish(event.job.key)
            elif isinstance(event, Notice):
                p.console.print(
                    f"fluppy: warning: {event.message}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )

    def _finish(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            self._progress.remove_task(task)

    def close(self) -> None:
        self._progress.stop()


def make_display(
    *, mode: str, json_output: bool, quiet: bool, out: IO[str], err: IO[str]
) -> Display:
    """Pick a display: ``--json`` and ``--quiet`` first, then ``--progress``
    (``auto`` means bars on a terminal, lines otherwise)."""
    if json_output:
        return JsonDisplay(out, err)
    if quiet or mode == "none":
        return QuietDisplay()
    if mode == "bars" or (mode == "auto" and err.isatty()):
        return RichDisplay(err)
    return LinesDisplay(err)


def error_line(error: FluppyError | str) -> str:
    """The one line an error becomes."""
    return f"fluppy: error: {error}"
