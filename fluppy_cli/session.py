"""One command's work, put together: credentials, endpoint, HTTP client, journal
and engine. The CLI calls these and renders what they return; nothing here
prints."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from fluppy_cli import plan
from fluppy_cli.companion import CompanionClient
from fluppy_cli.credentials import (
    CommandSource,
    CredentialCache,
    CredentialSource,
    TemporaryCredentials,
    UrlSource,
    header_pairs,
)
from fluppy_cli.engine import (
    Engine,
    Event,
    FileResult,
    Job,
    JournalContext,
    Notice,
    UploadOptions,
)
from fluppy_cli.errors import CredentialsError, FluppyError, UsageError
from fluppy_cli.journal import Entry, Fingerprint, Journal
from fluppy_cli.s3 import Endpoint, OpenUpload, S3Client
from fluppy_cli.settings import DEFAULT_REGION
from fluppy_cli.signing import LocalSigner, Presigned
from fluppy_cli.stores import BackendStore, HybridStore, Store

# Backend mode sends only presigned URLs, which carry their own host.
_UNUSED = Endpoint("https://backend-signed.invalid", True)


@dataclass(frozen=True)
class Target:
    """How to reach the store, as the user gave it (None: work it out)."""

    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool | None = None

    def resolve(self, creds: TemporaryCredentials) -> tuple[Endpoint, str]:
        region = self.region or creds.region or DEFAULT_REGION
        if self.endpoint_url:
            return Endpoint(self.endpoint_url, self.path_style is not False), region
        return Endpoint.for_region(region, path_style=self.path_style), region


def source_record(source: CredentialSource) -> dict[str, Any]:
    """What the journal keeps of a credential source: never header values."""
    if isinstance(source, CommandSource):
        return {"command": source.command, "timeout": source.timeout}
    if isinstance(source, UrlSource):
        names = [name for name, _ in source.headers]
        return {"url": source.url, "header_names": names, "timeout": source.timeout}
    return {}


def source_from_record(
    record: dict[str, Any], header_lines: Sequence[str], *, signer: str = ""
) -> CredentialSource | None:
    """The credential source an upload was started with; headers come again from
    --creds-header or FLUPPY_CREDS_HEADERS, since their values were never stored.
    None for a backend-mode upload (a signer and no credentials)."""
    timeout = float(record.get("timeout", 60.0))
    if "command" in record:
        return CommandSource(str(record["command"]), timeout)
    if "url" in record:
        lines = list(header_lines) or os.environ.get("FLUPPY_CREDS_HEADERS", "").splitlines()
        headers = header_pairs(lines)
        missing = [n for n in record.get("header_names", []) if n not in {h for h, _ in headers}]
        if missing:
            msg = f"the credentials URL of this upload needs the header(s) {', '.join(missing)}"
            raise UsageError(msg, hint="give them with --creds-header or FLUPPY_CREDS_HEADERS")
        return UrlSource(str(record["url"]), headers, timeout)
    if signer:
        return None
    msg = "the journal entry does not say where its credentials came from"
    raise UsageError(msg, hint="give --creds-cmd or --creds-url")


@dataclass
class Connection:
    """The store for one command (local, backend or hybrid); close when done."""

    store: Store
    creds: TemporaryCredentials | None  # None in backend mode
    source: CredentialSource | None
    endpoint: Endpoint
    region: str
    signer: str = ""

    @property
    def client(self) -> Store:
        return self.store

    @property
    def mode(self) -> str:
        if not self.signer:
            return "local"
        return "hybrid" if self.creds is not None else "backend"

    def journal_context(self, journal: Journal | None) -> JournalContext | None:
        if journal is None:
            return None
        return JournalContext(
            journal,
            self.endpoint.url,
            self.region,
            self.endpoint.path_style,
            source_record(self.source) if self.source else {},
            self.signer,
        )


@contextmanager
def connect(
    source: CredentialSource | None,
    target: Target,
    *,
    concurrency: int,
    on_warning: Callable[[str], None],
    signer: str | None = None,
) -> Iterator[Connection]:
    """Fetch credentials once (so that a bad source fails before any upload),
    then open one pooled HTTP client. With a signer the store is the backend
    (no credentials) or hybrid (credentials too); if the credentials cannot be
    fetched and a signer is there, the backend signs, after one warning."""
    cache = CredentialCache(source, on_warning=on_warning) if source else None
    creds = None
    if cache is not None:
        try:
            creds = cache.get()
        except CredentialsError as exc:
            if not signer:
                raise
            on_warning(f"{exc}; signing through the backend instead")
            cache = None
    endpoint, region = target.resolve(creds) if creds else (_UNUSED, DEFAULT_REGION)
    with httpx.Client(
        timeout=httpx.Timeout(120.0, connect=15.0),
        limits=httpx.Limits(max_connections=concurrency + 4),
        follow_redirects=False,
    ) as http:
        local = S3Client(http, LocalSigner(cache, region), endpoint) if cache else None
        store: Store
        if not signer:
            assert local is not None
            store = local
        else:
            backend = CompanionClient(http, signer)
            presigned = S3Client(http, Presigned(), endpoint)
            store = (
                HybridStore(backend, presigned, local, on_warning=on_warning)
                if local
                else BackendStore(backend, presigned, on_warning=on_warning)
            )
        yield Connection(store, creds, source if cache else None, endpoint, region, signer or "")


@contextmanager
def connect_entry(
    entry: Entry,
    *,
    override: CredentialSource | None,
    header_lines: Sequence[str],
    target: Target,
    signer: str | None,
    concurrency: int,
    on_warning: Callable[[str], None],
) -> Iterator[Connection]:
    """Connect the way a journaled upload was made: its credential source,
    endpoint and signer, unless the command line overrides them."""
    backend = signer or entry.signer
    source = override or source_from_record(entry.credentials, header_lines, signer=backend)
    with connect(
        source,
        target_of(entry, target),
        concurrency=concurrency,
        on_warning=on_warning,
        signer=backend,
    ) as conn:
        yield conn


def run(
    conn: Connection,
    jobs: Sequence[Job],
    options: UploadOptions,
    *,
    journal: Journal | None,
    on_event: Callable[[Event], None],
) -> list[FileResult | FluppyError]:
    """Upload ``jobs`` over ``conn``."""
    engine = Engine(conn.client, options, on_event=on_event, journal=conn.journal_context(journal))
    return engine.run(jobs)


def match_journal(
    jobs: Sequence[Job],
    journal: Journal,
    *,
    endpoint: str,
    threshold: int,
    restart: bool,
    signer: str = "",
) -> list[Job]:
    """Attach each multipart job's journal entry: resume it, or with ``restart``
    replace it. A file that changed since its upload began is refused."""
    out = []
    for job in jobs:
        if not plan.use_multipart(job.size, threshold):
            out.append(job)
            continue
        entry = journal.find(
            source=str(job.source), endpoint=endpoint, bucket=job.bucket, key=job.key, signer=signer
        )
        if entry is None:
            out.append(job)
        elif restart:
            out.append(dataclasses.replace(job, replaces=entry))
        else:
            check_unchanged(entry)
            out.append(dataclasses.replace(job, resume=entry))
    return out


def check_unchanged(entry: Entry) -> None:
    """Refuse to resume into a corrupt object when the file changed."""
    path = Path(entry.source)
    try:
        now = Fingerprint.of(path)
    except OSError as exc:
        msg = f"{entry.source} cannot be read to resume its upload: {exc.strerror}"
        raise UsageError(msg, hint=f"fluppy abort {entry.upload_id[:12]} drops it") from None
    diff = now.differences(entry.fingerprint)
    if diff:
        msg = (
            f"{entry.source} changed since its upload began ({', '.join(diff)} differ); "
            "resuming would store a corrupt object"
        )
        hint = f"start again with: fluppy upload {entry.source} --to {entry.destination} --restart"
        raise UsageError(msg, hint=hint)


def job_for(entry: Entry) -> Job:
    """The job that resumes a journal entry (after ``check_unchanged``)."""
    st = Path(entry.source).stat()
    return Job(
        Path(entry.source),
        st.st_size,
        st.st_mtime_ns,
        entry.bucket,
        entry.key,
        entry.content_type,
        resume=entry,
        restart_if_gone=False,
    )


def target_of(entry: Entry, override: Target) -> Target:
    """Where a journaled upload lives, unless the command line says otherwise."""
    return Target(
        override.endpoint_url or entry.endpoint,
        override.region or entry.region,
        entry.path_style if override.path_style is None else override.path_style,
    )


def older_than(entries: Sequence[Entry], seconds: float | None) -> list[Entry]:
    if seconds is None:
        return list(entries)
    return [e for e in entries if e.age_seconds() >= seconds]


def stale_remote_uploads(
    client: Store,
    bucket: str,
    prefix: str,
    *,
    known: set[str],
    min_age: float,
) -> list[OpenUpload]:
    """In-progress uploads in the bucket that the journal does not know and that
    are at least ``min_age`` seconds old: abandoned parts that cost money."""
    now = datetime.now(timezone.utc)
    out = []
    if not isinstance(client, S3Client):
        msg = "abort --remote lists the bucket itself: it needs credentials, not only a signer"
        raise UsageError(msg, hint="give --creds-cmd or --creds-url")
    for up in client.list_multipart_uploads(bucket, prefix):
        if up.upload_id in known:
            continue
        try:
            started = datetime.fromisoformat(up.initiated.replace("Z", "+00:00"))
        except ValueError:
            continue  # no usable date: never abort what cannot be dated
        if (now - started).total_seconds() >= min_age:
            out.append(up)
    return out


def notice_sink(on_event: Callable[[Event], None]) -> Callable[[str], None]:
    return lambda message: on_event(Notice(message))
