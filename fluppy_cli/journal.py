"""The per-user journal of multipart uploads in progress, so that an upload cut
short by kill -9, Ctrl-C, a reboot or an outage resumes where it stopped.

Layout: a folder (mode 0700; platformdirs' user state dir, so XDG_STATE_HOME
moves it) holding one JSON file per upload (mode 0600), named after the upload
id. One file per upload means a damaged file costs only its own entry, and two
fluppy processes never write the same file.

- Every write is atomic: a temp file in the same folder, fsync, ``os.replace``,
  then fsync of the folder.
- A process that drives an upload holds an exclusive lock on that entry
  (``flock`` on ``<name>.lock``), so a cron job and a person cannot both resume
  it. A folder-wide lock serializes "find or claim an entry".
- A part is recorded only after the server acknowledged it; records may lag the
  server (they are written at most once a second), never lead it. On resume the
  server is asked (ListParts): it is the truth, the journal a hint.
- Never stored: credentials, header values. Stored: the credential *source*.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from platformdirs import user_state_dir

from fluppy_cli.errors import FluppyError, UsageError
from fluppy_cli.journal_migrations import CURRENT as VERSION
from fluppy_cli.journal_migrations import migrate

SAMPLES = 16
SAMPLE_SIZE = 64 * 1024


def default_dir() -> Path:
    """``$XDG_STATE_HOME/fluppy/uploads`` (``~/.local/state/fluppy/uploads``)."""
    return Path(user_state_dir("fluppy")) / "uploads"


# -- fingerprint --------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """Size, mtime and a SHA-256 over 16 blocks of 64 KiB spread evenly through
    the file (first and last included): 1 MiB read whatever the size, and any
    change of size or mtime is caught outright."""

    size: int
    mtime_ns: int
    sample_sha256: str

    @classmethod
    def of(cls, path: Path) -> Fingerprint:
        st = path.stat()
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for offset in sample_offsets(st.st_size):
                f.seek(offset)
                digest.update(f.read(SAMPLE_SIZE))
        return cls(st.st_size, st.st_mtime_ns, digest.hexdigest())

    def differences(self, other: Fingerprint) -> list[str]:
        """What differs, in words: ``["size", "content"]``."""
        out = []
        if self.size != other.size:
            out.append("size")
        if self.mtime_ns != other.mtime_ns:
            out.append("modification time")
        if self.sample_sha256 != other.sample_sha256:
            out.append("content")
        return out


def sample_offsets(size: int) -> list[int]:
    """Where the fingerprint's blocks start (pure)."""
    if size <= SAMPLES * SAMPLE_SIZE:
        return list(range(0, size, SAMPLE_SIZE))
    last = size - SAMPLE_SIZE
    return [last * i // (SAMPLES - 1) for i in range(SAMPLES)]


# -- entries ------------------------------------------------------------------


@dataclass
class PartRecord:
    """A part the server acknowledged."""

    number: int
    size: int
    etag: str
    checksum: str  # base64 value sent with the part ("" for --checksum none)


@dataclass
class Entry:
    """One multipart upload in progress."""

    upload_id: str
    bucket: str
    key: str
    endpoint: str
    region: str
    path_style: bool
    part_size: int
    checksum: str
    content_type: str
    source: str
    fingerprint: Fingerprint
    credentials: dict[str, Any]  # {"command": ...} or {"url": ..., "header_names": [...]}
    metadata: dict[str, str] = field(default_factory=dict)
    signer: str = ""  # the signing backend's URL: set for backend and hybrid mode
    created: str = field(default_factory=lambda: _now())  # noqa: PLW0108 - _now is defined below
    parts: dict[int, PartRecord] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The entry's file stem: a hash of the upload id (ids are long, not file-safe)."""
        return hashlib.sha256(self.upload_id.encode()).hexdigest()[:24]

    @property
    def destination(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def confirmed_bytes(self) -> int:
        return sum(p.size for p in self.parts.values())

    def age_seconds(self, now: datetime | None = None) -> float:
        now = now or datetime.now(timezone.utc)
        return (now - datetime.fromisoformat(self.created)).total_seconds()

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["parts"] = [asdict(p) for _, p in sorted(self.parts.items())]
        return {"version": VERSION, **doc}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Entry:
        doc = dict(doc)
        doc.pop("version", None)
        doc["fingerprint"] = Fingerprint(**doc["fingerprint"])
        doc["parts"] = {p["number"]: PartRecord(**p) for p in doc.get("parts", [])}
        return cls(**doc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class JournalProblem(FluppyError):
    """An entry that could not be read; reported, never fatal."""


# -- the folder ------------------------------------------------------------------


class Journal:
    """The journal folder. ``Journal(path)`` does no I/O; ``open`` creates it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []  # one line per entry that could not be read

    @classmethod
    def open(cls, path: Path | None = None) -> Journal:
        """The journal at ``path`` (default: the user state dir), created 0700."""
        journal = cls(path or default_dir())
        try:
            journal.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(journal.path, 0o700)
        except OSError as exc:
            msg = f"cannot use the journal folder {journal.path}: {exc.strerror}"
            raise UsageError(msg, hint="give another one with --journal PATH") from None
        return journal

    # -- reading ---------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every readable entry. Unreadable files are moved aside as
        ``<name>.json.corrupt`` (a copy, never deleted) and listed in
        ``problems``; files of a newer format are left alone and listed."""
        out = []
        for path in sorted(self.path.glob("*.json")):
            entry = self._read(path)
            if entry is not None:
                out.append(entry)
        return out

    def _read(self, path: Path) -> Entry | None:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return None  # finished by another process meanwhile
        except (OSError, ValueError) as exc:
            reason = (
                "it is not valid JSON (truncated?)" if isinstance(exc, ValueError) else str(exc)
            )
            self._set_aside(path, reason)
            return None
        if not isinstance(doc, dict):
            self._set_aside(path, "it is not a JSON object")
            return None
        version = doc.get("version")
        if isinstance(version, int) and version > VERSION:
            self.problems.append(
                f"{path} was written by a newer fluppy (format {version}); left as it is"
            )
            return None
        try:
            doc = migrate(doc)
        except ValueError as exc:
            self._set_aside(path, str(exc))
            return None
        try:
            return Entry.from_json(doc)
        except (TypeError, KeyError, ValueError) as exc:
            self._set_aside(path, f"a field is missing or wrong ({exc})")
            return None

    def _set_aside(self, path: Path, reason: str) -> None:
        aside = path.with_name(path.name + ".corrupt")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        self.problems.append(f"journal entry {path.name} unreadable: {reason}; kept as {aside}")

    def find(
        self, *, source: str, endpoint: str, bucket: str, key: str, signer: str = ""
    ) -> Entry | None:
        """The entry for this source and destination, if any. With a signing
        backend the backend chose the key, so source, endpoint and signer decide."""
        for entry in self.entries():
            if (entry.source, entry.endpoint, entry.signer) != (source, endpoint, signer):
                continue
            if signer or (entry.bucket, entry.key) == (bucket, key):
                return entry
        return None

    def select(self, ids: list[str]) -> list[Entry]:
        """Entries by upload id or a unique prefix of one (at least 6 characters)."""
        entries = self.entries()
        chosen = []
        for wanted in ids:
            matches = [e for e in entries if e.upload_id == wanted]
            if not matches and len(wanted) >= 6:
                matches = [e for e in entries if e.upload_id.startswith(wanted)]
            if not matches:
                msg = f"no upload {wanted!r} in the journal {self.path}"
                raise UsageError(msg, hint="see fluppy list")
            if len(matches) > 1:
                raise UsageError(f"{wanted!r} matches several uploads", hint="give more of the id")
            chosen.append(matches[0])
        return chosen

    # -- writing ---------------------------------------------------------------

    def save(self, entry: Entry) -> None:
        """Write one entry atomically (temp file, fsync, rename, fsync folder)."""
        target = self.path / f"{entry.name}.json"
        data = json.dumps(entry.to_json(), indent=1).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{entry.name}.", suffix=".tmp", dir=self.path)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, target)
            self._sync_dir()
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise FluppyError(f"cannot write the journal {target}: {exc.strerror}") from None

    def remove(self, entry: Entry) -> None:
        """Forget an upload (completed or aborted)."""
        for suffix in (".json", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                (self.path / f"{entry.name}{suffix}").unlink()
        self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- locks -------------------------------------------------------------------

    @contextlib.contextmanager
    def folder_lock(self) -> Iterator[None]:
        """Serializes find-or-claim across processes."""
        with self._flock(self.path / ".lock", blocking=True):
            yield

    @contextlib.contextmanager
    def claim(self, entry: Entry) -> Iterator[None]:
        """Exclusive use of one upload; fails at once if another process has it."""
        try:
            with self._flock(self.path / f"{entry.name}.lock", blocking=False):
                yield
        except BlockingIOError:
            msg = f"the upload of {entry.source} to {entry.destination} is in use by another fluppy"
            raise UsageError(msg, hint="wait for it to finish, or stop it first") from None

    @contextlib.contextmanager
    def _flock(self, path: Path, *, blocking: bool) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            yield
        finally:
            os.close(fd)  # closing releases the lock


class Recording:
    """The journal side of one upload in flight: records acknowledged parts,
    writing at most once per ``interval`` seconds, and everything on ``flush``."""

    def __init__(self, journal: Journal, entry: Entry, *, interval: float = 1.0) -> None:
        self.journal = journal
        self.entry = entry
        self._interval = interval
        self._last_write = 0.0
        self._dirty = False
        self._lock = threading.Lock()

    def add_part(self, record: PartRecord) -> None:
        with self._lock:
            self.entry.parts[record.number] = record
            self._dirty = True
            if time.monotonic() - self._last_write >= self._interval:
                self._write()

    def flush(self) -> None:
        with self._lock:
            if self._dirty:
                self._write()

    def _write(self) -> None:
        self.journal.save(self.entry)
        self._last_write = time.monotonic()
        self._dirty = False

    def finish(self) -> None:
        """The upload is complete or aborted: the entry goes."""
        self.journal.remove(self.entry)
