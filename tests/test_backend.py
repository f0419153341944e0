"""Backend mode and Uppy's hybrid mode against real Uppy Companion 6.2.2 (npm),
signing for a moto server. A recording proxy in front of Companion tells which
routes fluppy called. moto runs without auth here: with auth on it answers
presigned URLs with 500, and Companion's /s3/sts hands out moto's fixed example
key, which auth would reject."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import servers
from conftest import Backend, Result, fetch

from fluppy_cli.errors import ExitStatus
from fluppy_cli.plan import MiB

BUCKET = servers.BUCKET
PARTS = ["--part-size", "5MiB", "--multipart-threshold", "5MiB"]


def test_backend_mode_single_file_goes_up_as_a_presigned_post(
    cli: Callable[..., Result], companion: Backend, make_file: Callable[..., Path]
) -> None:
    f = make_file("note.txt", 3000)
    r = cli("upload", str(f), "--signer", companion.url, "--json")
    assert r.code == 0, r.err
    (rec,) = r.json_lines()
    assert rec["bucket"] == BUCKET
    assert rec["key"].endswith("-note.txt")  # the backend chose it: uuid-name
    assert rec["key"] != "note.txt"
    assert rec["sent_bytes"] == 3000
    assert companion.proxy.routes() == {"GET /s3/params"}
    assert fetch(companion.client(), BUCKET, rec["key"]) == f.read_bytes()


def test_backend_mode_multipart_signs_each_part_just_before_sending_it(
    cli: Callable[..., Result], companion: Backend, make_file: Callable[..., Path]
) -> None:
    f = make_file("movie.bin", 12 * MiB)
    r = cli("upload", str(f), "--signer", companion.url, "--json", *PARTS)
    assert r.code == 0, r.err
    (rec,) = r.json_lines()
    assert rec["parts"] == 3
    assert rec["key"].endswith("-movie.bin")
    calls = [c for c in companion.proxy.calls if c[0] == "GET" and c[1].count("/") == 4]
    assert len(calls) == 3  # one signing request per part
    assert companion.proxy.routes() == {
        "POST /s3/multipart",
        "GET /s3/multipart/:id/:n",
        "POST /s3/multipart/:id/complete",
    }
    assert "CRC32 of an empty body" in r.err  # Companion 6.2.2's part URLs, reported
    assert fetch(companion.client(), BUCKET, rec["key"]) == f.read_bytes()


def test_hybrid_mode_signs_locally_and_leaves_the_rest_to_the_backend(
    cli: Callable[..., Result], companion: Backend, make_file: Callable[..., Path]
) -> None:
    small = make_file("small.bin", 1000)
    big = make_file("big.bin", 12 * MiB)
    r = cli(
        "upload",
        str(small),
        str(big),
        "--signer",
        companion.url,
        "--creds-url",
        f"{companion.url}/s3/sts",  # Companion's own credentials route: Uppy's shape
        "--endpoint-url",
        companion.s3_url,
        "--json",
        *PARTS,
    )
    assert r.code == 0, r.err
    recs = {rec["source"]: rec for rec in r.json_lines()}
    assert recs[str(small)]["key"] == "small.bin"  # signed here: fluppy's key rules
    assert recs[str(big)]["key"].endswith("-big.bin")  # created by the backend
    # getUploadParameters and signPart are never called, as in Uppy
    assert companion.proxy.routes() == {
        "GET /s3/sts",
        "POST /s3/multipart",
        "POST /s3/multipart/:id/complete",
    }
    client = companion.client()
    assert fetch(client, BUCKET, "small.bin") == small.read_bytes()
    assert fetch(client, BUCKET, recs[str(big)]["key"]) == big.read_bytes()


def test_companion_sts_route_works_as_a_credentials_url(
    cli: Callable[..., Result], companion: Backend, make_file: Callable[..., Path]
) -> None:
    f = make_file("plain.bin", 6 * MiB)
    r = cli(
        "upload",
        str(f),
        "--creds-url",
        f"{companion.url}/s3/sts",
        "--endpoint-url",
        companion.s3_url,
        "--json",
    )
    assert r.code == 0, r.err
    (rec,) = r.json_lines()
    assert (rec["bucket"], rec["key"]) == (BUCKET, "plain.bin")  # bucket from the answer
    assert fetch(companion.client(), BUCKET, "plain.bin") == f.read_bytes()


def test_credentials_that_fail_fall_back_to_backend_signing(
    cli: Callable[..., Result], companion: Backend, make_file: Callable[..., Path]
) -> None:
    f = make_file("fallback.bin", 2000)
    r = cli("upload", str(f), "--signer", companion.url, "--creds-cmd", "exit 4", "--json")
    assert r.code == 0, r.err
    warnings = [line for line in r.err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "signing through the backend instead" in warnings[0]
    assert "GET /s3/params" in companion.proxy.routes()
    (rec,) = r.json_lines()
    assert fetch(companion.client(), BUCKET, rec["key"]) == f.read_bytes()


@pytest.mark.parametrize(
    ("status", "code", "needle"),
    [
        (502, ExitStatus.TEMPORARY, "HTTP 502 with an HTML page"),
        (400, ExitStatus.FAILED, "HTTP 400"),
    ],
)
def test_backend_errors_name_the_route(
    cli: Callable[..., Result],
    companion: Backend,
    make_file: Callable[..., Path],
    status: int,
    code: int,
    needle: str,
) -> None:
    companion.proxy.fail_with = status
    r = cli("upload", str(make_file("e.bin", 10)), "--signer", companion.url, "--retries", "1")
    assert r.code == code, r.err
    assert "GET /s3/params failed: the signing backend answered" in r.err
    assert needle in r.err
    assert len(companion.proxy.calls) == (2 if status == 502 else 1)  # 5xx retried


def test_an_unreachable_backend_is_a_temporary_failure(
    cli: Callable[..., Result], make_file: Callable[..., Path]
) -> None:
    port = servers.free_port()
    r = cli(
        "upload",
        str(make_file("u.bin", 10)),
        "--signer",
        f"http://127.0.0.1:{port}",
        "--retries",
        "0",
    )
    assert r.code == ExitStatus.TEMPORARY
    assert "could not be reached" in r.err


def test_resume_and_abort_in_backend_mode(
    fluppy: Callable[..., Result],
    companion: Backend,
    make_file: Callable[..., Path],
    tmp_path: Path,
) -> None:
    journal = str(tmp_path / "journal")
    f = make_file("resumed.bin", 20 * MiB)
    argv = ["upload", str(f), "--signer", companion.url, "--journal", journal, "-j", "1", *PARTS]
    assert fluppy(*argv, env={"FLUPPY_FAULT": "after-ack:2"}).code == 137
    (path,) = Path(journal).glob("*.json")
    entry = json.loads(path.read_text())
    assert entry["signer"] == companion.url
    assert entry["credentials"] == {}
    companion.proxy.calls.clear()
    r = fluppy(*argv, "--json")  # the same command resumes, though the backend chose the key
    assert r.code == 0, r.err
    assert r.json_lines()[0]["resumed_bytes"] == 10 * MiB
    assert fetch(companion.client(), BUCKET, r.json_lines()[0]["key"]) == f.read_bytes()

    assert fluppy(*argv, env={"FLUPPY_FAULT": "after-ack:2"}).code == 137
    companion.proxy.calls.clear()
    r = fluppy("resume", "--all", "--journal", journal, "--json")
    assert r.code == 0, r.err
    (rec,) = r.json_lines()
    assert rec["resumed_bytes"] == 10 * MiB
    assert "GET /s3/multipart/:id" in companion.proxy.routes()  # the server was asked
    assert fetch(companion.client(), BUCKET, rec["key"]) == f.read_bytes()

    assert fluppy(*argv, "--restart", env={"FLUPPY_FAULT": "after-ack:1"}).code == 137
    (path,) = Path(journal).glob("*.json")
    upload_id = json.loads(path.read_text())["upload_id"]
    r = fluppy("abort", "--all", "--journal", journal)
    assert r.code == 0, r.err
    assert "DELETE /s3/multipart/:id" in companion.proxy.routes()
    uploads = companion.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert upload_id not in [u["UploadId"] for u in uploads]
    assert list(Path(journal).glob("*.json")) == []


class PutBackend:
    """A small backend speaking the /s3/params route with PUT URLs presigned by
    boto3 (Companion answers with POST forms; the protocol allows both).
    ``expired_first``: the first URL it hands out has already expired."""

    def __init__(self, s3: Any, *, expired_first: bool = False) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        self.calls = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                backend.calls += 1
                query = parse_qs(urlsplit(self.path).query)
                key = f"put-style/{query['filename'][0]}"
                stale = expired_first and backend.calls == 1
                url = s3.generate_presigned_url(
                    "put_object",
                    Params={"Bucket": BUCKET, "Key": key, "ContentType": query["type"][0]},
                    ExpiresIn=1 if stale else 600,
                )
                if stale:
                    time.sleep(2.5)  # outlives its signature before fluppy gets it
                body = json.dumps(
                    {"method": "PUT", "url": url, "headers": {"Content-Type": query["type"][0]}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_backend_that_answers_params_with_a_put_url(
    cli: Callable[..., Result], companion: Backend, make_file: Callable[..., Path]
) -> None:
    s3 = companion.client()
    backend = PutBackend(s3)
    try:
        f = make_file("photo.jpg", 4000)
        r = cli("upload", str(f), "--signer", backend.url, "--to", f"s3://{BUCKET}/", "--json")
        assert r.code == 0, r.err
        (rec,) = r.json_lines()
        assert rec["key"] == "put-style/photo.jpg"  # read back from the signed URL
        assert rec["etag"] == hashlib.md5(f.read_bytes()).hexdigest()
        head = s3.head_object(Bucket=BUCKET, Key="put-style/photo.jpg")
        assert head["ContentType"] == "image/jpeg"
        assert fetch(s3, BUCKET, "put-style/photo.jpg") == f.read_bytes()
    finally:
        backend.close()


def test_an_expired_presigned_url_is_signed_again(
    cli: Callable[..., Result], seaweed: servers.Seaweed, make_file: Callable[..., Path]
) -> None:
    # SeaweedFS checks presigned expiry (moto does not) and answers as S3 does:
    # 403 AccessDenied "Request has expired".
    s3 = seaweed.client()
    backend = PutBackend(s3, expired_first=True)
    try:
        f = make_file("late.txt", 3000)
        r = cli("upload", str(f), "--signer", backend.url, "--to", f"s3://{BUCKET}/", "--debug")
        assert r.code == 0, r.err
        assert "Request has expired" in r.err  # seen, and retried
        assert backend.calls == 2  # signed again for the retry
        assert fetch(s3, BUCKET, "put-style/late.txt") == f.read_bytes()
    finally:
        backend.close()


def test_a_backend_signed_body_damaged_in_transit_is_caught_by_its_etag(
    cli: Callable[..., Result],
    seaweed: servers.Seaweed,
    weed_proxy: servers.Proxy,
    make_file: Callable[..., Path],
) -> None:
    # No checksum header can ride along a URL the backend signed, so the server
    # stores what arrives; fluppy compares the ETag it answers with the MD5.
    import boto3
    from botocore.config import Config

    through_proxy = boto3.client(
        "s3",
        endpoint_url=weed_proxy.url,
        region_name=servers.REGION,
        aws_access_key_id=seaweed.key,
        aws_secret_access_key=seaweed.secret,
        config=Config(s3={"addressing_style": "path"}),
    )
    backend = PutBackend(through_proxy)
    try:
        f = make_file("fragile.bin", 64 * 1024)
        weed_proxy.corrupt_next = 32 * 1024  # inside the body of the PUT
        r = cli("upload", str(f), "--signer", backend.url, "--to", f"s3://{BUCKET}/")
        assert weed_proxy.corrupted == 1
        assert r.code == ExitStatus.INTEGRITY, r.err
        assert "the server's ETag is" in r.err
        assert "may be corrupt" in r.err
    finally:
        backend.close()
