"""Fixtures: real servers once per session, and helpers that run the CLI
in-process (fast, measured by coverage) or as a subprocess (the real thing)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import servers

from fluppy_cli.cli import main

MINT = str(Path(__file__).parent / "mint.py")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FLUPPY_* or AWS_* setting of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("FLUPPY_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(scope="session")
def moto() -> Iterator[servers.Moto]:
    m = servers.start_moto()
    os.environ.update(m.env())  # for the minting command fluppy runs
    assert m.proc is not None
    with servers.running(m.proc):
        yield m


@pytest.fixture(scope="session")
def seaweed() -> Iterator[servers.Seaweed]:
    w = servers.start_seaweed()
    assert w.proc is not None
    with servers.running(w.proc):
        yield w


@pytest.fixture(scope="session")
def _moto_proxy(moto: servers.Moto) -> Iterator[servers.Proxy]:
    p = servers.Proxy(int(moto.url.rsplit(":", 1)[1]))
    yield p
    p.close()


@pytest.fixture
def moto_proxy(_moto_proxy: servers.Proxy) -> Iterator[servers.Proxy]:
    _moto_proxy.reset()
    yield _moto_proxy
    _moto_proxy.reset()


@pytest.fixture(scope="session")
def _weed_proxy(seaweed: servers.Seaweed) -> Iterator[servers.Proxy]:
    p = servers.Proxy(int(seaweed.url.rsplit(":", 1)[1]))
    yield p
    p.close()


@pytest.fixture
def weed_proxy(_weed_proxy: servers.Proxy) -> Iterator[servers.Proxy]:
    _weed_proxy.reset()
    yield _weed_proxy
    _weed_proxy.reset()


def mint_cmd(shape: str = "process", *extra: str) -> str:
    """The shell command that prints fresh moto STS credentials in ``shape``."""
    return shlex.join([sys.executable, MINT, shape, *extra])


def weed_cmd(seaweed: servers.Seaweed, shape: str = "process", *extra: str) -> str:
    return mint_cmd(shape, "--static", seaweed.key, seaweed.secret, *extra)


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run fluppy in this process: ``cli("upload", "a.bin", ...)``."""

    def run(*args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        return Result(int(code), out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def fluppy() -> Callable[..., Result]:
    """Run fluppy as a separate process, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "fluppy_cli", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., Path]:
    """A file of ``size`` random bytes."""

    def make(name: str, size: int) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        return path

    return make


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fetch(client: Any, bucket: str, key: str) -> bytes:
    """Download an object to check its bytes."""
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


class CredsServer:
    """An HTTP endpoint that answers credentials in each shape, or fails on purpose."""

    def __init__(self, moto: servers.Moto) -> None:
        self.moto = moto
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.hits += 1
                path = self.path.split("?")[0].strip("/")
                if path == "html":
                    return self._send(200, b"<html><body>login</body></html>", "text/html")
                if path.startswith("status"):
                    return self._send(int(path[6:]), b'{"error":"nope"}', "application/json")
                if path == "needs-auth":
                    if self.headers.get("Authorization") != "Bearer let-me-in":
                        return self._send(401, b"{}", "application/json")
                    path = "process"
                if path in ("process", "uppy", "sts"):
                    out = subprocess.run(
                        [
                            sys.executable,
                            MINT,
                            path,
                            "--bucket",
                            servers.BUCKET,
                            "--region",
                            "us-east-1",
                        ],
                        capture_output=True,
                        check=True,
                    ).stdout
                    return self._send(200, out, "application/json")
                return self._send(404, b"{}", "application/json")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="session")
def creds_server(moto: servers.Moto) -> Iterator[CredsServer]:
    s = CredsServer(moto)
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@dataclass
class Backend:
    """Uppy Companion signing for an (unauthenticated) moto, behind a recording proxy."""

    url: str  # the proxy: what fluppy is given as --signer
    s3_url: str
    proxy: servers.RecordingProxy

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name=servers.REGION,
            aws_access_key_id=servers.COMPANION_KEY,
            aws_secret_access_key=servers.COMPANION_SECRET,
        )


@pytest.fixture(scope="session")
def _companion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    import shutil

    if shutil.which("node") is None or not servers.COMPANION_BIN.exists():
        pytest.skip("node or Uppy Companion is not installed here (make companion installs it)")
    s3_url, moto_proc = servers.start_open_moto()
    with servers.running(moto_proc):
        url, proc = servers.start_companion(s3_url, str(tmp_path_factory.mktemp("companion")))
        with servers.running(proc):
            proxy = servers.RecordingProxy(url)
            yield Backend(proxy.url, s3_url, proxy)
            proxy.close()


@pytest.fixture
def companion(_companion: Backend) -> Backend:
    _companion.proxy.calls.clear()
    _companion.proxy.fail_with = None
    return _companion
