"""Short-lived credentials: where they come from, what they look like, and the
in-memory cache that refreshes them before they expire.

Credentials live in memory only. Nothing here writes them to disk, logs them or
puts them in an exception message; ``TemporaryCredentials.__repr__`` hides them.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from fluppy_cli.errors import CredentialsError, UsageError

log = logging.getLogger(__name__)

REFRESH_BEFORE = timedelta(minutes=5)  # design note: refresh 5 minutes before Expiration
MUST_REFRESH_BEFORE = timedelta(minutes=1)
RETRY_FAILED_REFRESH_AFTER = 15.0  # seconds between background attempts after a failure
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class TemporaryCredentials:
    """One set of credentials and, in Uppy's shape, the bucket and region."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expiration: datetime | None = None
    bucket: str | None = None
    region: str | None = None

    @property
    def masked_key_id(self) -> str:
        """The access key id with all but its first four characters hidden."""
        return self.access_key_id[:4] + "*" * max(0, len(self.access_key_id) - 4)


def _parse_expiration(value: object, where: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        msg = f"{where}: Expiration is not a string"
        raise CredentialsError(msg, hint="write it as ISO 8601, e.g. 2026-01-01T12:00:00Z")
    text = value.strip()
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not take Z
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        msg = f"{where}: Expiration {value!r} is not an ISO 8601 time"
        raise CredentialsError(msg, hint="write it like 2026-01-01T12:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def parse_credentials(text: str | bytes, *, where: str) -> TemporaryCredentials:
    """Read credentials from any of the three JSON shapes fluppy accepts.

    - AWS ``credential_process``: ``{"Version": 1, "AccessKeyId", ...}``
    - Uppy/Companion: ``{"credentials": {...}, "bucket", "region"}``
    - ``aws sts assume-role`` output: ``{"Credentials": {...}}``

    ``where`` names the source in error messages; values never appear in them.
    """
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        head = text[:40] if isinstance(text, str) else text[:40].decode("utf-8", "replace")
        kind = "HTML" if head.lstrip().startswith("<") else "text that is not JSON"
        msg = f"{where} gave {kind} where credentials JSON was expected"
        raise CredentialsError(msg, hint="see the README for the accepted shapes") from None
    if not isinstance(doc, dict):
        msg = f"{where} gave JSON that is not an object"
        raise CredentialsError(msg, hint="see the README for the accepted shapes")
    inner: Any = doc
    bucket = region = None
    if isinstance(doc.get("credentials"), dict):  # Uppy / Companion
        inner = doc["credentials"]
        bucket, region = doc.get("bucket"), doc.get("region")
    elif isinstance(doc.get("Credentials"), dict):  # aws sts assume-role
        inner = doc["Credentials"]
    elif "Version" in doc and doc["Version"] != 1:
        msg = f"{where}: credential_process Version {doc['Version']!r} is not supported"
        raise CredentialsError(msg, hint="fluppy reads Version 1")
    missing = [k for k in ("AccessKeyId", "SecretAccessKey") if not inner.get(k)]
    if missing:
        msg = f"{where} gave credentials without {' and '.join(missing)}"
        raise CredentialsError(msg, hint="see the README for the accepted shapes")
    for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
        if name in inner and inner[name] is not None and not isinstance(inner[name], str):
            msg = f"{where}: {name} is not a string"
            raise CredentialsError(msg)
    return TemporaryCredentials(
        access_key_id=inner["AccessKeyId"],
        secret_access_key=inner["SecretAccessKey"],
        session_token=inner.get("SessionToken") or None,
        expiration=_parse_expiration(inner.get("Expiration"), where),
        bucket=bucket if isinstance(bucket, str) and bucket else None,
        region=region if isinstance(region, str) and region else None,
    )


class CredentialSource(Protocol):
    """Somewhere fresh credentials come from."""

    @property
    def description(self) -> str:
        """Names the source for messages; never includes header values."""
        ...

    def fetch(self) -> TemporaryCredentials:
        """Fetch a new set; raise ``CredentialsError`` on any failure."""
        ...


@dataclass(frozen=True)
class CommandSource:
    """``--creds-cmd``: a shell command that prints credentials JSON on stdout.

    Its stderr goes to fluppy's stderr so that its own messages reach the user.
    Nothing secret is passed to it on its command line.
    """

    command: str
    timeout: float = DEFAULT_TIMEOUT

    @property
    def description(self) -> str:
        return "the credentials command"

    def fetch(self) -> TemporaryCredentials:
        try:
            done = subprocess.run(
                self.command,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            msg = f"the credentials command did not finish within {self.timeout:g} s"
            raise CredentialsError(msg, hint="raise --creds-timeout or fix the command") from None
        except OSError as exc:
            msg = f"the credentials command could not be started: {exc.strerror}"
            raise CredentialsError(msg) from None
        if done.returncode != 0:
            msg = f"the credentials command exited with status {done.returncode}"
            raise CredentialsError(msg, hint="run it by hand to see why")
        return parse_credentials(done.stdout, where="the credentials command")


def check_creds_url(url: str) -> str:
    """Refuse URLs that would send credentials in clear text to another host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"--creds-url {url!r} is not an http(s) URL"
        raise UsageError(msg)
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        msg = f"--creds-url uses http:// to {parts.hostname}, which would send credentials in clear"
        raise UsageError(msg, hint="use https://, or http:// to localhost only")
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class UrlSource:
    """``--creds-url``: a GET that answers credentials JSON (e.g. Companion's /s3/sts)."""

    url: str
    headers: Sequence[tuple[str, str]] = ()
    timeout: float = DEFAULT_TIMEOUT

    @property
    def description(self) -> str:
        return f"the credentials URL {urlsplit(self.url).netloc}{urlsplit(self.url).path}"

    def fetch(self) -> TemporaryCredentials:
        where = self.description
        try:
            response = httpx.get(
                self.url, headers=list(self.headers), timeout=self.timeout, follow_redirects=False
            )
        except httpx.TimeoutException:
            msg = f"{where} did not answer within {self.timeout:g} s"
            raise CredentialsError(msg) from None
        except httpx.HTTPError as exc:
            msg = f"{where} could not be reached: {type(exc).__name__}"
            raise CredentialsError(msg) from None
        if response.status_code != 200:
            msg = f"{where} answered HTTP {response.status_code}"
            hint = "check --creds-header" if response.status_code in (401, 403) else None
            raise CredentialsError(msg, hint=hint)
        return parse_credentials(response.content, where=where)


class CredentialCache:
    """Holds one set of credentials in memory and renews it before it expires.

    - In the last five minutes (or the last half of a shorter lifetime) one
      background thread fetches new credentials while every request goes on
      with the current ones: a refresh never stalls an upload.
    - In the last minute (or tenth of the lifetime) callers wait for the fetch.
    - A failed fetch is never cached (Uppy bug #5695): the next call tries again.
    """

    def __init__(
        self,
        source: CredentialSource,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        on_warning: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.source = source
        self._clock = clock
        self._warn = on_warning
        self._lock = threading.Lock()  # guards the fields below
        self._fetch_lock = threading.Lock()  # one fetch at a time
        self._current: TemporaryCredentials | None = None
        self._fetched_at: datetime | None = None
        self._refreshing = False
        self._next_background_try = 0.0
        self._warned_long_lived = False
        self.fetch_count = 0

    def get(self) -> TemporaryCredentials:
        """Valid credentials, fetching or refreshing as needed."""
        with self._lock:
            creds, fetched_at = self._current, self._fetched_at
        if creds is None or fetched_at is None:
            return self._fetch_blocking(stale=None)
        if creds.expiration is None:
            return creds
        now = self._clock()
        lifetime = creds.expiration - fetched_at
        if now >= creds.expiration - min(MUST_REFRESH_BEFORE, lifetime / 10):
            return self._fetch_blocking(stale=creds)
        if now >= creds.expiration - min(REFRESH_BEFORE, lifetime / 2):
            self._start_background_refresh()
        return creds

    def invalidate(self, creds: TemporaryCredentials) -> None:
        """Forget ``creds`` after the server rejected them (ExpiredToken)."""
        with self._lock:
            if self._current is creds:
                self._current = None
                self._fetched_at = None

    def peek(self) -> TemporaryCredentials | None:
        """The credentials held now, without fetching."""
        with self._lock:
            return self._current

    def _store(self, creds: TemporaryCredentials, fetched_at: datetime) -> None:
        with self._lock:
            self._current, self._fetched_at = creds, fetched_at
        if creds.expiration is None and not self._warned_long_lived:
            self._warned_long_lived = True
            self._warn(
                f"{self.source.description} gave credentials without an Expiration; "
                "they look long-lived, which defeats the point of fluppy"
            )

    def _fetch_blocking(self, *, stale: TemporaryCredentials | None) -> TemporaryCredentials:
        with self._fetch_lock:
            with self._lock:
                current = self._current
            # Another thread fetched while this one waited for the lock.
            if current is not None and current is not stale:
                return current
            creds = self._fetch()
            self._store(creds, self._clock())
            return creds

    def _fetch(self) -> TemporaryCredentials:
        self.fetch_count += 1
        log.debug("fetching credentials from %s", self.source.description)
        return self.source.fetch()

    def _start_background_refresh(self) -> None:
        with self._lock:
            if self._refreshing or time.monotonic() < self._next_background_try:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh_in_background, daemon=True).start()

    def _refresh_in_background(self) -> None:
        try:
            if not self._fetch_lock.acquire(blocking=False):
                return  # a blocking fetch is already under way
            try:
                creds = self._fetch()
                self._store(creds, self._clock())
            finally:
                self._fetch_lock.release()
        except CredentialsError as exc:
            with self._lock:
                self._next_background_try = time.monotonic() + RETRY_FAILED_REFRESH_AFTER
            self._warn(f"could not refresh credentials, still using the current ones: {exc}")
        finally:
            with self._lock:
                self._refreshing = False


def describe_expiry(creds: TemporaryCredentials, now: datetime) -> str:
    """``expires 2026-01-01T12:00:00Z (in 59 min)`` or ``no expiration``."""
    if creds.expiration is None:
        return "no expiration (long-lived?)"
    left = creds.expiration - now
    stamp = creds.expiration.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if left.total_seconds() <= 0:
        return f"expired {stamp}"
    minutes = int(left.total_seconds() // 60)
    return f"expires {stamp} (in {minutes} min)" if minutes else f"expires {stamp} (in <1 min)"


def header_pairs(lines: Sequence[str]) -> list[tuple[str, str]]:
    """Parse ``Name: value`` lines for ``--creds-header``."""
    pairs: list[tuple[str, str]] = []
    for line in lines:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            # The line may hold a token: name it by its position, never echo it.
            msg = f"--creds-header number {len(pairs) + 1} is not 'Name: value'"
            raise UsageError(msg, hint="write it like 'Authorization: Bearer ...'")
        pairs.append((name.strip(), value.strip()))
    return pairs
