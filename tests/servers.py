"""Real servers on 127.0.0.1 for the tests: moto (auth on, STS), SeaweedFS, and a
small TCP proxy that adds latency or faults. Started once per session."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config

BUCKET = "fluppy-test"
DENIED_BUCKET = "fluppy-denied"
REGION = "us-east-1"
ACCOUNT = "123456789012"

UPLOAD_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": f"arn:aws:s3:::{BUCKET}/*",
        },
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucketMultipartUploads"],
            "Resource": f"arn:aws:s3:::{BUCKET}",
        },
    ],
}


def free_port(*, with_grpc: bool = False) -> int:
    """A free TCP port below 55000; with_grpc also needs port+10000 free."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if with_grpc:
            if port >= 55000:
                continue
            try:
                with socket.socket() as s2:
                    s2.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


@dataclass
class Moto:
    """moto_server with authentication on after the set-up calls."""

    url: str
    minter_key: str
    minter_secret: str
    role_arn: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def client(self, service: str) -> object:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.minter_key,
            aws_secret_access_key=self.minter_secret,
            config=Config(s3={"addressing_style": "path"}),
        )

    def env(self) -> dict[str, str]:
        """What the minting helper needs (the tests' own secrets, never fluppy's)."""
        return {
            "MINT_ENDPOINT": self.url,
            "MINT_KEY": self.minter_key,
            "MINT_SECRET": self.minter_secret,
            "MINT_ROLE_ARN": self.role_arn,
        }


SETUP_CALLS = 8


def _spawn_moto(env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port(port, proc)
    return (
        f"http://127.0.0.1:{port}",
        proc,
    )  # the unauthenticated calls start_moto makes, counted exactly


def start_moto() -> Moto:
    url, proc = _spawn_moto({**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS)})
    anon = {
        "endpoint_url": url,
        "region_name": REGION,
        "aws_access_key_id": "setup",
        "aws_secret_access_key": "setup",
    }
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **anon)
    iam = boto3.client("iam", **anon)
    s3.create_bucket(Bucket=BUCKET)  # 1
    s3.create_bucket(Bucket=DENIED_BUCKET)  # 2
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                # moto compares the principal literally, as AWS does for a user ARN
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/minter"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="uploader", AssumeRolePolicyDocument=json.dumps(trust))  # 3
    iam.put_role_policy(  # 4
        RoleName="uploader", PolicyName="upload-only", PolicyDocument=json.dumps(UPLOAD_POLICY)
    )
    iam.create_user(UserName="minter")  # 5
    minter_policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "s3:*"], "Resource": "*"}],
    }
    arn = iam.create_policy(PolicyName="mint", PolicyDocument=json.dumps(minter_policy))  # 6
    iam.attach_user_policy(UserName="minter", PolicyArn=arn["Policy"]["Arn"])  # 7
    key = iam.create_access_key(UserName="minter")["AccessKey"]  # 8
    return Moto(url, key["AccessKeyId"], key["SecretAccessKey"], role["Role"]["Arn"], proc)


@dataclass
class Seaweed:
    """SeaweedFS with S3 identities: a strict server that checks every checksum."""

    url: str
    key: str
    secret: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    workdir: str = ""

    def client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            config=Config(s3={"addressing_style": "path"}),
        )


def start_seaweed() -> Seaweed:
    work = tempfile.mkdtemp(prefix="fluppy-weed-")
    key, secret = "AKIDSEAWEEDTEST0001", "seaweed-secret-key-for-tests-only"
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": key, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    Path(work, "identities.json").write_text(json.dumps(identities))
    Path(work, "data").mkdir()
    ports = [free_port(with_grpc=True) for _ in range(6)]
    with open(Path(work, "weed.log"), "wb") as log:
        proc = _start_weed(work, log, ports)
    wait_for_port(ports[0], proc)
    weed = Seaweed(f"http://127.0.0.1:{ports[0]}", key, secret, proc, work)
    deadline = time.monotonic() + 60
    while True:  # the S3 port opens before the filer is ready for buckets
        try:
            weed.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
            return weed
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _start_weed(work: str, log: object, ports: list[int]) -> subprocess.Popen[bytes]:
    s3_port, master, volume, filer, iceberg, lance = ports
    return subprocess.Popen(
        [
            _bin("weed"),
            "server",
            f"-dir={work}/data",
            "-s3",
            f"-s3.port={s3_port}",
            f"-s3.config={work}/identities.json",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.port.iceberg={iceberg}",  # its default, 8181, may be taken
            f"-s3.port.lance={lance}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
        ],
        stdout=log,  # type: ignore[arg-type]
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class Proxy:
    """A TCP proxy in front of a server, for latency and faults.

    - ``rate``: bytes per second, client to server (0 = unlimited)
    - ``drop_next``: close this many new connections at once
    - ``corrupt_next``: flip one byte this far into the next client stream
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rate = 0
        self.drop_next = 0
        self.corrupt_next: int | None = None
        self.connections = 0
        self.corrupted = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.rate, self.drop_next, self.corrupt_next = 0, 0, None
            self.connections = self.corrupted = 0

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                if self.drop_next > 0:
                    self.drop_next -= 1
                    client.close()
                    continue
                corrupt, self.corrupt_next = self.corrupt_next, None
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            threading.Thread(
                target=self._pipe, args=(client, upstream, corrupt, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, None, False), daemon=True
            ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, corrupt: int | None, up: bool) -> None:
        seen = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if corrupt is not None and seen <= corrupt < seen + len(data):
                    i = corrupt - seen
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                    self.corrupted += 1
                seen += len(data)
                if up and self.rate:
                    time.sleep(len(data) / self.rate)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@contextlib.contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        stop(proc)


COMPANION_BIN = Path(__file__).parent.parent / ".cache/companion/node_modules/.bin/companion"
COMPANION_KEY, COMPANION_SECRET = "AKIDCOMPANIONTEST01", "companion-secret-for-tests"


def start_open_moto() -> tuple[str, subprocess.Popen[bytes]]:
    """moto without authentication: it answers presigned URLs with 500 when auth is
    on, and Companion's /s3/sts gets moto's fixed example key, which auth rejects."""
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    url, proc = _spawn_moto(env)
    boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=COMPANION_KEY,
        aws_secret_access_key=COMPANION_SECRET,
    ).create_bucket(Bucket=BUCKET)
    return url, proc


def start_companion(s3_url: str, workdir: str) -> tuple[str, subprocess.Popen[bytes]]:
    """Uppy Companion 6.2.2 (from npm, pinned) signing for ``s3_url``."""
    port = free_port()
    env = {
        **os.environ,
        "COMPANION_AWS_KEY": COMPANION_KEY,
        "COMPANION_AWS_SECRET": COMPANION_SECRET,
        "COMPANION_AWS_BUCKET": BUCKET,
        "COMPANION_AWS_REGION": REGION,
        "COMPANION_AWS_ENDPOINT": s3_url,
        "COMPANION_AWS_FORCE_PATH_STYLE": "true",
        "AWS_ENDPOINT_URL_STS": s3_url,
        "COMPANION_DATADIR": workdir,
        "COMPANION_DOMAIN": f"127.0.0.1:{port}",
        "COMPANION_PROTOCOL": "http",
        "COMPANION_PORT": str(port),
        "COMPANION_SECRET": "companion-test-secret",
        "COMPANION_CLIENT_ORIGINS": "true",
    }
    with open(Path(workdir, "companion.log"), "wb") as log:
        proc = subprocess.Popen(
            [str(COMPANION_BIN)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for_port(port, proc)
    return f"http://127.0.0.1:{port}", proc


class RecordingProxy:
    """An HTTP proxy in front of a backend that records each request's method and
    path, so that tests can tell which routes fluppy called."""

    def __init__(self, upstream: str) -> None:
        import http.server

        import httpx

        self.calls: list[tuple[str, str]] = []
        self.fail_with: int | None = None
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                proxy.calls.append((self.command, self.path.split("?")[0]))
                if proxy.fail_with is not None:
                    body = b"<html><body>Bad Gateway</body></html>"
                    self.send_response(proxy.fail_with)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                r = httpx.request(
                    self.command, upstream + self.path, headers=headers, content=data, timeout=30
                )
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_DELETE = do_PUT = _forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def routes(self) -> set[str]:
        """The routes called, with ids and part numbers folded: GET /s3/multipart/:id/:n."""
        out = set()
        for method, path in self.calls:
            parts = path.split("/")
            if len(parts) > 3 and parts[2] == "multipart":
                parts[3] = ":id"
                if len(parts) > 4 and parts[4].isdigit():
                    parts[4] = ":n"
            out.add(f"{method} {'/'.join(parts)}")
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
