"""Where uploads go and who signs them. The engine sees one ``Store``:

- ``S3Client`` (in s3.py): local signing with temporary credentials.
- ``BackendStore``: backend mode, every request signed by a Companion-compatible
  backend; no credential leaves it.
- ``HybridStore``: Uppy's temporary-credentials mode. PUTs and parts are
  signed locally (the backend's params and part-signing routes are never
  called); create, list, complete and abort go to the backend. When the
  credentials fail it falls back to backend signing, with one warning.

A URL the backend signed is sent exactly as signed: an extra header it did not
sign (even Content-MD5) makes strict stores such as SeaweedFS refuse the
signature. Such bodies are checked afterwards instead: the engine computes
their MD5 and compares it with the ETag the server returns. A backend's
multipart upload is created without a checksum algorithm, so locally signed
parts in hybrid mode carry a signed Content-MD5 rather than x-amz-checksum-*.
"""

from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from posixpath import basename
from typing import Protocol
from urllib.parse import unquote, urlsplit

from fluppy_cli.companion import CompanionClient
from fluppy_cli.errors import CredentialsError
from fluppy_cli.s3 import Body, CompleteResult, Op, PutResult, S3Client, UploadedPart


class Store(Protocol):
    """The operations an upload needs, however they are signed."""

    def forced_checksum(self, *, multipart: bool) -> str | None: ...

    def put_object(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        headers: Mapping[str, str],
        payload_sha256: str | None,
        checksum_header: str = "",
    ) -> PutResult: ...

    def create_multipart_upload(
        self, bucket: str, key: str, *, headers: Mapping[str, str]
    ) -> tuple[str, str, str]:
        """Returns the upload id and the key and bucket actually used."""
        ...

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
    ) -> PutResult: ...

    def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str, str | None]],
        *,
        checksum_tag: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> CompleteResult: ...

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None: ...

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[UploadedPart]: ...


class FormBody(Body):
    """A presigned POST: the form fields, then the file, as multipart/form-data."""

    def __init__(self, fields: Mapping[str, str], filename: str, content_type: str, body: Body):
        super().__init__(body.data, lambda _n: None)
        self.boundary = uuid.uuid4().hex
        self._inner = body
        part = '--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        head = b"".join(part.format(b=self.boundary, k=k, v=v).encode() for k, v in fields.items())
        safe = filename.replace('"', "_")
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{safe}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        self._head = head
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def content_length(self) -> int:
        return len(self._head) + self._inner.content_length + len(self._tail)

    @property
    def sent(self) -> int:
        return self._inner.sent

    @sent.setter
    def sent(self, value: int) -> None:
        pass  # the inner body counts

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        yield from self._inner
        yield self._tail


class BackendStore:
    """Backend mode: a Companion-compatible server signs every request."""

    def __init__(
        self,
        backend: CompanionClient,
        presigned: S3Client,
        *,
        on_warning: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.backend = backend
        self.presigned = presigned  # sends presigned URLs and parses S3's answers
        self._warn = on_warning
        self._warned_empty_crc = threading.Event()

    def forced_checksum(self, *, multipart: bool) -> str | None:
        return "md5"

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
        content_type = headers.get("Content-Type", "application/octet-stream")
        meta = _metadata(headers)
        params = self.backend.params(basename(key) or key, content_type, meta)
        if params.method == "POST":
            chosen = params.fields.get("key", key)
            form = FormBody(params.fields, basename(chosen), content_type, body)
            send = {"Content-Type": f"multipart/form-data; boundary={form.boundary}"}
            op = Op("PostObject", params.fields.get("bucket", bucket), chosen)
            response = self.presigned.send_presigned("POST", params.url, send, form, op)
            etag = response.headers.get("etag") or _xml_etag(response.content)
            return PutResult(etag.strip('"'), None, chosen, params.fields.get("bucket"))
        chosen = _key_from_url(params.url, bucket) or key
        op = Op("PutObject", bucket, chosen)
        response = self.presigned.send_presigned("PUT", params.url, params.headers, body, op)
        return PutResult(str(response.headers.get("etag", "")).strip('"'), None, chosen)

    def create_multipart_upload(
        self, bucket: str, key: str, *, headers: Mapping[str, str]
    ) -> tuple[str, str, str]:
        content_type = headers.get("Content-Type", "application/octet-stream")
        upload_id, chosen, chosen_bucket = self.backend.create(
            basename(key) or key, content_type, _metadata(headers)
        )
        return upload_id, chosen, chosen_bucket or bucket

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
        # Signed just before it is sent (a URL signed early can expire: Uppy #1724,
        # #3612); every retry asks again.
        url = self.backend.sign_part(upload_id, key, number)
        if _EMPTY_CRC32 in url and body.content_length and not self._warned_empty_crc.is_set():
            self._warned_empty_crc.set()
            self._warn(
                "the backend signs part URLs with the CRC32 of an empty body "
                "(x-amz-checksum-crc32=AAAAAA==, AWS SDK for JS >= 3.729, e.g. Companion "
                "6.2.2): S3 itself refuses such parts; set the backend SDK's "
                "requestChecksumCalculation to WHEN_REQUIRED, or give fluppy credentials "
                "too (hybrid mode signs parts locally)"
            )
        op = Op("UploadPart", bucket, key, number)
        response = self.presigned.send_presigned("PUT", url, {}, body, op)
        return PutResult(str(response.headers.get("etag", "")).strip('"'), None)

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
        self.backend.complete(upload_id, key, [(n, etag) for n, etag, _ in parts])
        # Companion answers with a location only: no ETag or checksum to compare;
        # every part's ETag was compared with its MD5 as it came back.
        return CompleteResult("", None, None)

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.backend.abort(upload_id, key)

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[UploadedPart]:
        return self.backend.list_parts(upload_id, key)


class HybridStore(BackendStore):
    """Uppy's temporary-credentials mode: local signing for bodies, the backend
    for create/list/complete/abort, backend signing as a fallback."""

    def __init__(
        self,
        backend: CompanionClient,
        presigned: S3Client,
        local: S3Client,
        *,
        on_warning: Callable[[str], None],
    ) -> None:
        super().__init__(backend, presigned, on_warning=on_warning)
        self.local = local
        self._fallen_back = threading.Event()

    def forced_checksum(self, *, multipart: bool) -> str | None:
        # The backend creates multipart uploads without a checksum algorithm.
        return "md5" if multipart or self._fallen_back.is_set() else None

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
        return self._signed_here_if_possible(
            lambda: self.local.put_object(
                bucket,
                key,
                body,
                headers=headers,
                payload_sha256=payload_sha256,
                checksum_header=checksum_header,
            ),
            lambda: super(HybridStore, self).put_object(
                bucket, key, body, headers=headers, payload_sha256=payload_sha256
            ),
        )

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
        return self._signed_here_if_possible(
            lambda: self.local.upload_part(
                bucket,
                key,
                upload_id,
                number,
                body,
                headers=headers,
                payload_sha256=payload_sha256,
                checksum_header=checksum_header,
            ),
            lambda: super(HybridStore, self).upload_part(
                bucket, key, upload_id, number, body, headers=headers, payload_sha256=payload_sha256
            ),
        )

    def _signed_here_if_possible(
        self, local: Callable[[], PutResult], backend: Callable[[], PutResult]
    ) -> PutResult:
        """Local signing while the credentials work; the backend once they fail."""
        if not self._fallen_back.is_set():
            try:
                return local()
            except CredentialsError as exc:
                self._fall_back(exc)
        return backend()

    def _fall_back(self, exc: CredentialsError) -> None:
        if not self._fallen_back.is_set():
            self._fallen_back.set()
            self._warn(f"{exc}; signing through the backend from now on")


# A signed x-amz-checksum-crc32 of zero bytes, as AWS SDK for JS >= 3.729 adds by default.
_EMPTY_CRC32 = "x-amz-checksum-crc32=AAAAAA%3D%3D"


def _metadata(headers: Mapping[str, str]) -> dict[str, str]:
    prefix = "x-amz-meta-"
    return {k[len(prefix) :]: v for k, v in headers.items() if k.startswith(prefix)}


def _key_from_url(url: str, bucket: str) -> str:
    """The object key in a presigned URL, path-style or virtual-hosted."""
    path = unquote(urlsplit(url).path).lstrip("/")
    if path.startswith(bucket + "/"):
        return path[len(bucket) + 1 :]
    return path


def _xml_etag(content: bytes) -> str:
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        return ""
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "ETag" and el.text:
            return el.text
    return ""
