"""Request signing behind one small interface.

``LocalSigner`` signs with botocore's SigV4 signer and the cached temporary
credentials: no round-trip per request. Backend signing (a Companion-compatible
server) implements the same interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fluppy_cli.credentials import CredentialCache, TemporaryCredentials


@dataclass(frozen=True)
class SignedRequest:
    """What to send: the URL and every header, plus the credentials used, so that
    a rejection (ExpiredToken) can invalidate exactly those."""

    url: str
    headers: dict[str, str]
    credentials: TemporaryCredentials | None = None


class Signer(Protocol):
    """Turns an unsigned S3 request into one the server will accept."""

    def sign(
        self, method: str, url: str, headers: Mapping[str, str], *, payload_sha256: str | None
    ) -> SignedRequest:
        """Sign ``method url`` with ``headers``; ``payload_sha256`` is the body's hex
        SHA-256 when known, else the payload is sent unsigned (``UNSIGNED-PAYLOAD``:
        the checksum header protects it)."""
        ...

    def invalidate(self, request: SignedRequest) -> None:
        """The server rejected this request's credentials; get new ones next time."""
        ...


class _S3Auth(S3SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """botocore's S3 signer with the payload hash chosen by the caller: botocore
    would otherwise hash the body itself, a second pass over every part."""

    def payload(self, request: AWSRequest) -> str:
        return str(request.context["fluppy_payload"])


class LocalSigner:
    """SigV4 header signing with temporary credentials held in memory."""

    def __init__(self, cache: CredentialCache, region: str) -> None:
        self.cache = cache
        self.region = region

    def sign(
        self, method: str, url: str, headers: Mapping[str, str], *, payload_sha256: str | None
    ) -> SignedRequest:
        creds = self.cache.get()
        request = AWSRequest(method=method, url=url, headers=dict(headers))
        request.context["fluppy_payload"] = payload_sha256 or UNSIGNED_PAYLOAD
        botocore_creds = Credentials(
            creds.access_key_id, creds.secret_access_key, creds.session_token
        )
        _S3Auth(botocore_creds, "s3", self.region).add_auth(request)
        return SignedRequest(url, dict(request.headers.items()), creds)

    def invalidate(self, request: SignedRequest) -> None:
        if request.credentials is not None:
            self.cache.invalidate(request.credentials)


class Presigned:
    """For URLs a backend already signed: sends them as they are."""

    def sign(
        self, method: str, url: str, headers: Mapping[str, str], *, payload_sha256: str | None
    ) -> SignedRequest:
        return SignedRequest(url, dict(headers))

    def invalidate(self, request: SignedRequest) -> None:
        pass
