"""The command line: options in, events rendered, errors turned into exit codes.

This is the only module that imports typer or prints. Heavy modules (httpx,
botocore) are imported inside the commands so that ``fluppy --version`` and
``--help`` stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fluppy_cli import __version__, plan
from fluppy_cli.errors import ExitStatus, FluppyError, Interrupted, UsageError

if TYPE_CHECKING:
    from fluppy_cli.credentials import CredentialCache, TemporaryCredentials
    from fluppy_cli.engine import FileResult, Job

app = typer.Typer(
    name="fluppy",
    help="Upload files to S3 with short-lived credentials, signed locally.",
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Checksum(str, Enum):
    crc64nvme = "crc64nvme"
    crc32c = "crc32c"
    crc32 = "crc32"
    sha256 = "sha256"
    md5 = "md5"
    none = "none"


class ProgressMode(str, Enum):
    auto = "auto"
    bars = "bars"
    lines = "lines"
    none = "none"


CREDS = "Credentials (exactly one source)"
S3OPT = "S3 endpoint"
OUT = "Output"

CredsCmd = Annotated[
    str | None,
    typer.Option(
        "--creds-cmd",
        envvar="FLUPPY_CREDS_CMD",
        metavar="'SHELL COMMAND'",
        help="Command that prints credentials JSON on stdout; run again to refresh.",
        rich_help_panel=CREDS,
    ),
]
CredsUrl = Annotated[
    str | None,
    typer.Option(
        "--creds-url",
        envvar="FLUPPY_CREDS_URL",
        metavar="URL",
        help="URL answering credentials JSON to a GET (https, or http to localhost).",
        rich_help_panel=CREDS,
    ),
]
CredsHeader = Annotated[
    list[str] | None,
    typer.Option(
        "--creds-header",
        metavar="'NAME: VALUE'",
        help="Header for --creds-url, repeatable (env FLUPPY_CREDS_HEADERS, one per line).",
        rich_help_panel=CREDS,
    ),
]
CredsTimeout = Annotated[
    float,
    typer.Option(
        "--creds-timeout",
        envvar="FLUPPY_CREDS_TIMEOUT",
        metavar="SECONDS",
        help="Give up on the credential source after this long.",
        rich_help_panel=CREDS,
    ),
]
EndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        envvar="FLUPPY_ENDPOINT_URL",
        metavar="URL",
        help="S3-compatible endpoint (MinIO, SeaweedFS, R2...); AWS when unset.",
        rich_help_panel=S3OPT,
    ),
]
Region = Annotated[
    str | None,
    typer.Option(
        "--region",
        envvar=["FLUPPY_REGION", "AWS_REGION"],
        help="Signing region [default: from the credentials, else us-east-1].",
        rich_help_panel=S3OPT,
    ),
]
PathStyle = Annotated[
    bool | None,
    typer.Option(
        "--path-style/--virtual-hosted",
        help="URL addressing [default: path style with --endpoint-url, else virtual-hosted].",
        show_default=False,
        rich_help_panel=S3OPT,
    ),
]
Debug = Annotated[
    bool,
    typer.Option(
        "--debug", help="Log each request (never credentials) on stderr.", rich_help_panel=OUT
    ),
]


def _version(value: bool) -> None:
    if value:
        print(f"fluppy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Upload files to S3 and S3-compatible stores with short-lived credentials.

    Credentials come from a command (--creds-cmd) or a URL (--creds-url), live in
    memory only and are refreshed before they expire. Exit codes: 0 ok, 1 upload
    failed, 2 usage, 3 credentials, 4 access denied, 5 integrity, 75 temporary
    failure (network/server), 130 interrupted, 143 terminated.
    """


@app.command()
def upload(
    paths: Annotated[
        list[str], typer.Argument(metavar="PATH", help="Files to upload.", show_default=False)
    ],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="s3://BUCKET[/KEY-OR-PREFIX]",
            help="Destination. A key ending in / (or several files) is a prefix. "
            "Default: the bucket from the credentials, the file's name as key.",
        ),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Exact key for a single file.")] = None,
    creds_cmd: CredsCmd = None,
    creds_url: CredsUrl = None,
    creds_header: CredsHeader = None,
    creds_timeout: CredsTimeout = 60.0,
    endpoint_url: EndpointUrl = None,
    region: Region = None,
    path_style: PathStyle = None,
    multipart_threshold: Annotated[
        str,
        typer.Option(
            "--multipart-threshold",
            envvar="FLUPPY_MULTIPART_THRESHOLD",
            metavar="SIZE",
            help="Files larger than this go up in parts (and can be resumed).",
            rich_help_panel="Transfer",
        ),
    ] = "16MiB",
    part_size: Annotated[
        str,
        typer.Option(
            "--part-size",
            envvar="FLUPPY_PART_SIZE",
            metavar="SIZE",
            help="Part size, 5MiB to 5GiB; doubled as needed to stay within 10,000 parts.",
            rich_help_panel="Transfer",
        ),
    ] = "8MiB",
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-j",
            envvar="FLUPPY_CONCURRENCY",
            help="Requests in flight (parts and files).",
            rich_help_panel="Transfer",
        ),
    ] = plan.DEFAULT_CONCURRENCY,
    checksum: Annotated[
        Checksum,
        typer.Option(
            "--checksum",
            envvar="FLUPPY_CHECKSUM",
            help="Checksum sent with every request and checked by the server.",
            rich_help_panel="Transfer",
        ),
    ] = Checksum.crc64nvme,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            envvar="FLUPPY_RETRIES",
            help="Retries per request for network errors, 5xx, throttling.",
            rich_help_panel="Transfer",
        ),
    ] = 5,
    content_type: Annotated[
        str | None,
        typer.Option("--content-type", help="Content-Type [default: guessed from the name]."),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option("--metadata", metavar="KEY=VALUE", help="User metadata, repeatable."),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="JSON Lines on stdout, one object per file.", rich_help_panel=OUT
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print errors only.", rich_help_panel=OUT)
    ] = False,
    progress: Annotated[
        ProgressMode,
        typer.Option(
            "--progress",
            envvar="FLUPPY_PROGRESS",
            help="auto: bars on a terminal, plain lines otherwise.",
            rich_help_panel=OUT,
        ),
    ] = ProgressMode.auto,
    debug: Debug = False,
) -> None:
    """Upload files to S3 (multipart above --multipart-threshold)."""
    import httpx

    from fluppy_cli import checksums, settings
    from fluppy_cli.engine import Engine, UploadOptions, make_jobs
    from fluppy_cli.progress import error_line, make_display
    from fluppy_cli.s3 import S3Client

    _setup_logging(debug)
    with _signals_stop_the_upload():
        dest = settings.parse_destination(to)
        options = UploadOptions(
            part_size=plan.check_part_size(plan.parse_size(part_size, option="--part-size")),
            threshold=plan.parse_size(multipart_threshold, option="--multipart-threshold"),
            concurrency=settings.check_concurrency(concurrency),
            checksum=checksums.get(checksum.value),
            metadata=settings.parse_metadata(metadata or []),
            retries=_check_retries(retries),
        )
        endpoint_url = settings.check_endpoint_url(endpoint_url)
        source = settings.credential_source(
            command=creds_cmd, url=creds_url, headers=creds_header or [], timeout=creds_timeout
        )

        def jobs_for(bucket: str) -> list[Job]:
            return make_jobs(
                paths, bucket=bucket, dest_key=dest.key, exact_key=key, content_type=content_type
            )

        # With the bucket known, bad paths fail before any credential is fetched.
        jobs = jobs_for(dest.bucket) if dest.bucket else None

        display = make_display(
            mode=progress.value,
            json_output=json_output,
            quiet=quiet,
            out=sys.stdout,
            err=sys.stderr,
        )
        results: list[FileResult | FluppyError] = []
        try:
            cache = _cache(source, display)
            creds = cache.get()
            if jobs is None:
                if not creds.bucket:
                    msg = "no bucket: the credentials do not name one"
                    raise UsageError(msg, hint="give --to s3://BUCKET/")
                jobs = jobs_for(creds.bucket)
            with httpx.Client(
                timeout=httpx.Timeout(120.0, connect=15.0),
                limits=httpx.Limits(max_connections=concurrency + 2),
                follow_redirects=False,
            ) as http:
                client = S3Client(
                    http,
                    _signer(cache, region, creds),
                    _endpoint(endpoint_url, region, creds, path_style),
                )
                results = Engine(client, options, on_event=display.handle).run(jobs)
        finally:
            display.close()
        failures = [r for r in results if isinstance(r, FluppyError)]
        if not failures:
            return
        if len(results) > 1:
            for failure in failures:
                print(error_line(failure), file=sys.stderr)
            msg = f"{len(failures)} of {len(results)} files failed"
            raise _Reported(msg, failures[0].exit_status)
        raise failures[0]


@app.command()
def creds(
    creds_cmd: CredsCmd = None,
    creds_url: CredsUrl = None,
    creds_header: CredsHeader = None,
    creds_timeout: CredsTimeout = 60.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object on stdout.", rich_help_panel=OUT)
    ] = False,
    debug: Debug = False,
) -> None:
    """Fetch credentials once and show what they are (never the secrets)."""
    import json

    from fluppy_cli import settings
    from fluppy_cli.credentials import describe_expiry

    _setup_logging(debug)
    source = settings.credential_source(
        command=creds_cmd, url=creds_url, headers=creds_header or [], timeout=creds_timeout
    )
    assert source is not None
    got = source.fetch()
    now = datetime.now(timezone.utc)
    if json_output:
        print(json.dumps(_creds_record(source.description, got, now)))
        return
    print(f"source:        {source.description}")
    print(f"access key:    {got.masked_key_id}")
    print(f"session token: {'yes' if got.session_token else 'no (long-lived keys?)'}")
    print(f"expiration:    {describe_expiry(got, now)}")
    print(f"bucket:        {got.bucket or '-'}")
    print(f"region:        {got.region or '-'}")


def _creds_record(description: str, got: TemporaryCredentials, now: datetime) -> dict[str, Any]:
    return {
        "source": description,
        "access_key_id": got.masked_key_id,
        "session_token": got.session_token is not None,
        "expiration": got.expiration.isoformat() if got.expiration else None,
        "seconds_left": int((got.expiration - now).total_seconds()) if got.expiration else None,
        "bucket": got.bucket,
        "region": got.region,
    }


# -- helpers that build the pieces --------------------------------------------


def _check_retries(value: int) -> int:
    if not 0 <= value <= 100:
        raise UsageError(f"--retries {value} is out of range", hint="use 0 to 100")
    return value


def _cache(source: Any, display: Any) -> CredentialCache:
    from fluppy_cli.credentials import CredentialCache
    from fluppy_cli.engine import Notice

    return CredentialCache(source, on_warning=lambda m: display.handle(Notice(m)))


def _signer(cache: CredentialCache, region: str | None, creds: TemporaryCredentials) -> Any:
    from fluppy_cli.settings import DEFAULT_REGION
    from fluppy_cli.signing import LocalSigner

    return LocalSigner(cache, region or creds.region or DEFAULT_REGION)


def _endpoint(
    url: str | None, region: str | None, creds: TemporaryCredentials, path_style: bool | None
) -> Any:
    from fluppy_cli.s3 import Endpoint
    from fluppy_cli.settings import DEFAULT_REGION

    if url:
        return Endpoint(url, path_style is not False)
    return Endpoint.for_region(region or creds.region or DEFAULT_REGION, path_style=path_style)


def _setup_logging(debug: bool) -> None:
    if not debug:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fluppy: debug: %(message)s"))
    logger = logging.getLogger("fluppy_cli")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


@contextlib.contextmanager
def _signals_stop_the_upload() -> Iterator[None]:
    """While uploading, SIGINT and SIGTERM stop the upload cleanly (in-flight
    requests end, open multipart uploads are dealt with); a second signal exits
    at once. The previous handlers come back afterwards."""
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if received:
            print(f"fluppy: {name} again, exiting now", file=sys.stderr, flush=True)
            os._exit(ExitStatus.TERMINATED if name == "SIGTERM" else ExitStatus.INTERRUPTED)
        received.append(name)
        raise Interrupted(f"interrupted by {name}", signal_name=name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Reported(FluppyError):
    """Failures already printed one by one; only the summary line is left."""

    def __init__(self, message: str, status: ExitStatus) -> None:
        super().__init__(message)
        self.exit_status = status


# -- the one place where errors become exit codes ---------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status; never lets a traceback out."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # help, but as a usage error: a script that forgot its command fails
        app(args=["--help"], prog_name="fluppy", standalone_mode=False)
        return ExitStatus.USAGE
    try:
        rv = app(args=args, prog_name="fluppy", standalone_mode=False)
    except typer.Abort:
        print("fluppy: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except typer.TyperException as exc:  # typer's own click: bad options and arguments
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"fluppy: error: {message}{hint}", file=sys.stderr)
        return ExitStatus.USAGE
    except Interrupted as exc:
        print(f"fluppy: {exc}", file=sys.stderr)
        return exc.exit_status
    except FluppyError as exc:
        print(f"fluppy: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("fluppy: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # stdout closed by `| head`: nothing more to say, and nothing to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.FAILED
    except Exception as exc:  # a bug: still one line, and no traceback to scare cron mail
        print(
            f"fluppy: internal error ({type(exc).__name__}): {exc}; please report it",
            file=sys.stderr,
        )
        return ExitStatus.FAILED
    return int(rv or 0)
