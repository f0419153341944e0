"""The one error hierarchy and the exit statuses it maps to.

Every failure a user can meet is a ``FluppyError``. Library exceptions (httpx,
botocore, OS) are translated where they enter, with ``raise ... from``. Messages
never contain credentials: they are built from names, buckets, keys and server
error codes only.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes, documented in the README and ``man/fluppy.1``."""

    OK = 0
    FAILED = 1  # an upload failed (server refused it in a way retrying cannot fix)
    USAGE = 2  # bad command line or bad input file
    CREDENTIALS = 3  # no usable credentials: the source failed or the server rejected them
    ACCESS_DENIED = 4  # the credentials work but may not do this operation
    INTEGRITY = 5  # what the server stored does not match what was sent
    TEMPORARY = 75  # network or server trouble that outlasted the retries (EX_TEMPFAIL)
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM


class FluppyError(Exception):
    """Base of every error fluppy reports. ``str()`` is the one-line message."""

    exit_status = ExitStatus.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class UsageError(FluppyError):
    """Bad options, arguments or input files; nothing was uploaded."""

    exit_status = ExitStatus.USAGE


class CredentialsError(FluppyError):
    """The credential source failed, or the server rejected the credentials."""

    exit_status = ExitStatus.CREDENTIALS


class IntegrityError(FluppyError):
    """The server's ETag or checksum does not match the bytes fluppy sent."""

    exit_status = ExitStatus.INTEGRITY


class Interrupted(FluppyError):
    """The user or the system asked fluppy to stop."""

    exit_status = ExitStatus.INTERRUPTED

    def __init__(self, message: str, *, hint: str | None = None, signal_name: str = "SIGINT"):
        super().__init__(message, hint=hint)
        if signal_name == "SIGTERM":
            self.exit_status = ExitStatus.TERMINATED


class RemoteError(FluppyError):
    """A request to S3 (or a signing backend) failed.

    Carries the context a user needs to act: which operation, which object, which
    part, and the server's own error code.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        bucket: str | None = None,
        key: str | None = None,
        part: int | None = None,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.part = part
        self.status = status
        self.code = code
        self.retryable = retryable

    @property
    def target(self) -> str:
        """``s3://bucket/key`` (and the part) this error is about."""
        where = f"s3://{self.bucket}/{self.key}" if self.bucket else ""
        if self.part is not None:
            where += f" part {self.part}"
        return where

    def __str__(self) -> str:
        parts = [f"{self.operation}"]
        if self.target:
            parts.append(f"{self.target}")
        text = " ".join(parts) + f" failed: {self.message}"
        if self.hint:
            text += f"; {self.hint}"
        return text


class AccessDenied(RemoteError):
    """The server understood the credentials and refused the operation."""

    exit_status = ExitStatus.ACCESS_DENIED


class CredentialsRejected(RemoteError):
    """The server says the credentials are expired, unknown or malformed."""

    exit_status = ExitStatus.CREDENTIALS


class TemporaryFailure(RemoteError):
    """Network or server trouble that might pass: retried, then reported as this."""

    exit_status = ExitStatus.TEMPORARY
