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
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fluppy_cli import __version__, plan
from fluppy_cli.errors import ExitStatus, FluppyError, Interrupted, UsageError

if TYPE_CHECKING:
    from fluppy_cli.credentials import TemporaryCredentials
    from fluppy_cli.engine import Event, FileResult, Job, UploadKept
    from fluppy_cli.journal import Entry, Journal

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


Concurrency = Annotated[
    int,
    typer.Option(
        "--concurrency",
        "-j",
        envvar="FLUPPY_CONCURRENCY",
        help="Requests in flight (parts and files).",
        rich_help_panel="Transfer",
    ),
]
Retries = Annotated[
    int,
    typer.Option(
        "--retries",
        envvar="FLUPPY_RETRIES",
        help="Retries per request for network errors, 5xx, throttling.",
        rich_help_panel="Transfer",
    ),
]
SignerOpt = Annotated[
    str | None,
    typer.Option(
        "--signer",
        envvar="FLUPPY_SIGNER_URL",
        metavar="URL",
        help="Companion-compatible backend (routes under /s3/). Alone: it signs every "
        "request. With credentials: local signing, the backend creates and completes.",
        rich_help_panel=CREDS,
    ),
]
UploadIds = Annotated[
    list[str] | None,
    typer.Argument(metavar="UPLOAD_ID", help="Upload ids (or unique prefixes) from fluppy list."),
]
JournalOpt = Annotated[
    str | None,
    typer.Option(
        "--journal",
        envvar="FLUPPY_JOURNAL",
        metavar="PATH",
        help="Journal folder [default: $XDG_STATE_HOME/fluppy/uploads].",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="JSON Lines on stdout, one object per file.", rich_help_panel=OUT),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print errors only.", rich_help_panel=OUT)
]
ProgressOpt = Annotated[
    ProgressMode,
    typer.Option(
        "--progress",
        envvar="FLUPPY_PROGRESS",
        help="auto: bars on a terminal, plain lines otherwise.",
        rich_help_panel=OUT,
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
    concurrency: Concurrency = plan.DEFAULT_CONCURRENCY,
    checksum: Annotated[
        Checksum,
        typer.Option(
            "--checksum",
            envvar="FLUPPY_CHECKSUM",
            help="Checksum sent with every request and checked by the server.",
            rich_help_panel="Transfer",
        ),
    ] = Checksum.crc64nvme,
    retries: Retries = 5,
    content_type: Annotated[
        str | None,
        typer.Option("--content-type", help="Content-Type [default: guessed from the name]."),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option("--metadata", metavar="KEY=VALUE", help="User metadata, repeatable."),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            "--no-resume",
            help="Do not resume an earlier upload of the same file to the same place: "
            "abort it and start afresh.",
        ),
    ] = False,
    signer: SignerOpt = None,
    journal: JournalOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = ProgressMode.auto,
    debug: Debug = False,
) -> None:
    """Upload files to S3 (multipart above --multipart-threshold; those resume)."""
    from fluppy_cli import checksums, session, settings
    from fluppy_cli.engine import UploadOptions, make_jobs

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
        target = session.Target(settings.check_endpoint_url(endpoint_url), region, path_style)
        source = settings.credential_source(
            command=creds_cmd,
            url=creds_url,
            headers=creds_header or [],
            timeout=creds_timeout,
            required=not signer,
        )
        signer = settings.check_signer_url(signer)

        def jobs_for(bucket: str) -> list[Job]:
            return make_jobs(
                paths, bucket=bucket, dest_key=dest.key, exact_key=key, content_type=content_type
            )

        # With the bucket known, bad paths fail before any credential is fetched.
        jobs = jobs_for(dest.bucket) if dest.bucket else None
        book = _open_journal(journal)
        with (
            _Output(progress, json_output, quiet, book) as out,
            session.connect(
                source, target, concurrency=options.concurrency, on_warning=out.warn, signer=signer
            ) as conn,
        ):
            if jobs is None:
                bucket = conn.creds.bucket if conn.creds else None
                if not bucket and conn.mode != "backend":
                    msg = "no bucket: the credentials do not name one"
                    raise UsageError(msg, hint="give --to s3://BUCKET/")
                jobs = jobs_for(bucket or "")  # in backend mode the backend chooses
            jobs = session.match_journal(
                jobs,
                book,
                endpoint=conn.endpoint.url,
                threshold=options.threshold,
                restart=restart,
                signer=conn.signer,
            )
            out.results = session.run(conn, jobs, options, journal=book, on_event=out.handle)
        out.raise_failures()


@app.command()
def resume(
    upload_ids: UploadIds = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Resume every upload in the journal.")
    ] = False,
    creds_cmd: CredsCmd = None,
    creds_url: CredsUrl = None,
    creds_header: CredsHeader = None,
    creds_timeout: CredsTimeout = 60.0,
    endpoint_url: EndpointUrl = None,
    region: Region = None,
    concurrency: Concurrency = plan.DEFAULT_CONCURRENCY,
    retries: Retries = 5,
    signer: SignerOpt = None,
    journal: JournalOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = ProgressMode.auto,
    debug: Debug = False,
) -> None:
    """Finish interrupted multipart uploads: ask the server which parts it has,
    send only the missing ones, complete. Credentials come from the source the
    upload was started with unless --creds-cmd/--creds-url is given."""
    from fluppy_cli import session, settings
    from fluppy_cli.engine import UploadOptions

    _setup_logging(debug)
    with _signals_stop_the_upload():
        book = _open_journal(journal)
        entries = _chosen(book, upload_ids, all_)
        override = settings.credential_source(
            command=creds_cmd,
            url=creds_url,
            headers=creds_header or [],
            timeout=creds_timeout,
            required=False,
        )
        target = session.Target(settings.check_endpoint_url(endpoint_url), region, None)
        options = UploadOptions(
            concurrency=settings.check_concurrency(concurrency), retries=_check_retries(retries)
        )
        with _Output(progress, json_output, quiet, book) as out:
            for entry in entries:  # one at a time: each may have its own source and endpoint
                try:
                    session.check_unchanged(entry)
                    with session.connect_entry(
                        entry,
                        override=override,
                        header_lines=creds_header or [],
                        target=target,
                        signer=settings.check_signer_url(signer),
                        concurrency=options.concurrency,
                        on_warning=out.warn,
                    ) as conn:
                        job = session.job_for(entry)
                        out.results += session.run(
                            conn, [job], options, journal=book, on_event=out.handle
                        )
                except Interrupted:
                    raise
                except FluppyError as exc:  # one upload that cannot go on stops only itself
                    out.results.append(exc)
        out.raise_failures()


@app.command()
def abort(
    upload_ids: UploadIds = None,
    all_: Annotated[bool, typer.Option("--all", help="Abort every upload in the journal.")] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Only uploads started this long ago or more (7d, 12h, 30m). "
            "Default with --remote: 7d.",
        ),
    ] = None,
    remote: Annotated[
        bool,
        typer.Option(
            "--remote",
            help="Abort in-progress uploads in the --to bucket/prefix that the journal "
            "does not know (ListMultipartUploads).",
        ),
    ] = False,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="s3://BUCKET[/PREFIX]", help="Where --remote looks."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be aborted; abort nothing.")
    ] = False,
    creds_cmd: CredsCmd = None,
    creds_url: CredsUrl = None,
    creds_header: CredsHeader = None,
    creds_timeout: CredsTimeout = 60.0,
    endpoint_url: EndpointUrl = None,
    region: Region = None,
    path_style: PathStyle = None,
    signer: SignerOpt = None,
    journal: JournalOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: Debug = False,
) -> None:
    """Abort multipart uploads and forget them: their parts stop costing money.
    An upload already gone from the server counts as aborted."""
    import json

    from fluppy_cli import session, settings

    _setup_logging(debug)
    book = _open_journal(journal)
    age = plan.parse_duration(older_than, option="--older-than") if older_than else None
    override = settings.credential_source(
        command=creds_cmd,
        url=creds_url,
        headers=creds_header or [],
        timeout=creds_timeout,
        required=remote,
    )
    target = session.Target(settings.check_endpoint_url(endpoint_url), region, path_style)
    warn = _Output.plain_warning(quiet or json_output)
    _journal_problems(book, warn)

    def report(event: str, upload_id: str, where: str, source: str = "") -> None:
        if json_output:
            record = {"event": event, "upload_id": upload_id, "url": where, "source": source}
            print(json.dumps(record))
        elif not quiet:
            print(f"{event} {upload_id[:16]}... {source + ' -> ' if source else ''}{where}")

    verb = "would abort" if dry_run else "aborted"
    if remote:
        dest = settings.parse_destination(to)
        if dest.bucket is None:
            raise UsageError("--remote needs --to s3://BUCKET[/PREFIX]")
        assert override is not None
        known = {e.upload_id for e in book.entries()}
        with session.connect(override, target, concurrency=1, on_warning=warn) as conn:
            stale = session.stale_remote_uploads(
                conn.store, dest.bucket, dest.key, known=known, min_age=age or 7 * 86400
            )
            for up in stale:
                if not dry_run:
                    conn.client.abort_multipart_upload(dest.bucket, up.key, up.upload_id)
                report(verb, up.upload_id, f"s3://{dest.bucket}/{up.key}")
        return
    entries = session.older_than(_chosen(book, upload_ids, all_), age)
    for entry in entries:
        if not dry_run:
            with session.connect_entry(
                entry,
                override=override,
                header_lines=creds_header or [],
                target=target,
                signer=settings.check_signer_url(signer),
                concurrency=1,
                on_warning=warn,
            ) as conn:
                conn.client.abort_multipart_upload(entry.bucket, entry.key, entry.upload_id)
            book.remove(entry)
        report(verb, entry.upload_id, entry.destination, entry.source)


@app.command(name="list")
def list_(
    journal: JournalOpt = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="JSON Lines on stdout, one object per upload.")
    ] = False,
) -> None:
    """Show the multipart uploads in the journal: id, progress, age, source, destination."""
    import json

    book = _open_journal(journal)
    entries = book.entries()
    _journal_problems(book, _Output.plain_warning(False))
    for e in entries:
        total = len(plan.split_parts(e.fingerprint.size, e.part_size))
        if json_output:
            print(
                json.dumps(
                    {
                        "upload_id": e.upload_id,
                        "source": e.source,
                        "url": e.destination,
                        "endpoint": e.endpoint,
                        "size": e.fingerprint.size,
                        "confirmed_bytes": e.confirmed_bytes(),
                        "parts_confirmed": len(e.parts),
                        "parts_total": total,
                        "created": e.created,
                        "age_seconds": int(e.age_seconds()),
                    }
                )
            )
        else:
            pct = 100 * e.confirmed_bytes() // e.fingerprint.size if e.fingerprint.size else 100
            print(
                f"{e.upload_id[:16]}  {len(e.parts)}/{total} parts ({pct}%)  "
                f"{plan.format_age(e.age_seconds())} old  {e.source} -> {e.destination}"
            )
    if not entries and not json_output:
        print(f"no uploads in progress in {book.path}", file=sys.stderr)


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


def _open_journal(path: str | None) -> Journal:
    from fluppy_cli.journal import Journal

    return Journal.open(Path(path) if path else None)


def _chosen(book: Journal, ids: list[str] | None, all_: bool) -> list[Entry]:
    if ids and all_:
        raise UsageError("give upload ids or --all, not both")
    if not ids and not all_:
        raise UsageError("which uploads?", hint="give upload ids (see fluppy list) or --all")
    return book.entries() if all_ else book.select(ids or [])


def _journal_problems(book: Journal, warn: Callable[[str], None]) -> None:
    for problem in book.problems:
        warn(problem)
    book.problems.clear()


class _Output:
    """A command's output while it uploads: the display, warnings, the results,
    and the resume command of every upload that was stopped but kept."""

    def __init__(self, progress: ProgressMode, json_output: bool, quiet: bool, book: Journal):
        self._mode = (progress.value, json_output, quiet)
        self._book = book
        self.results: list[FileResult | FluppyError] = []
        self.kept: list[UploadKept] = []

    def __enter__(self) -> _Output:
        from fluppy_cli.progress import make_display

        mode, json_output, quiet = self._mode
        self.display = make_display(
            mode=mode, json_output=json_output, quiet=quiet, out=sys.stdout, err=sys.stderr
        )
        _journal_problems(self._book, self.warn)
        return self

    def handle(self, event: Event) -> None:
        from fluppy_cli.engine import UploadKept

        if isinstance(event, UploadKept):
            self.kept.append(event)
        self.display.handle(event)

    def warn(self, message: str) -> None:
        from fluppy_cli.engine import Notice

        self.display.handle(Notice(message))

    def __exit__(self, *exc: object) -> None:
        self.display.close()
        journal_flag = (
            "" if self._book.path == _default_journal() else f" --journal {self._book.path}"
        )
        for kept in self.kept:
            print(
                f"fluppy: the upload of {kept.job.source} is kept on the server; resume it with: "
                f"fluppy resume {kept.upload_id}{journal_flag}",
                file=sys.stderr,
            )

    def raise_failures(self) -> None:
        from fluppy_cli.progress import error_line

        failures = [r for r in self.results if isinstance(r, FluppyError)]
        if not failures:
            return
        if len(self.results) > 1:
            for failure in failures:
                print(error_line(failure), file=sys.stderr)
            msg = f"{len(failures)} of {len(self.results)} files failed"
            raise _Reported(msg, failures[0].exit_status)
        raise failures[0]

    @staticmethod
    def plain_warning(silent: bool) -> Callable[[str], None]:
        def warn(message: str) -> None:
            if not silent:
                print(f"fluppy: warning: {message}", file=sys.stderr)

        return warn


def _default_journal() -> Path:
    from fluppy_cli.journal import default_dir

    return default_dir()


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
