"""Uploads against SeaweedFS, a strict server that verifies SigV4, Content-MD5 and
every x-amz-checksum-*: each --checksum choice must be accepted and reported
back, and damage in transit must be caught by the server and retried."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import servers
from conftest import Result, fetch, weed_cmd

from fluppy_cli import checksums
from fluppy_cli.errors import ExitStatus
from fluppy_cli.plan import MiB

BUCKET = servers.BUCKET


def up(cli: Callable[..., Result], weed: servers.Seaweed, url: str, *args: str) -> Result:
    return cli("upload", "--endpoint-url", url, "--creds-cmd", weed_cmd(weed), "--json", *args)


@pytest.mark.parametrize("algorithm", checksums.NAMES)
def test_every_checksum_is_accepted_and_the_whole_object_verified(
    cli: Callable[..., Result],
    seaweed: servers.Seaweed,
    make_file: Callable[..., Path],
    algorithm: str,
) -> None:
    big = make_file("big.bin", 12 * MiB + 7)
    small = make_file("small.bin", 3000)
    r = up(
        cli,
        seaweed,
        seaweed.url,
        "--to",
        f"s3://{BUCKET}/sum-{algorithm}/",
        "--checksum",
        algorithm,
        "--part-size",
        "5MiB",
        "--multipart-threshold",
        "5MiB",
        str(big),
        str(small),
    )
    assert r.code == 0, r.err
    records = {rec["key"].rsplit("/", 1)[1]: rec for rec in r.json_lines()}
    alg = checksums.get(algorithm)
    if alg.aws_name:  # SeaweedFS reports the whole-object checksum fluppy computed
        data = big.read_bytes()
        parts = [data[i : i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
        want = alg.expected_multipart([alg.digest(p) for p in parts])
        assert records["big.bin"]["checksum"] == f"{algorithm}:{want}"
        assert (
            records["small.bin"]["checksum"]
            == f"{algorithm}:{alg.digest(small.read_bytes()).value}"
        )
    else:
        assert records["big.bin"]["checksum"] is None
    assert records["big.bin"]["parts"] == 3
    client = seaweed.client()
    assert fetch(client, BUCKET, f"sum-{algorithm}/big.bin") == big.read_bytes()
    assert fetch(client, BUCKET, f"sum-{algorithm}/small.bin") == small.read_bytes()


def test_a_byte_damaged_in_transit_is_refused_by_the_server_and_sent_again(
    cli: Callable[..., Result],
    seaweed: servers.Seaweed,
    weed_proxy: servers.Proxy,
    make_file: Callable[..., Path],
) -> None:
    f = make_file("damaged.bin", 2 * MiB)
    weed_proxy.corrupt_next = 1 * MiB  # deep inside the body of the first request
    r = up(cli, seaweed, weed_proxy.url, "--debug", "--to", f"s3://{BUCKET}/damaged.bin", str(f))
    assert r.code == 0, r.err
    assert weed_proxy.corrupted == 1
    assert "retrying PutObject" in r.err
    assert "BadDigest" in r.err
    assert fetch(seaweed.client(), BUCKET, "damaged.bin") == f.read_bytes()


def test_dropped_connections_are_retried(
    cli: Callable[..., Result],
    seaweed: servers.Seaweed,
    weed_proxy: servers.Proxy,
    make_file: Callable[..., Path],
) -> None:
    f = make_file("flaky.bin", 11 * MiB)
    weed_proxy.drop_next = 3
    r = up(
        cli,
        seaweed,
        weed_proxy.url,
        "--to",
        f"s3://{BUCKET}/flaky.bin",
        "--part-size",
        "5MiB",
        "--multipart-threshold",
        "5MiB",
        str(f),
    )
    assert r.code == 0, r.err
    assert fetch(seaweed.client(), BUCKET, "flaky.bin") == f.read_bytes()


def test_a_server_that_stays_away_is_a_temporary_failure(
    cli: Callable[..., Result],
    seaweed: servers.Seaweed,
    weed_proxy: servers.Proxy,
    make_file: Callable[..., Path],
) -> None:
    f = make_file("away.bin", 100)
    weed_proxy.drop_next = 100
    r = up(cli, seaweed, weed_proxy.url, "--retries", "2", "--to", f"s3://{BUCKET}/", str(f))
    assert r.code == ExitStatus.TEMPORARY
    assert "PutObject s3://fluppy-test/away.bin failed: network error" in r.err


def test_wrong_secret_is_a_credentials_error(
    cli: Callable[..., Result], seaweed: servers.Seaweed, make_file: Callable[..., Path]
) -> None:
    from conftest import mint_cmd

    r = cli(
        "upload",
        "--endpoint-url",
        seaweed.url,
        "--creds-cmd",
        mint_cmd("process", "--static", seaweed.key, "not-the-secret"),
        "--to",
        f"s3://{BUCKET}/",
        str(make_file("w.bin", 10)),
    )
    assert r.code == ExitStatus.CREDENTIALS
    assert "SignatureDoesNotMatch" in r.err
    assert "not-the-secret" not in r.err


def test_a_file_that_shrinks_during_the_upload_is_refused(
    seaweed: servers.Seaweed,
    weed_proxy: servers.Proxy,
    make_file: Callable[..., Path],
) -> None:
    import os
    import subprocess
    import sys
    import time

    f = make_file("shrinking.bin", 20 * MiB)
    weed_proxy.rate = 1 * MiB
    argv = ["upload", "--endpoint-url", weed_proxy.url, "--creds-cmd", weed_cmd(seaweed)]
    argv += ["--to", f"s3://{BUCKET}/shrinking.bin", "--part-size", "5MiB", "-j", "1", str(f)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluppy_cli", *argv], stderr=subprocess.PIPE, text=True
    )
    time.sleep(2)
    os.truncate(f, 7 * MiB)  # a log rotated under the upload
    weed_proxy.rate = 0
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitStatus.INTEGRITY, err
    assert "shrank while it was being uploaded" in err
