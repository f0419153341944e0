"""Credentials that expire during a long multipart upload are refreshed without
breaking it: real STS credentials from moto, a proxy slowing the upload down, and
an Expiration shortened to a few seconds so that refresh happens many times."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import servers
from conftest import Result, fetch, mint_cmd

from fluppy_cli.plan import MiB


def test_credentials_are_refreshed_during_a_slow_multipart_upload(
    cli: Callable[..., Result],
    moto: servers.Moto,
    moto_proxy: servers.Proxy,
    make_file: Callable[..., Path],
    tmp_path: Path,
) -> None:
    f = make_file("slow.bin", 20 * MiB)
    count = tmp_path / "fetches"
    moto_proxy.rate = 1 * MiB  # per connection: about five seconds a part, ten in all
    r = cli(
        "upload",
        "--endpoint-url",
        moto_proxy.url,
        "--creds-cmd",
        mint_cmd("process", "--expires-in", "3", "--count", str(count)),
        "--to",
        f"s3://{servers.BUCKET}/slow.bin",
        "--part-size",
        "5MiB",
        "--concurrency",
        "2",
        "--json",
        str(f),
    )
    assert r.code == 0, r.err
    assert len(count.read_text().splitlines()) >= 3
    assert fetch(moto.client("s3"), servers.BUCKET, "slow.bin") == f.read_bytes()
