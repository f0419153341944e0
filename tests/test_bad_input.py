"""Bad input: one clear line on stderr, a documented exit code, no traceback,
nothing uploaded, and never a secret in the message."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import servers
from conftest import CredsServer, Result, mint_cmd

from fluppy_cli.errors import ExitStatus

USAGE, CREDS = ExitStatus.USAGE, ExitStatus.CREDENTIALS


def one_error_line(r: Result) -> str:
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("fluppy: error: "), r.err
    assert "Traceback" not in r.err
    return lines[0]


@pytest.fixture
def sample(make_file: Callable[..., Path]) -> Path:
    return make_file("sample.bin", 100)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "true", "missing.bin"],
            USAGE,
            "no such file",
        ),
        (["upload", "--to", "s3://bkt/", "--creds-cmd", "true", "{tmp}"], USAGE, "is a directory"),
        (["upload", "--to", "b/key", "--creds-cmd", "true", "{f}"], USAGE, "not an s3:// URL"),
        (["upload", "--to", "s3://", "--creds-cmd", "true", "{f}"], USAGE, "no valid bucket"),
        (["upload", "--to", "s3://bkt/", "{f}"], USAGE, "no credential source"),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "x", "--creds-url", "https://h/", "{f}"],
            USAGE,
            "both --creds-cmd and --creds-url",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-url", "http://example.com/creds", "{f}"],
            USAGE,
            "would send credentials in clear",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "t", "--part-size", "1MiB", "{f}"],
            USAGE,
            "--part-size 1.0 MiB is out of range",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "t", "--part-size", "6GiB", "{f}"],
            USAGE,
            "out of range",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "t", "--part-size", "lots", "{f}"],
            USAGE,
            "cannot read 'lots' as a size",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "t", "-j", "0", "{f}"],
            USAGE,
            "--concurrency 0",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "t", "--retries", "-1", "{f}"],
            USAGE,
            "--retries",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "t", "--metadata", "novalue", "{f}"],
            USAGE,
            "not KEY=VALUE",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "t", "--key", "k", "{f}", "{f}"],
            USAGE,
            "--key names one object",
        ),
        (
            [
                "upload",
                "--to",
                "s3://bkt/",
                "--creds-cmd",
                "t",
                "--endpoint-url",
                "localhost:9",
                "{f}",
            ],
            USAGE,
            "--endpoint-url",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "t", "--checksum", "xx", "{f}"],
            USAGE,
            "xx",
        ),
        (["upload", "--bogus", "{f}"], USAGE, "No such option: --bogus"),
        (["upload"], USAGE, "Missing argument"),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "exit 9", "{f}"],
            CREDS,
            "exited with status 9",
        ),
        (
            ["upload", "--to", "s3://bkt/", "--creds-cmd", "echo '<html>'", "{f}"],
            CREDS,
            "gave HTML",
        ),
        (
            [
                "upload",
                "--to",
                "s3://bkt/",
                "--creds-cmd",
                'echo \'{{"AccessKeyId": "A"}}\'',
                "{f}",
            ],
            CREDS,
            "without SecretAccessKey",
        ),
        (
            [
                "upload",
                "--to",
                "s3://bkt/",
                "--creds-cmd",
                "sleep 5",
                "--creds-timeout",
                "0.3",
                "{f}",
            ],
            CREDS,
            "did not finish within 0.3 s",
        ),
        (["creds"], USAGE, "no credential source"),
    ],
)
def test_bad_input_gets_one_line_and_an_exit_code(
    cli: Callable[..., Result], sample: Path, args: list[str], code: int, needle: str
) -> None:
    argv = [a.format(f=sample, tmp=sample.parent) for a in args]
    r = cli(*argv)
    assert r.code == code, r.err
    assert needle in one_error_line(r)


def test_two_files_for_the_same_key_are_refused(
    cli: Callable[..., Result], make_file: Callable[..., Path]
) -> None:
    a = make_file("a/same.txt", 1)
    b = make_file("b/same.txt", 1)
    r = cli("upload", "--to", "s3://bkt/p/", "--creds-cmd", "true", str(a), str(b))
    assert r.code == USAGE
    assert "same key 'p/same.txt'" in one_error_line(r)


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("status403", "HTTP 403; check --creds-header"),
        ("status500", "HTTP 500"),
        ("html", "gave HTML"),
    ],
)
def test_credentials_url_failures(
    cli: Callable[..., Result], creds_server: CredsServer, sample: Path, path: str, needle: str
) -> None:
    r = cli("upload", "--to", "s3://bkt/", "--creds-url", f"{creds_server.url}/{path}", str(sample))
    assert r.code == CREDS
    assert needle in one_error_line(r)


def test_credentials_url_headers_are_sent_and_never_echoed(
    cli: Callable[..., Result],
    moto: servers.Moto,
    creds_server: CredsServer,
    sample: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = [
        "upload",
        "--endpoint-url",
        moto.url,
        "--to",
        f"s3://{servers.BUCKET}/hdr/",
        str(sample),
    ]
    url = ["--creds-url", f"{creds_server.url}/needs-auth"]
    r = cli(*base, *url, "--creds-header", "Authorization: Bearer wrong-token")
    assert r.code == CREDS
    assert "wrong-token" not in r.err
    r = cli(*base, *url, "--creds-header", "Authorization: Bearer let-me-in", "-q")
    assert r.code == 0, r.err
    monkeypatch.setenv("FLUPPY_CREDS_HEADERS", "X-Other: 1\nAuthorization: Bearer let-me-in")
    r = cli(*base, *url, "-q")
    assert r.code == 0, r.err


def test_unreadable_file(fluppy: Callable[..., Result], make_file: Callable[..., Path]) -> None:
    f = make_file("secret.bin", 10)
    f.chmod(0)
    # root reads anything: drop the capabilities that let it, so the check is real.
    prefix = (
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    )
    argv = ["upload", "--to", "s3://bkt/", "--creds-cmd", "t", str(f)]
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "fluppy_cli", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    r = Result(done.returncode, done.stdout, done.stderr)
    assert r.code == USAGE, r.err
    assert "cannot read it: Permission denied" in one_error_line(r)


def test_no_arguments_prints_help_and_fails(cli: Callable[..., Result]) -> None:
    r = cli()
    assert r.code == USAGE
    assert "Usage: fluppy" in r.out


def test_version_is_quick_to_print(fluppy: Callable[..., Result]) -> None:
    r = fluppy("--version")
    assert r.code == 0
    assert r.out.startswith("fluppy ")


def test_version_does_not_import_the_network_stack() -> None:
    code = (
        "import sys; from fluppy_cli.cli import main; main(['--version']); "
        "print(sorted(m for m in ('httpx', 'botocore', 'awscrt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]")


def test_creds_url_and_command_via_environment(
    cli: Callable[..., Result], moto: servers.Moto, sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUPPY_CREDS_CMD", mint_cmd())
    monkeypatch.setenv("FLUPPY_ENDPOINT_URL", moto.url)
    r = cli("upload", "-q", "--to", f"s3://{servers.BUCKET}/env/", str(sample))
    assert r.code == 0, r.err
    monkeypatch.setenv("FLUPPY_CREDS_URL", "https://example.com/")
    r = cli("upload", "--to", f"s3://{servers.BUCKET}/env/", str(sample))
    assert r.code == USAGE
    assert "both --creds-cmd and --creds-url" in one_error_line(r)


def test_an_unexpected_error_is_one_line_not_a_traceback(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fluppy_cli.cli as cli_module

    def broken(**_kw: object) -> None:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(cli_module, "app", broken)
    r = cli("upload", "x")
    assert r.code == ExitStatus.FAILED
    assert r.err.splitlines() == [
        "fluppy: internal error (RuntimeError): something nobody expected; please report it"
    ]
