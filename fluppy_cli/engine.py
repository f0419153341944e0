"""Runs uploads: single PUTs and multipart uploads with parts in flight, retries,
verification, and events out. Never prints: the CLI renders the events.

Threads: one orchestrating thread per file in flight, and one shared pool of
``concurrency`` workers that send every request body (PUTs and parts), so that
memory stays near ``concurrency`` x part size whatever the file sizes.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from fluppy_cli import checksums, plan
from fluppy_cli.checksums import Algorithm, PartDigest
from fluppy_cli.errors import (
    CredentialsError,
    CredentialsRejected,
    FluppyError,
    IntegrityError,
    Interrupted,
    RemoteError,
    UsageError,
)
from fluppy_cli.s3 import Body, PutResult, S3Client

log = logging.getLogger(__name__)
T = TypeVar("T")

_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-(\d+)$")
_PLAIN_ETAG = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Job:
    """One file to upload and where it goes."""

    source: Path
    size: int
    mtime_ns: int
    bucket: str
    key: str
    content_type: str


@dataclass(frozen=True)
class UploadOptions:
    """How to upload: resolved from flags, environment and defaults by the CLI."""

    part_size: int = plan.DEFAULT_PART_SIZE
    threshold: int = plan.DEFAULT_THRESHOLD
    concurrency: int = plan.DEFAULT_CONCURRENCY
    checksum: Algorithm | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    retries: int = 5


@dataclass(frozen=True)
class FileResult:
    """A finished upload."""

    job: Job
    etag: str
    parts: int  # 0 for a single PUT
    seconds: float
    checksum: str | None  # "algorithm:value" the server confirmed, if any
    upload_id: str | None = None


# -- events: what the engine tells whoever renders progress -------------------


@dataclass(frozen=True)
class FileStarted:
    job: Job
    parts: int
    already_sent: int = 0


@dataclass(frozen=True)
class BytesSent:
    """``delta`` bytes went out; negative when a failed attempt is taken back."""

    job: Job
    delta: int


@dataclass(frozen=True)
class FileDone:
    result: FileResult


@dataclass(frozen=True)
class FileFailed:
    job: Job
    error: FluppyError


@dataclass(frozen=True)
class Notice:
    """A warning worth one line (credentials look long-lived, a retry...)."""

    message: str


Event = FileStarted | BytesSent | FileDone | FileFailed | Notice


def make_jobs(
    paths: Sequence[str],
    *,
    bucket: str,
    dest_key: str,
    exact_key: str | None,
    content_type: str | None,
) -> list[Job]:
    """Check every source and work out its key, before anything is uploaded.

    Raises ``UsageError`` for the first source that cannot be uploaded, so that a
    typo in the fifth of five files uploads none of them.
    """
    if exact_key is not None and len(paths) != 1:
        raise UsageError("--key names one object but several files were given", hint="use --to")
    jobs = []
    for raw in paths:
        path = Path(raw)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise UsageError(f"{raw}: no such file") from None
        except OSError as exc:
            raise UsageError(f"{raw}: cannot read it: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            msg = f"{raw} is a directory; recursive upload is not supported yet"
            raise UsageError(msg, hint=f"pass the files instead, e.g. {raw.rstrip('/')}/*")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{raw} is not a regular file", hint="fluppy uploads files")
        try:
            os.close(os.open(path, os.O_RDONLY))
        except OSError as exc:
            raise UsageError(f"{raw}: cannot read it: {exc.strerror}") from None
        key = exact_key or plan.object_key(path.name, dest_key=dest_key, several=len(paths) > 1)
        guessed = mimetypes.guess_type(path.name)[0]
        jobs.append(
            Job(
                path,
                st.st_size,
                st.st_mtime_ns,
                bucket,
                key,
                content_type or guessed or "application/octet-stream",
            )
        )
    dups = plan.duplicate_keys([j.key for j in jobs])
    if dups:
        msg = f"two files would be uploaded to the same key {dups[0]!r}"
        raise UsageError(msg, hint="upload them in separate runs or rename one")
    return jobs


@dataclass
class _Sent:
    """One part the server acknowledged."""

    number: int
    etag: str
    digest: PartDigest


class Engine:
    """Uploads jobs with one S3 client. Create, then call ``run``."""

    def __init__(
        self,
        client: S3Client,
        options: UploadOptions,
        *,
        on_event: Callable[[Event], None] = lambda _e: None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.checksum = options.checksum or checksums.get("none")
        self._emit = on_event
        self.cancel = cancel or threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._fatal: FluppyError | None = None
        self._buffers = threading.local()

    # -- public -------------------------------------------------------------

    def run(self, jobs: Sequence[Job]) -> list[FileResult | FluppyError]:
        """Upload every job; return a result or the error for each, in order.

        Credential failures stop everything (the next file would fail the same
        way); other failures are reported and the remaining files go on.
        """
        results: list[FileResult | FluppyError] = [Interrupted("not started")] * len(jobs)
        workers = self.options.concurrency
        with ThreadPoolExecutor(workers, thread_name_prefix="fluppy-part") as pool:
            self._pool = pool
            with ThreadPoolExecutor(
                min(workers, max(1, len(jobs))), thread_name_prefix="fluppy-file"
            ) as files:
                futures = [files.submit(self._upload_one, job) for job in jobs]
                try:
                    for i, fut in enumerate(futures):
                        results[i] = fut.result()
                except BaseException:
                    self.cancel.set()
                    raise
        return results

    # -- one file -----------------------------------------------------------

    def _upload_one(self, job: Job) -> FileResult | FluppyError:
        if self._fatal is not None or self.cancel.is_set():
            return self._fatal or Interrupted("stopped before this file started")
        started = time.monotonic()
        try:
            if plan.use_multipart(job.size, self.options.threshold):
                result = self._multipart(job, started)
            else:
                result = self._single(job, started)
        except FluppyError as exc:
            if isinstance(exc, (CredentialsError, CredentialsRejected)):
                self._fatal = exc
                self.cancel.set()
            self._emit(FileFailed(job, exc))
            return exc
        self._emit(FileDone(result))
        return result

    def _single(self, job: Job, started: float) -> FileResult:
        self._emit(FileStarted(job, 0))
        headers = self._object_headers(job)
        fd = _open(job)
        try:
            result, digest = self._in_pool(
                lambda: self._send_body(
                    job,
                    fd,
                    plan.Part(1, 0, job.size),
                    lambda body, extra, sha: self.client.put_object(
                        job.bucket,
                        job.key,
                        body,
                        headers={**headers, **extra},
                        payload_sha256=sha,
                        checksum_header=self.checksum.header,
                    ),
                )
            )
            _check_unchanged(job, fd)
        finally:
            os.close(fd)
        if self.checksum.name == "md5" and _PLAIN_ETAG.match(result.etag):
            _expect(job, "ETag", result.etag, digest.md5_hex)
        return FileResult(
            job,
            result.etag,
            0,
            time.monotonic() - started,
            f"{self.checksum.name}:{result.checksum}" if result.checksum else None,
        )

    def _multipart(self, job: Job, started: float) -> FileResult:
        part_size = plan.part_size_for(job.size, self.options.part_size)
        parts = plan.split_parts(job.size, part_size)
        headers = self._object_headers(job)
        if self.checksum.aws_name:
            headers["x-amz-checksum-algorithm"] = self.checksum.aws_name
            headers["x-amz-checksum-type"] = self.checksum.multipart_type
        upload_id = self._retrying(
            lambda: self.client.create_multipart_upload(job.bucket, job.key, headers=headers)
        )
        # The cleanup decision sits where the upload is created: whatever goes
        # wrong from here on, the open upload is aborted so its parts cost nothing.
        try:
            return self._finish_multipart(job, upload_id, parts, started)
        except BaseException:
            self._abort_quietly(job, upload_id)
            raise

    def _finish_multipart(
        self, job: Job, upload_id: str, parts: list[plan.Part], started: float
    ) -> FileResult:
        self._emit(FileStarted(job, len(parts)))
        fd = _open(job)
        try:
            sent = self._send_parts(job, fd, upload_id, parts)
            _check_unchanged(job, fd)
        finally:
            os.close(fd)
        tag = self.checksum.xml_tag
        done = self._retrying(
            lambda: self.client.complete_multipart_upload(
                job.bucket,
                job.key,
                upload_id,
                [(s.number, s.etag, s.digest.value) for s in sent],
                checksum_tag=tag,
            )
        )
        digests = [s.digest for s in sent]
        m = _MULTIPART_ETAG.match(done.etag)
        if m and int(m.group(1)) != len(parts):
            _expect(job, "part count in the ETag", m.group(1), str(len(parts)))
        expected_etag = self.checksum.expected_multipart_etag(digests)
        if expected_etag and m:
            _expect(job, "ETag", done.etag, expected_etag)
        expected = self.checksum.expected_multipart(digests)
        if done.checksum and expected:
            _expect(job, f"{self.checksum.name} checksum", done.checksum, expected)
        return FileResult(
            job,
            done.etag,
            len(parts),
            time.monotonic() - started,
            f"{self.checksum.name}:{done.checksum}" if done.checksum else None,
            upload_id,
        )

    def _send_parts(self, job: Job, fd: int, upload_id: str, parts: list[plan.Part]) -> list[_Sent]:
        assert self._pool is not None
        futures: list[Future[_Sent]] = [
            self._pool.submit(self._send_part, job, fd, upload_id, part) for part in parts
        ]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            for fut in pending:
                fut.cancel()
            wait(pending)
            exc = failed[0].exception()
            assert exc is not None
            raise exc
        return [f.result() for f in futures]

    def _send_part(self, job: Job, fd: int, upload_id: str, part: plan.Part) -> _Sent:
        def put(body: Body, extra: dict[str, str], sha: str | None) -> PutResult:
            return self.client.upload_part(
                job.bucket,
                job.key,
                upload_id,
                part.number,
                body,
                headers=extra,
                payload_sha256=sha,
                checksum_header=self.checksum.header,
            )

        result, digest = self._send_body(job, fd, part, put)
        return _Sent(part.number, result.etag, digest)

    # -- shared pieces ------------------------------------------------------

    def _send_body(
        self,
        job: Job,
        fd: int,
        part: plan.Part,
        put: Callable[[Body, dict[str, str], str | None], PutResult],
    ) -> tuple[PutResult, PartDigest]:
        """Read a byte range once, checksum it, and send it until the server takes it."""
        self._check_cancel()
        data = self._buffer(part.length)
        _read_exactly(job, fd, data, part.offset)
        digest = self.checksum.digest(data)
        extra = {self.checksum.header: digest.value} if self.checksum.enabled else {}
        sha = self.checksum.payload_sha256(digest)

        def attempt() -> PutResult:
            body = Body(data, lambda n: self._emit(BytesSent(job, n)))
            try:
                return put(body, extra, sha)
            except BaseException:
                if body.sent:
                    self._emit(BytesSent(job, -body.sent))
                raise

        result = self._retrying(attempt)
        if result.checksum and self.checksum.enabled and result.checksum != digest.value:
            _expect(
                job, f"{self.checksum.name} of part {part.number}", result.checksum, digest.value
            )
        return result, digest

    def _buffer(self, size: int) -> memoryview:
        """This worker's read buffer, reused for every body it sends: a fresh
        multi-MiB bytes object per part leaves freed blocks in glibc's per-thread
        arenas and RSS grows to several times concurrency x part size."""
        buf: bytearray | None = getattr(self._buffers, "buf", None)
        if buf is None or len(buf) < size:
            buf = self._buffers.buf = bytearray(size)
        return memoryview(buf)[:size]

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Call ``fn``, retrying what may pass (5xx, throttling, network, an expired
        token the signer has just dropped) with backoff."""
        attempt = 0
        while True:
            self._check_cancel()
            try:
                return fn()
            except RemoteError as exc:
                if not exc.retryable or attempt >= self.options.retries:
                    raise
                delay = plan.retry_delay(attempt)
                log.debug("retrying %s in %.1fs: %s", exc.operation, delay, exc)
                attempt += 1
                if self.cancel.wait(delay):
                    raise Interrupted("stopped while waiting to retry") from exc

    def _in_pool(self, fn: Callable[[], T]) -> T:
        assert self._pool is not None
        return self._pool.submit(fn).result()

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise self._fatal or Interrupted("stopped")

    def _object_headers(self, job: Job) -> dict[str, str]:
        headers = {"Content-Type": job.content_type}
        for name, value in self.options.metadata.items():
            headers[f"x-amz-meta-{name}"] = value
        return headers

    def _abort_quietly(self, job: Job, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(job.bucket, job.key, upload_id)
        except FluppyError as exc:
            self._emit(
                Notice(
                    f"could not abort the multipart upload of s3://{job.bucket}/{job.key}: {exc}"
                )
            )


def _open(job: Job) -> int:
    try:
        return os.open(job.source, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"{job.source}: cannot read it: {exc.strerror}") from None


def _read_exactly(job: Job, fd: int, into: memoryview, offset: int) -> None:
    """Fill ``into`` from ``offset``; Linux moves at most ~2 GiB per read call."""
    done = 0
    while done < len(into):
        try:
            n = os.preadv(fd, [into[done:]], offset + done)
        except OSError as exc:
            raise FluppyError(f"{job.source}: read failed: {exc.strerror}") from None
        if n == 0:
            msg = f"{job.source} shrank while it was being uploaded"
            raise IntegrityError(msg, hint="upload it again once it stops changing")
        done += n


def _check_unchanged(job: Job, fd: int) -> None:
    st = os.fstat(fd)
    if st.st_size != job.size or st.st_mtime_ns != job.mtime_ns:
        msg = f"{job.source} changed while it was being uploaded"
        raise IntegrityError(msg, hint="upload it again once it stops changing")


def _expect(job: Job, what: str, got: str, want: str) -> None:
    if got != want:
        msg = (
            f"s3://{job.bucket}/{job.key}: the server's {what} is {got} but fluppy "
            f"computed {want}; the stored object may be corrupt"
        )
        raise IntegrityError(msg, hint="upload it again")
