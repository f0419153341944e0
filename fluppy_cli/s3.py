"""The S3 wire: object PUT and the multipart calls, over one pooled httpx client.

Every request is signed just before it is sent (a retry is signed again, with
whatever credentials are current). Server errors are parsed from S3's XML and
turned into the error hierarchy here, where they enter.
"""

from __future__ import annotations

import hashlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from fluppy_cli.errors import (
    AccessDenied,
    CredentialsRejected,
    RemoteError,
    TemporaryFailure,
)
from fluppy_cli.signing import SignedRequest, Signer

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024  # progress granularity while a body is being sent
_RETRYABLE_CODES = {
    "RequestTimeout",
    "InternalError",
    "SlowDown",
    "ServiceUnavailable",
    "OperationAborted",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "BadDigest",  # damaged in transit: sending the same bytes again is the fix
    "XAmzContentSHA256Mismatch",
}
_CREDENTIAL_CODES = {
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidToken",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
}
_EXPIRED_CODES = {"ExpiredToken", "TokenRefreshRequired"}


@dataclass(frozen=True)
class Endpoint:
    """Where a bucket lives and how to address it."""

    url: str  # scheme://host[:port], no trailing slash
    path_style: bool

    @classmethod
    def for_region(cls, region: str, *, path_style: bool | None = None) -> Endpoint:
        """AWS's regional endpoint, virtual-hosted unless asked otherwise."""
        return cls(f"https://s3.{region}.amazonaws.com", bool(path_style))

    def object_url(self, bucket: str, key: str = "", query: str = "") -> str:
        """The URL of ``key`` in ``bucket``; ``query`` is already encoded."""
        base = urlsplit(self.url)
        path_key = quote(key, safe="/~")
        # A dotted bucket name breaks the TLS certificate of a virtual host.
        if self.path_style or ("." in bucket and base.scheme == "https"):
            url = f"{base.scheme}://{base.netloc}/{bucket}/{path_key}"
        else:
            url = f"{base.scheme}://{bucket}.{base.netloc}/{path_key}"
        return f"{url}?{query}" if query else url


def encode_query(params: Sequence[tuple[str, str | None]]) -> str:
    """SigV4's canonical encoding; ``None`` values give a bare name (``?uploads``)."""
    out = []
    for name, value in params:
        out.append(name if value is None else f"{name}={quote(value, safe='-_.~')}")
    return "&".join(out)


@dataclass(frozen=True)
class PutResult:
    """The server's answer to a PUT of an object or a part."""

    etag: str
    checksum: str | None  # the x-amz-checksum-* the server echoed, if any
    key: str | None = None  # set when a signing backend chose the key
    bucket: str | None = None  # likewise the bucket


@dataclass(frozen=True)
class UploadedPart:
    """A part the server holds."""

    number: int
    etag: str
    size: int
    checksum: str | None = None


@dataclass(frozen=True)
class OpenUpload:
    """A multipart upload in progress in a bucket."""

    key: str
    upload_id: str
    initiated: str  # ISO 8601, as the server wrote it


@dataclass(frozen=True)
class CompleteResult:
    """The answer to CompleteMultipartUpload."""

    etag: str
    checksum: str | None
    checksum_type: str | None


class Body:
    """A request body sent in slices, reporting each slice as it goes out, so that
    progress counts bytes actually sent; ``sent`` lets a retry take them back."""

    def __init__(
        self,
        data: bytes | memoryview,
        on_sent: Callable[[int], None],
        *,
        stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.data = data
        self.sent = 0
        self._on_sent = on_sent
        self._stop = stop  # raises to abandon the request between slices (Ctrl-C)

    @property
    def content_length(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[bytes]:
        view = memoryview(self.data)
        for start in range(0, len(view), CHUNK):
            self._stop()
            chunk = bytes(view[start : start + CHUNK])
            yield chunk
            self.sent += len(chunk)
            self._on_sent(len(chunk))


@dataclass(frozen=True)
class Op:
    """Which operation on which object: the context every error carries."""

    operation: str
    bucket: str
    key: str
    part: int | None = None

    def error(self, cls: type[RemoteError], message: str, **kw: Any) -> RemoteError:
        return cls(
            message,
            operation=self.operation,
            bucket=self.bucket,
            key=self.key,
            part=self.part,
            **kw,
        )


def _strip_etag(value: str | None) -> str:
    return (value or "").strip().strip('"')


def _xml_text(root: ET.Element, tag: str) -> str | None:
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == tag:
            return el.text
    return None


def _xml_all(root: ET.Element, tag: str) -> list[ET.Element]:
    return [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == tag]


def _child(el: ET.Element, tag: str) -> str | None:
    for sub in el:
        if sub.tag.rsplit("}", 1)[-1] == tag:
            return sub.text
    return None


class S3Client:
    """S3 operations for one endpoint. Holds no credentials: the signer does."""

    def forced_checksum(self, *, multipart: bool) -> str | None:
        """Local signing can send any checksum: the user's choice stands."""
        return None

    def __init__(self, http: httpx.Client, signer: Signer, endpoint: Endpoint) -> None:
        self.http = http
        self.signer = signer
        self.endpoint = endpoint

    # -- operations ---------------------------------------------------------

    def put_object(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        headers: Mapping[str, str],
        payload_sha256: str | None,
        checksum_header: str = "",
    ) -> PutResult:
        """PutObject: one request for the whole file."""
        url = self.endpoint.object_url(bucket, key)
        ctx = Op("PutObject", bucket, key)
        response = self._send("PUT", url, headers, body, payload_sha256=payload_sha256, ctx=ctx)
        return PutResult(
            _strip_etag(response.headers.get("etag")), self._echo(response, checksum_header)
        )

    def create_multipart_upload(
        self, bucket: str, key: str, *, headers: Mapping[str, str]
    ) -> tuple[str, str, str]:
        """CreateMultipartUpload; returns the upload id, key and bucket."""
        url = self.endpoint.object_url(bucket, key, encode_query([("uploads", None)]))
        ctx = Op("CreateMultipartUpload", bucket, key)
        response = self._send("POST", url, headers, None, payload_sha256=None, ctx=ctx)
        upload_id = _xml_text(self._parse(response, ctx), "UploadId")
        if not upload_id:
            raise ctx.error(RemoteError, "the answer has no UploadId")
        return upload_id, key, bucket

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: Body,
        *,
        headers: Mapping[str, str],
        payload_sha256: str | None,
        checksum_header: str = "",
    ) -> PutResult:
        """UploadPart."""
        query = encode_query([("partNumber", str(number)), ("uploadId", upload_id)])
        url = self.endpoint.object_url(bucket, key, query)
        ctx = Op("UploadPart", bucket, key, number)
        response = self._send("PUT", url, headers, body, payload_sha256=payload_sha256, ctx=ctx)
        return PutResult(
            _strip_etag(response.headers.get("etag")), self._echo(response, checksum_header)
        )

    def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str, str | None]],
        *,
        checksum_tag: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> CompleteResult:
        """CompleteMultipartUpload with (number, etag, checksum) for every part."""
        root = ET.Element("CompleteMultipartUpload")
        for number, etag, checksum in parts:
            el = ET.SubElement(root, "Part")
            ET.SubElement(el, "PartNumber").text = str(number)
            ET.SubElement(el, "ETag").text = f'"{etag}"'
            if checksum_tag and checksum:
                ET.SubElement(el, checksum_tag).text = checksum
        payload = ET.tostring(root, encoding="utf-8")
        url = self.endpoint.object_url(bucket, key, encode_query([("uploadId", upload_id)]))
        ctx = Op("CompleteMultipartUpload", bucket, key)
        response = self._send(
            "POST",
            url,
            {"Content-Type": "application/xml", **(headers or {})},
            payload,
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            ctx=ctx,
        )
        # S3 can answer 200 and put the error in the body (the request failed
        # after the status line went out), so parse before trusting it.
        root_out = self._parse(response, ctx)
        checksum = _xml_text(root_out, checksum_tag) if checksum_tag else None
        return CompleteResult(
            _strip_etag(_xml_text(root_out, "ETag")), checksum, _xml_text(root_out, "ChecksumType")
        )

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """AbortMultipartUpload. An upload that is already gone counts as aborted."""
        url = self.endpoint.object_url(bucket, key, encode_query([("uploadId", upload_id)]))
        ctx = Op("AbortMultipartUpload", bucket, key)
        try:
            self._send("DELETE", url, {}, None, payload_sha256=None, ctx=ctx)
        except RemoteError as exc:
            if exc.code != "NoSuchUpload":
                raise

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[UploadedPart]:
        """ListParts, following pagination to the end."""
        parts: list[UploadedPart] = []
        marker: str | None = None
        ctx = Op("ListParts", bucket, key)
        while True:
            params: list[tuple[str, str | None]] = []
            if marker:
                params.append(("part-number-marker", marker))
            params.append(("uploadId", upload_id))
            url = self.endpoint.object_url(bucket, key, encode_query(params))
            root = self._parse(self._send("GET", url, {}, None, payload_sha256=None, ctx=ctx), ctx)
            for el in _xml_all(root, "Part"):
                parts.append(
                    UploadedPart(
                        int(_child(el, "PartNumber") or 0),
                        _strip_etag(_child(el, "ETag")),
                        int(_child(el, "Size") or 0),
                    )
                )
            truncated = (_xml_text(root, "IsTruncated") or "false").lower() == "true"
            marker = _xml_text(root, "NextPartNumberMarker")
            if not truncated or not marker:
                return parts

    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[OpenUpload]:
        """ListMultipartUploads under ``prefix``, following pagination."""
        out: list[OpenUpload] = []
        markers: tuple[str | None, str | None] = (None, None)
        ctx = Op("ListMultipartUploads", bucket, prefix)
        while True:
            params: list[tuple[str, str | None]] = []
            if markers[0]:
                params.append(("key-marker", markers[0]))
            if prefix:
                params.append(("prefix", prefix))
            if markers[1]:
                params.append(("upload-id-marker", markers[1]))
            params.append(("uploads", None))
            url = self.endpoint.object_url(bucket, "", encode_query(sorted(params)))
            root = self._parse(self._send("GET", url, {}, None, payload_sha256=None, ctx=ctx), ctx)
            for el in _xml_all(root, "Upload"):
                out.append(
                    OpenUpload(
                        _child(el, "Key") or "",
                        _child(el, "UploadId") or "",
                        _child(el, "Initiated") or "",
                    )
                )
            truncated = (_xml_text(root, "IsTruncated") or "false").lower() == "true"
            markers = (_xml_text(root, "NextKeyMarker"), _xml_text(root, "NextUploadIdMarker"))
            if not truncated or not (markers[0] or markers[1]):
                return out

    def send_presigned(
        self, method: str, url: str, headers: Mapping[str, str], body: Body | None, op: Op
    ) -> httpx.Response:
        """Send a request a backend signed; S3's answer is read as for any other."""
        return self._send(method, url, headers, body, payload_sha256="UNSIGNED-PAYLOAD", ctx=op)

    # -- plumbing -------------------------------------------------------------

    @staticmethod
    def _echo(response: httpx.Response, header: str) -> str | None:
        if not header or not header.lower().startswith("x-amz-checksum-"):
            return None
        value = response.headers.get(header)
        return str(value) if value is not None else None

    def _send(
        self,
        method: str,
        /,
        url: str,
        headers: Mapping[str, str],
        body: Body | bytes | None,
        *,
        payload_sha256: str | None,
        ctx: Op,
    ) -> httpx.Response:
        if payload_sha256 is None and (body is None or isinstance(body, bytes)):
            payload_sha256 = hashlib.sha256(body or b"").hexdigest()
        signed = self.signer.sign(method, url, headers, payload_sha256=payload_sha256)
        send_headers = dict(signed.headers)
        content: bytes | Body | None = body
        if isinstance(body, Body):
            send_headers["Content-Length"] = str(body.content_length)
        log.debug("%s %s", method, _redact(signed.url))
        try:
            response = self.http.request(method, signed.url, headers=send_headers, content=content)
        except httpx.TimeoutException as exc:
            msg = f"timed out ({type(exc).__name__})"
            raise ctx.error(TemporaryFailure, msg, retryable=True) from None
        except httpx.TransportError as exc:
            msg = f"network error: {_transport_reason(exc)}"
            raise ctx.error(TemporaryFailure, msg, retryable=True) from None
        log.debug("%s %s -> %s", method, _redact(signed.url), response.status_code)
        if response.status_code >= 300:
            raise self._error(response, ctx, signed)
        return response

    def _parse(self, response: httpx.Response, ctx: Op) -> ET.Element:
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError:
            msg = f"the server answered HTTP {response.status_code} with a body that is not XML"
            raise ctx.error(TemporaryFailure, msg, retryable=True) from None
        if root.tag.rsplit("}", 1)[-1] == "Error":
            raise self._error(response, ctx, None, root)
        return root

    def _error(
        self,
        response: httpx.Response,
        ctx: Op,
        signed: SignedRequest | None,
        root: ET.Element | None = None,
    ) -> RemoteError:
        code = message = None
        if root is None and response.content:
            try:
                root = ET.fromstring(response.content)
            except ET.ParseError:
                root = None
        if root is not None:
            code, message = _xml_text(root, "Code"), _xml_text(root, "Message")
        status = response.status_code
        code = code or f"HTTP {status}"
        text = f"{code}" + (f": {message}" if message and message != code else "")
        kw: dict[str, Any] = {"status": status, "code": code}
        if status == 403 and message and "request has expired" in message.lower():
            # A presigned URL outlived its signature: signing again is the fix.
            return ctx.error(TemporaryFailure, text, retryable=True, **kw)
        if code in _EXPIRED_CODES:
            if signed is not None:
                self.signer.invalidate(signed)
            return ctx.error(CredentialsRejected, text, retryable=True, **kw)
        if code in _CREDENTIAL_CODES:
            return ctx.error(CredentialsRejected, text, hint="check the credential source", **kw)
        if code == "RequestTimeTooSkewed":
            return ctx.error(
                CredentialsRejected, text, hint="this machine's clock is off; fix it (NTP)", **kw
            )
        if code in _RETRYABLE_CODES or status == 429 or status >= 500:
            return ctx.error(TemporaryFailure, text, retryable=True, **kw)
        if status == 403 or code == "AccessDenied":
            hint = "the credentials' policy does not allow this operation on this bucket/key"
            return ctx.error(AccessDenied, text, hint=hint, **kw)
        return ctx.error(RemoteError, text, **kw)


def _transport_reason(exc: httpx.TransportError) -> str:
    reason = str(exc) or type(exc).__name__
    return reason.splitlines()[0][:200]


def _redact(url: str) -> str:
    """A URL fit for logs: the query (upload ids, presigned signatures) cut."""
    return url.split("?", 1)[0] + ("?..." if "?" in url else "")
