"""Runs uploads: single PUTs and multipart uploads with parts in flight, retries,
verification, and events out. Never prints: the CLI renders the events.

Threads: one orchestrating thread per file in flight, and one shared pool of
``concurrency`` workers that send every request body (PUTs and parts), so that
memory stays near ``concurrency`` x part size whatever the file sizes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
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

from fluppy_cli import checksums, faults, plan
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
from fluppy_cli.journal import Entry, Fingerprint, Journal, PartRecord, Recording
from fluppy_cli.s3 import Body, PutResult
from fluppy_cli.stores import Store

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
    resume: Entry | None = None  # continue this journal entry's upload
    replaces: Entry | None = None  # abort this entry's upload and start afresh
    restart_if_gone: bool = True  # a resumed upload the server lost starts again


@dataclass(frozen=True)
class JournalContext:
    """What a journal entry records besides the job: where and with what source
    of credentials the upload was made (never the credentials themselves)."""

    journal: Journal
    endpoint: str
    region: str
    path_style: bool
    credentials: dict[str, object]
    signer: str = ""  # the signing backend's URL, if any


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
    resumed_bytes: int = 0  # bytes the server already had when this run began
    sent_bytes: int = 0  # request body bytes sent by this run, retries included


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
class UploadKept:
    """A multipart upload stopped but left open on the server, to be resumed."""

    job: Job
    upload_id: str


@dataclass(frozen=True)
class Notice:
    """A warning worth one line (credentials look long-lived, a retry...)."""

    message: str


Event = FileStarted | BytesSent | FileDone | FileFailed | UploadKept | Notice


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
        path = Path(os.path.abspath(raw))  # the journal must find it from any folder
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
        client: Store,
        options: UploadOptions,
        *,
        on_event: Callable[[Event], None] = lambda _e: None,
        cancel: threading.Event | None = None,
        journal: JournalContext | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.checksum = options.checksum or checksums.get("none")
        self._emit = on_event
        self.cancel = cancel or threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._fatal: FluppyError | None = None
        self._buffers = threading.local()
        self.journal = journal
        self._sent_lock = threading.Lock()
        self._sent: dict[str, int] = {}  # bytes sent per key in this run

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
            # A journaled upload stays multipart whatever the threshold is today.
            if job.resume is not None or plan.use_multipart(job.size, self.options.threshold):
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

    def _algorithm(self, *, multipart: bool) -> Algorithm:
        forced = self.client.forced_checksum(multipart=multipart)
        return checksums.get(forced) if forced else self.checksum

    def _single(self, job: Job, started: float) -> FileResult:
        alg = self._algorithm(multipart=False)
        self._emit(FileStarted(job, 0))
        headers = self._object_headers(job)
        fd = _open(job)
        try:
            result, _digest = self._in_pool(
                lambda: self._send_body(
                    job,
                    alg,
                    fd,
                    plan.Part(1, 0, job.size),
                    lambda body, extra, sha: self.client.put_object(
                        job.bucket,
                        job.key,
                        body,
                        headers={**headers, **extra},
                        payload_sha256=sha,
                        checksum_header=alg.header,
                    ),
                )
            )
            _check_unchanged(job, fd)
        finally:
            os.close(fd)
        sent = self._sent_for(job)
        if result.key:  # a signing backend chose the key (and bucket)
            job = dataclasses.replace(job, key=result.key, bucket=result.bucket or job.bucket)
        return FileResult(
            job,
            result.etag,
            0,
            time.monotonic() - started,
            f"{alg.name}:{result.checksum}" if result.checksum else None,
            sent_bytes=sent,
        )

    # -- multipart: start, resume, and what happens when it stops ----------------

    def _multipart(self, job: Job, started: float) -> FileResult:
        if job.replaces is not None:
            self._forget(job, job.replaces, abort=True)
        resume = job.resume
        if resume is not None:
            assert self.journal is not None
            # The upload lives where it was created (a backend may have chosen the key).
            job = dataclasses.replace(job, key=resume.key, bucket=resume.bucket)
            with self.journal.journal.claim(resume):
                done = self._parts_on_server(job, resume)
            if done is not None:
                return self._drive(job, resume, done, started)
            if not job.restart_if_gone:
                msg = f"the upload {resume.upload_id} is gone from the server"
                raise RemoteError(
                    msg
                    + " (aborted, or expired by a lifecycle rule); its journal entry was dropped",
                    operation="ListParts",
                    bucket=job.bucket,
                    key=job.key,
                    hint=f"start again with: fluppy upload {job.source} --to s3://{job.bucket}/{job.key}",
                )
        entry = self._create(job)
        if (entry.key, entry.bucket) != (job.key, job.bucket):  # a backend chose them
            job = dataclasses.replace(job, key=entry.key, bucket=entry.bucket)
        return self._drive(job, entry, {}, started)

    def _create(self, job: Job) -> Entry:
        """CreateMultipartUpload, and the journal entry that makes it resumable."""
        alg = self._algorithm(multipart=True)
        part_size = plan.part_size_for(job.size, self.options.part_size)
        headers = self._object_headers(job)
        if alg.aws_name:
            headers["x-amz-checksum-algorithm"] = alg.aws_name
            headers["x-amz-checksum-type"] = alg.multipart_type
        upload_id, key, bucket = self._retrying(
            lambda: self.client.create_multipart_upload(job.bucket, job.key, headers=headers)
        )
        ctx = self.journal
        entry = Entry(
            upload_id=upload_id,
            bucket=bucket,
            key=key,
            endpoint=ctx.endpoint if ctx else "",
            region=ctx.region if ctx else "",
            path_style=ctx.path_style if ctx else False,
            part_size=part_size,
            checksum=alg.name,
            content_type=job.content_type,
            source=str(job.source),
            fingerprint=Fingerprint.of(job.source),
            credentials=dict(ctx.credentials) if ctx else {},
            metadata=dict(self.options.metadata),
            signer=ctx.signer if ctx else "",
        )
        if ctx is not None:
            try:
                ctx.journal.save(entry)
            except BaseException:
                self._abort_quietly(dataclasses.replace(job, key=key, bucket=bucket), upload_id)
                raise
        faults.hit("after-create")
        return entry

    def _drive(self, job: Job, entry: Entry, done: dict[int, _Sent], started: float) -> FileResult:
        """Send the parts the server lacks and complete. The cleanup decision sits
        here, once for new and resumed uploads: a file that changed, or a run
        without a journal, aborts the upload (its parts would cost money for
        nothing); anything else keeps it open and recorded, to be resumed."""
        recording = Recording(self.journal.journal, entry) if self.journal else None
        claim = self.journal.journal.claim(entry) if self.journal else contextlib.nullcontext()
        with claim:
            try:
                return self._send_and_complete(job, entry, done, recording, started)
            except BaseException as exc:
                if recording is None or isinstance(exc, IntegrityError):
                    self._forget(job, entry, abort=True)
                else:
                    recording.flush()
                    self._emit(UploadKept(job, entry.upload_id))
                raise

    def _parts_on_server(self, job: Job, entry: Entry) -> dict[int, _Sent] | None:
        """What the server holds of a journaled upload (None: the upload is gone).

        The server is the truth, but a part counts only if it is verified: its size
        fits the layout, and the file's bytes, read again from disk, match the
        checksum the journal recorded (a mismatch means the file changed: refused)
        or, for a part the journal never recorded, the server's MD5 ETag. A part
        that cannot be verified is sent again, which stores the file as it is."""
        try:
            listed = self._retrying(
                lambda: self.client.list_parts(job.bucket, job.key, entry.upload_id)
            )
        except RemoteError as exc:
            if exc.code != "NoSuchUpload":
                raise
            self._emit(
                Notice(
                    f"the upload {entry.upload_id[:16]}... of {job.source} is gone from the server "
                    "(aborted, or expired by a lifecycle rule); dropping its journal entry"
                )
            )
            self._forget(job, entry, abort=False)
            return None
        alg = checksums.get(entry.checksum)
        layout = {p.number: p for p in plan.split_parts(job.size, entry.part_size)}
        done: dict[int, _Sent] = {}
        fd = _open(job)
        try:
            for part in listed:
                want = layout.get(part.number)
                if want is None or part.size != want.length:
                    continue  # sent again below: the server's copy does not fit
                # Read the part again (disk only): the fingerprint samples 1 MiB,
                # this catches any other change to what the server already holds.
                data = self._buffer(want.length)
                _read_exactly(job, fd, data, want.offset)
                digest = alg.digest(data)
                record = entry.parts.get(part.number)
                if record is not None and record.etag == part.etag and record.checksum:
                    if record.checksum != digest.value:
                        dest = f"s3://{job.bucket}/{job.key}"
                        msg = (
                            f"{job.source} changed since its upload began (part {part.number} "
                            "differs from what the server holds); resuming would store a "
                            "corrupt object"
                        )
                        hint = f"start again with: fluppy upload {job.source} --to {dest} --restart"
                        raise UsageError(msg, hint=hint)
                elif hashlib.md5(data).hexdigest() != part.etag:
                    # Acknowledged but never journaled (killed in between), and the
                    # server's ETag is not this content's MD5: send it again.
                    continue
                entry.parts[part.number] = PartRecord(
                    part.number, part.size, part.etag, digest.value
                )
                done[part.number] = _Sent(part.number, part.etag, digest)
        finally:
            os.close(fd)
        for number in set(entry.parts) - set(done):
            del entry.parts[number]  # the journal knew a part the server does not
        return done

    def _send_and_complete(
        self,
        job: Job,
        entry: Entry,
        done: dict[int, _Sent],
        recording: Recording | None,
        started: float,
    ) -> FileResult:
        alg = checksums.get(entry.checksum)
        parts = plan.split_parts(job.size, entry.part_size)
        already = sum(parts[n - 1].length for n in done)
        self._emit(FileStarted(job, len(parts), already_sent=already))
        missing = [p for p in parts if p.number not in done]
        fd = _open(job)
        try:
            for sent in self._send_parts(
                job, alg, fd, upload_id=entry.upload_id, parts=missing, recording=recording
            ):
                done[sent.number] = sent
            _check_unchanged(job, fd)
        finally:
            os.close(fd)
        if recording is not None:
            recording.flush()
        sent_parts = [done[p.number] for p in parts]
        faults.hit("before-complete")
        result = self._retrying(
            lambda: self.client.complete_multipart_upload(
                job.bucket,
                job.key,
                entry.upload_id,
                [(s.number, s.etag, s.digest.value) for s in sent_parts],
                checksum_tag=alg.xml_tag,
            )
        )
        if recording is not None:
            recording.finish()
        self._verify_complete(job, alg, result.etag, result.checksum, sent_parts)
        return FileResult(
            job,
            result.etag,
            len(parts),
            time.monotonic() - started,
            f"{alg.name}:{result.checksum}" if result.checksum else None,
            entry.upload_id,
            resumed_bytes=already,
            sent_bytes=self._sent_for(job),
        )

    def _verify_complete(
        self, job: Job, alg: Algorithm, etag: str, checksum: str | None, parts: list[_Sent]
    ) -> None:
        digests = [s.digest for s in parts]
        m = _MULTIPART_ETAG.match(etag)
        if m and int(m.group(1)) != len(parts):
            _expect(job, "part count in the ETag", m.group(1), str(len(parts)))
        expected_etag = alg.expected_multipart_etag(digests)
        if expected_etag and m:
            _expect(job, "ETag", etag, expected_etag)
        expected = alg.expected_multipart(digests)
        if checksum and expected:
            _expect(job, f"{alg.name} checksum", checksum, expected)

    def _send_parts(
        self,
        job: Job,
        alg: Algorithm,
        fd: int,
        *,
        upload_id: str,
        parts: list[plan.Part],
        recording: Recording | None,
    ) -> list[_Sent]:
        assert self._pool is not None
        futures: list[Future[_Sent]] = [
            self._pool.submit(
                self._send_part, job, alg, fd, upload_id=upload_id, part=part, recording=recording
            )
            for part in parts
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

    def _send_part(
        self,
        job: Job,
        alg: Algorithm,
        fd: int,
        *,
        upload_id: str,
        part: plan.Part,
        recording: Recording | None,
    ) -> _Sent:
        def put(body: Body, extra: dict[str, str], sha: str | None) -> PutResult:
            return self.client.upload_part(
                job.bucket,
                job.key,
                upload_id,
                part.number,
                body,
                headers=extra,
                payload_sha256=sha,
                checksum_header=alg.header,
            )

        result, digest = self._send_body(job, alg, fd, part, put)
        faults.hit("after-ack", part.number)
        if recording is not None:  # only now: the journal never runs ahead of the server
            recording.add_part(PartRecord(part.number, part.length, result.etag, digest.value))
        return _Sent(part.number, result.etag, digest)

    # -- shared pieces ------------------------------------------------------

    def _send_body(
        self,
        job: Job,
        alg: Algorithm,
        fd: int,
        part: plan.Part,
        put: Callable[[Body, dict[str, str], str | None], PutResult],
    ) -> tuple[PutResult, PartDigest]:
        """Read a byte range once, checksum it, and send it until the server takes it."""
        self._check_cancel()
        data = self._buffer(part.length)
        _read_exactly(job, fd, data, part.offset)
        digest = alg.digest(data)
        extra = {alg.header: digest.value} if alg.enabled else {}
        sha = alg.payload_sha256(digest)

        def sent(n: int) -> None:
            with self._sent_lock:
                self._sent[job.key] = self._sent.get(job.key, 0) + n
            self._emit(BytesSent(job, n))

        def attempt() -> PutResult:
            body = Body(data, sent, stop=self._check_cancel)
            try:
                return put(body, extra, sha)
            except BaseException:
                if body.sent:
                    self._emit(BytesSent(job, -body.sent))
                raise

        result = self._retrying(attempt)
        if result.checksum and alg.enabled and result.checksum != digest.value:
            _expect(job, f"{alg.name} of part {part.number}", result.checksum, digest.value)
        if alg.name == "md5" and part.length and _PLAIN_ETAG.match(result.etag):
            # S3's ETag of a PUT or part is its MD5 (not with SSE-KMS: use a CRC there).
            # For URLs a backend signed, this is the only check of the bytes.
            whole = part.length == job.size
            _expect(
                job, "ETag" if whole else f"ETag of part {part.number}", result.etag, digest.md5_hex
            )
        return result, digest

    def _sent_for(self, job: Job) -> int:
        with self._sent_lock:
            return self._sent.get(job.key, 0)

    def _forget(self, job: Job, entry: Entry, *, abort: bool) -> None:
        """Abort an upload (if asked) and drop its journal entry."""
        if abort:
            self._abort_quietly(job, entry.upload_id)
        if self.journal is not None:
            self.journal.journal.remove(entry)

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
