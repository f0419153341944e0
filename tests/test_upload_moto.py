"""Uploads against moto with authentication on and real STS credentials from
AssumeRole on a least-privilege role: moto checks every signature, the session
token and the role's policy. Each object's bytes are checked by downloading it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import servers
from conftest import CredsServer, Result, fetch, mint_cmd

from fluppy_cli.errors import ExitStatus
from fluppy_cli.plan import MiB

BUCKET = servers.BUCKET


def up(
    cli: Callable[..., Result], moto: servers.Moto, *args: str, creds: str | None = None
) -> Result:
    return cli(
        "upload",
        "--endpoint-url",
        moto.url,
        "--creds-cmd",
        creds or mint_cmd("process"),
        "--json",
        *args,
    )


@pytest.mark.parametrize("shape", ["process", "uppy", "sts"])
def test_multipart_and_single_and_empty_files_with_each_credential_shape(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path], shape: str
) -> None:
    big = make_file("big.bin", 40 * MiB)
    small = make_file("small.txt", 1000)
    empty = make_file("empty.dat", 0)
    r = up(
        cli,
        moto,
        "--to",
        f"s3://{BUCKET}/{shape}/",
        "--part-size",
        "5MiB",
        str(big),
        str(small),
        str(empty),
        creds=mint_cmd(shape),
    )
    assert r.code == 0, r.err
    records = {rec["key"]: rec for rec in r.json_lines()}
    assert set(records) == {f"{shape}/big.bin", f"{shape}/small.txt", f"{shape}/empty.dat"}
    assert records[f"{shape}/big.bin"]["parts"] == 8
    assert records[f"{shape}/big.bin"]["etag"].endswith("-8")
    assert records[f"{shape}/small.txt"]["parts"] == 0
    s3 = moto.client("s3")
    for path in (big, small, empty):
        assert fetch(s3, BUCKET, f"{shape}/{path.name}") == path.read_bytes()


@pytest.mark.parametrize("shape", ["process", "uppy", "sts"])
def test_credentials_by_url_in_each_shape(
    cli: Callable[..., Result],
    moto: servers.Moto,
    creds_server: CredsServer,
    make_file: Callable[..., Path],
    shape: str,
) -> None:
    f = make_file("u.bin", 12 * MiB)
    r = cli(
        "upload",
        "--endpoint-url",
        moto.url,
        "--creds-url",
        f"{creds_server.url}/{shape}",
        "--to",
        f"s3://{BUCKET}/url-{shape}.bin",
        "--part-size",
        "5MiB",
        "--multipart-threshold",
        "5MiB",
        "--json",
        str(f),
    )
    assert r.code == 0, r.err
    assert r.json_lines()[0]["parts"] == 3
    assert fetch(moto.client("s3"), BUCKET, f"url-{shape}.bin") == f.read_bytes()


def test_bucket_and_key_default_to_the_uppy_credentials_and_the_file_name(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path]
) -> None:
    f = make_file("from-creds.txt", 321)
    r = up(cli, moto, str(f), creds=mint_cmd("uppy", "--bucket", BUCKET, "--region", "us-east-1"))
    assert r.code == 0, r.err
    assert r.json_lines()[0]["key"] == "from-creds.txt"
    assert fetch(moto.client("s3"), BUCKET, "from-creds.txt") == f.read_bytes()


def test_no_bucket_anywhere_is_a_usage_error(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path]
) -> None:
    r = up(cli, moto, str(make_file("x.txt", 1)))
    assert r.code == ExitStatus.USAGE
    assert "no bucket" in r.err
    assert "--to s3://BUCKET/" in r.err


def test_exact_key_content_type_and_metadata_are_stored(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path]
) -> None:
    f = make_file("report.csv", 2000)
    r = up(
        cli,
        moto,
        "--to",
        f"s3://{BUCKET}/",
        "--key",
        "odd keys/ünïcode + space?.csv",
        "--metadata",
        "Owner=ci",
        "--metadata",
        "build=42",
        str(f),
    )
    assert r.code == 0, r.err
    head = moto.client("s3").head_object(Bucket=BUCKET, Key="odd keys/ünïcode + space?.csv")
    assert head["ContentType"] == "text/csv"
    assert head["Metadata"] == {"owner": "ci", "build": "42"}
    assert head["ContentLength"] == 2000


def test_multipart_object_keeps_content_type_and_metadata(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path]
) -> None:
    f = make_file("movie.bin", 11 * MiB)
    r = up(
        cli,
        moto,
        "--to",
        f"s3://{BUCKET}/mp/movie.mp4",
        "--part-size",
        "5MiB",
        "--multipart-threshold",
        "5MiB",
        "--content-type",
        "video/mp4",
        "--metadata",
        "k=v",
        str(f),
    )
    assert r.code == 0, r.err
    head = moto.client("s3").head_object(Bucket=BUCKET, Key="mp/movie.mp4")
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"k": "v"}
    assert fetch(moto.client("s3"), BUCKET, "mp/movie.mp4") == f.read_bytes()


@pytest.mark.parametrize("size", [1000, 11 * MiB])
def test_access_denied_names_the_operation_and_object(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path], size: int
) -> None:
    f = make_file("nope.bin", size)
    r = up(
        cli,
        moto,
        "--to",
        f"s3://{servers.DENIED_BUCKET}/x/",
        "--part-size",
        "5MiB",
        "--multipart-threshold",
        "5MiB",
        str(f),
    )
    assert r.code == ExitStatus.ACCESS_DENIED
    op = "PutObject" if size < 5 * MiB else "CreateMultipartUpload"
    assert f"{op} s3://{servers.DENIED_BUCKET}/x/nope.bin failed: AccessDenied" in r.err
    assert r.json_lines()[0]["event"] == "failed"
    assert r.json_lines()[0]["exit_code"] == ExitStatus.ACCESS_DENIED


def test_credentials_the_server_does_not_know_exit_with_the_credentials_code(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    creds = tmp_path / "c.json"
    creds.write_text(
        '{"Version": 1, "AccessKeyId": "ASIAUNKNOWNKEY000000", "SecretAccessKey": "s3cr3t-value",'
        ' "SessionToken": "t0ken-value", "Expiration": "2099-01-01T00:00:00Z"}'
    )
    r = up(cli, moto, "--to", f"s3://{BUCKET}/", str(make_file("a.bin", 10)), creds=f"cat {creds}")
    assert r.code == ExitStatus.CREDENTIALS
    assert "InvalidAccessKeyId" in r.err
    assert "s3cr3t-value" not in r.out + r.err
    assert "t0ken-value" not in r.out + r.err


def test_secrets_never_appear_in_any_output_even_with_debug(
    fluppy: Callable[..., Result],
    moto: servers.Moto,
    make_file: Callable[..., Path],
    tmp_path: Path,
) -> None:
    record = tmp_path / "issued.jsonl"
    f = make_file("s.bin", 11 * MiB)
    r = fluppy(
        "upload",
        "--endpoint-url",
        moto.url,
        "--creds-cmd",
        mint_cmd("process", "--record", str(record)),
        "--to",
        f"s3://{BUCKET}/secret-check/",
        "--part-size",
        "5MiB",
        "--multipart-threshold",
        "5MiB",
        "--debug",
        "--progress",
        "lines",
        str(f),
    )
    assert r.code == 0, r.err
    assert "fluppy: debug: PUT" in r.err
    import json

    issued = [json.loads(line) for line in record.read_text().splitlines()]
    assert issued
    for doc in issued:
        for secret in (doc["SecretAccessKey"], doc["SessionToken"]):
            assert secret not in r.out
            assert secret not in r.err
    assert "uploadId=" not in r.err  # upload ids stay out of debug lines too


def test_several_files_one_bad_means_none_uploaded(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path]
) -> None:
    good = make_file("good-one.txt", 10)
    r = up(cli, moto, "--to", f"s3://{BUCKET}/half/", str(good), "missing.txt")
    assert r.code == ExitStatus.USAGE
    assert "missing.txt: no such file" in r.err
    listed = moto.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="half/")
    assert listed.get("KeyCount", 0) == 0


def test_json_lines_carry_the_documented_fields(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path]
) -> None:
    f = make_file("fields.bin", 100)
    r = up(cli, moto, "--to", f"s3://{BUCKET}/fields.bin", str(f))
    assert r.code == 0, r.err
    (rec,) = r.json_lines()
    assert rec["event"] == "uploaded"
    assert rec["source"] == str(f)
    assert (rec["bucket"], rec["key"], rec["size"], rec["parts"]) == (BUCKET, "fields.bin", 100, 0)
    assert rec["url"] == f"s3://{BUCKET}/fields.bin"
    assert len(rec["etag"]) == 32
    assert rec["seconds"] >= 0
    assert r.err == ""


def test_plain_lines_for_logs_have_no_carriage_returns(
    fluppy: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path]
) -> None:
    f = make_file("log.bin", 6 * MiB)
    r = fluppy(
        "upload",
        "--endpoint-url",
        moto.url,
        "--creds-cmd",
        mint_cmd(),
        "--to",
        f"s3://{BUCKET}/log.bin",
        str(f),
    )
    assert r.code == 0, r.err
    assert "\r" not in r.err
    assert f"uploaded {f} -> s3://{BUCKET}/log.bin (6.0 MiB, single PUT" in r.err
    assert r.out == ""


def test_quiet_prints_nothing_on_success(
    cli: Callable[..., Result], moto: servers.Moto, make_file: Callable[..., Path]
) -> None:
    r = cli(
        "upload",
        "-q",
        "--endpoint-url",
        moto.url,
        "--creds-cmd",
        mint_cmd(),
        "--to",
        f"s3://{BUCKET}/q.bin",
        str(make_file("q.bin", 10)),
    )
    assert (r.code, r.out, r.err) == (0, "", "")


def test_creds_command_shows_the_credentials_without_secrets(
    cli: Callable[..., Result], moto: servers.Moto, tmp_path: Path
) -> None:
    record = tmp_path / "issued.jsonl"
    r = cli("creds", "--creds-cmd", mint_cmd("uppy", "--bucket", BUCKET, "--record", str(record)))
    assert r.code == 0, r.err
    assert "access key:    ASIA****" in r.out
    assert f"bucket:        {BUCKET}" in r.out
    assert "session token: yes" in r.out
    import json

    doc = json.loads(record.read_text())
    assert doc["credentials"]["SecretAccessKey"] not in r.out
    assert doc["credentials"]["SessionToken"] not in r.out
    rj = cli("creds", "--json", "--creds-cmd", mint_cmd("process"))
    (rec,) = rj.json_lines()
    assert rec["session_token"] is True
    assert 0 < rec["seconds_left"] <= 3600 * 12
