"""Credentials: the three JSON shapes, the two sources, and the refreshing cache."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fluppy_cli.credentials import (
    CommandSource,
    CredentialCache,
    TemporaryCredentials,
    UrlSource,
    check_creds_url,
    describe_expiry,
    header_pairs,
    parse_credentials,
)
from fluppy_cli.errors import CredentialsError, UsageError

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLESECRET"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN//////////"
INNER = {
    "AccessKeyId": "ASIAEXAMPLEKEY123456",
    "SecretAccessKey": SECRET,
    "SessionToken": TOKEN,
    "Expiration": "2030-01-01T12:00:00Z",
}


@pytest.mark.parametrize(
    ("doc", "bucket", "region"),
    [
        ({"Version": 1, **INNER}, None, None),
        ({"credentials": INNER, "bucket": "b1", "region": "eu-west-1"}, "b1", "eu-west-1"),
        ({"Credentials": INNER, "AssumedRoleUser": {"Arn": "x"}}, None, None),
    ],
    ids=["credential_process", "uppy", "sts-assume-role"],
)
def test_each_shape_is_read(doc: dict[str, object], bucket: str | None, region: str | None) -> None:
    creds = parse_credentials(json.dumps(doc), where="test")
    assert creds.access_key_id == "ASIAEXAMPLEKEY123456"
    assert creds.secret_access_key == SECRET
    assert creds.session_token == TOKEN
    assert creds.expiration == datetime(2030, 1, 1, 12, tzinfo=timezone.utc)
    assert (creds.bucket, creds.region) == (bucket, region)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2030-01-01T12:00:00+02:00", datetime(2030, 1, 1, 10, tzinfo=timezone.utc)),
        (
            "2030-01-01T12:00:00.123456Z",
            datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc),
        ),
        ("2030-01-01T12:00:00", datetime(2030, 1, 1, 12, tzinfo=timezone.utc)),
        ("", None),
    ],
)
def test_expiration_formats(stamp: str, expected: datetime | None) -> None:
    creds = parse_credentials(json.dumps({**INNER, "Expiration": stamp}), where="t")
    assert creds.expiration == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "text that is not JSON"),
        ("<html>login</html>", "HTML"),
        ("[1, 2]", "not an object"),
        (json.dumps({"Version": 2, **INNER}), "Version 2"),
        (json.dumps({"SecretAccessKey": SECRET}), "without AccessKeyId"),
        (json.dumps({"credentials": {"AccessKeyId": "A"}}), "without SecretAccessKey"),
        (json.dumps({**INNER, "Expiration": "next tuesday"}), "not an ISO 8601"),
        (json.dumps({**INNER, "Expiration": 5}), "not a string"),
        (json.dumps({**INNER, "SessionToken": 5}), "SessionToken is not a string"),
    ],
)
def test_bad_documents_are_named_without_their_secrets(text: str, message: str) -> None:
    with pytest.raises(CredentialsError, match=message) as info:
        parse_credentials(text, where="the test source")
    assert SECRET not in str(info.value)
    assert "the test source" in str(info.value)


def test_repr_hides_secret_and_token() -> None:
    creds = parse_credentials(json.dumps(INNER), where="t")
    assert SECRET not in repr(creds)
    assert TOKEN not in repr(creds)
    assert creds.masked_key_id == "ASIA" + "*" * 16


# -- sources -------------------------------------------------------------------


def test_command_source_reads_stdout(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(INNER))
    creds = CommandSource(f"cat {tmp_path / 'c.json'}").fetch()
    assert creds.session_token == TOKEN


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("exit 7", "exited with status 7"),
        ("echo hello", "not JSON"),
        ("sleep 5", "did not finish within 0.5 s"),
        ("/nonexistent/fluppy-creds", "exited with status 127"),
    ],
)
def test_command_source_failures(command: str, message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        CommandSource(command, timeout=0.5).fetch()


def test_command_source_gets_nothing_on_stdin(tmp_path: Path) -> None:
    # A command that waits for input must not hang fluppy: stdin is /dev/null.
    (tmp_path / "c.json").write_text(json.dumps(INNER))
    cmd = f"cat - >/dev/null; cat {tmp_path / 'c.json'}"
    assert CommandSource(cmd, timeout=5).fetch().access_key_id == INNER["AccessKeyId"]


@pytest.mark.parametrize(
    "url",
    ["http://example.com/creds", "http://10.0.0.1/creds", "ftp://localhost/x", "localhost:8080"],
)
def test_creds_url_refuses_clear_text_to_other_hosts(url: str) -> None:
    with pytest.raises(UsageError):
        check_creds_url(url)


@pytest.mark.parametrize(
    "url",
    ["https://example.com/creds", "http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]/x"],
)
def test_creds_url_accepts_https_and_loopback(url: str) -> None:
    assert check_creds_url(url) == url


def test_url_source_unreachable() -> None:
    with pytest.raises(CredentialsError, match="could not be reached"):
        UrlSource("http://127.0.0.1:9/creds", timeout=2).fetch()


def test_header_pairs() -> None:
    assert header_pairs(["Authorization: Bearer x:y", "", "X-A:b"]) == [
        ("Authorization", "Bearer x:y"),
        ("X-A", "b"),
    ]
    with pytest.raises(UsageError, match="number 1") as info:
        header_pairs(["Bearer secret-token-value"])
    assert "secret-token-value" not in str(info.value)


# -- the cache: pure logic with a fake clock and a fake source -----------------------


class FakeSource:
    description = "the fake source"

    def __init__(self, clock: FakeClock, lifetime: timedelta | None, *, fail: bool = False) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.fail = fail
        self.calls = 0
        self.gate: threading.Event | None = None

    def fetch(self) -> TemporaryCredentials:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise CredentialsError("the fake source failed")
        exp = self.clock.now + self.lifetime if self.lifetime else None
        return TemporaryCredentials(f"AKID{self.calls}", "s", "t", exp)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def _wait_for(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_cache_reuses_credentials_until_five_minutes_before_expiry() -> None:
    clock = FakeClock()
    src = FakeSource(clock, timedelta(hours=1))
    cache = CredentialCache(src, clock=clock)
    first = cache.get()
    clock.now += timedelta(minutes=54)
    assert cache.get() is first
    assert src.calls == 1
    clock.now += timedelta(minutes=1, seconds=1)  # inside the last five minutes
    assert cache.get() is first  # the caller is not held up...
    _wait_for(lambda: src.calls == 2)
    _wait_for(lambda: cache.peek() is not first)
    assert cache.get().access_key_id == "AKID2"  # ...and the next one gets the new set


def test_cache_waits_for_new_credentials_in_the_last_minute() -> None:
    clock = FakeClock()
    src = FakeSource(clock, timedelta(hours=1))
    cache = CredentialCache(src, clock=clock)
    cache.get()
    clock.now += timedelta(minutes=59, seconds=30)
    assert cache.get().access_key_id == "AKID2"


def test_short_lifetimes_refresh_at_half_time() -> None:
    clock = FakeClock()
    src = FakeSource(clock, timedelta(seconds=100))
    cache = CredentialCache(src, clock=clock)
    first = cache.get()
    clock.now += timedelta(seconds=49)
    cache.get()
    time.sleep(0.05)
    assert src.calls == 1
    clock.now += timedelta(seconds=2)
    assert cache.get() is first
    _wait_for(lambda: src.calls == 2)
    assert src.calls == 2


def test_concurrent_callers_share_one_fetch() -> None:
    clock = FakeClock()
    src = FakeSource(clock, timedelta(hours=1))
    src.gate = threading.Event()
    cache = CredentialCache(src, clock=clock)
    got: list[TemporaryCredentials] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get())) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    src.gate.set()
    for t in threads:
        t.join()
    assert src.calls == 1
    assert len({id(c) for c in got}) == 1


def test_a_failed_fetch_is_not_cached() -> None:
    clock = FakeClock()
    src = FakeSource(clock, timedelta(hours=1), fail=True)
    cache = CredentialCache(src, clock=clock)
    with pytest.raises(CredentialsError):
        cache.get()
    src.fail = False
    assert cache.get().access_key_id == "AKID2"  # tried again, unlike Uppy #5695


def test_failed_background_refresh_warns_and_keeps_the_current_credentials() -> None:
    clock = FakeClock()
    src = FakeSource(clock, timedelta(hours=1))
    warnings: list[str] = []
    cache = CredentialCache(src, clock=clock, on_warning=warnings.append)
    first = cache.get()
    src.fail = True
    clock.now += timedelta(minutes=56)
    assert cache.get() is first
    _wait_for(lambda: warnings)
    assert "still using the current ones" in warnings[0]
    assert cache.get() is first  # and it does not hammer the source meanwhile
    time.sleep(0.05)
    assert src.calls == 2


def test_invalidate_forces_a_new_fetch() -> None:
    clock = FakeClock()
    src = FakeSource(clock, timedelta(hours=1))
    cache = CredentialCache(src, clock=clock)
    first = cache.get()
    cache.invalidate(TemporaryCredentials("other", "s"))  # not ours: ignored
    assert cache.get() is first
    cache.invalidate(first)
    assert cache.get().access_key_id == "AKID2"


def test_credentials_without_expiration_warn_once_and_are_kept() -> None:
    clock = FakeClock()
    src = FakeSource(clock, None)
    warnings: list[str] = []
    cache = CredentialCache(src, clock=clock, on_warning=warnings.append)
    first = cache.get()
    clock.now += timedelta(days=30)
    assert cache.get() is first
    assert len(warnings) == 1
    assert "long-lived" in warnings[0]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=59, seconds=59), "(in 59 min)"),
        (timedelta(seconds=20), "(in <1 min)"),
        (timedelta(seconds=-5), "expired 2029-12-31T23:59:55Z"),
    ],
)
def test_describe_expiry(delta: timedelta, text: str) -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert text in describe_expiry(TemporaryCredentials("A", "s", None, now + delta), now)
    assert "no expiration" in describe_expiry(TemporaryCredentials("A", "s"), now)
