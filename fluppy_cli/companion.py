"""The Companion S3 protocol (``@uppy/companion`` and servers that speak it):
the backend signs requests so that no credential leaves it.

Routes, all under ``{signer}/s3``:

| route | use |
|---|---|
| GET /params?filename&type&metadata[k]=v | one file: presigned POST form, or URL for PUT |
| POST /multipart {filename, type, metadata} | create: the backend chooses the key |
| GET /multipart/:uploadId/:partNumber?key= | sign one part, just before it is sent |
| GET /multipart/:uploadId?key= | list parts |
| POST /multipart/:uploadId/complete?key= {parts} | complete |
| DELETE /multipart/:uploadId?key= | abort |

Errors arrive as ``{"error": "..."}`` with 4xx/5xx; they become ``RemoteError``
naming the route, retryable for 5xx, 429, timeouts and network errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from fluppy_cli.errors import RemoteError, TemporaryFailure
from fluppy_cli.s3 import UploadedPart

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadParameters:
    """How to send one whole file: POST a form, or PUT to a URL."""

    method: str  # "POST" or "PUT"
    url: str
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class CompanionClient:
    """Calls a Companion-compatible backend. Holds no credentials of its own."""

    def __init__(self, http: httpx.Client, base_url: str) -> None:
        self.http = http
        self.base = base_url.rstrip("/") + "/s3"

    def params(
        self, filename: str, content_type: str, metadata: Mapping[str, str]
    ) -> UploadParameters:
        query = [("filename", filename), ("type", content_type)]
        query += [(f"metadata[{k}]", v) for k, v in metadata.items()]
        doc = self._call("GET", "/params", params=query)
        method = str(doc.get("method") or "PUT").upper()
        if method not in ("POST", "PUT") or not isinstance(doc.get("url"), str):
            raise self._bad("GET /s3/params", "an answer without a usable method and url")
        fields = doc.get("fields") or {}
        headers = doc.get("headers") or {}
        return UploadParameters(
            method,
            doc["url"],
            {str(k): str(v) for k, v in fields.items()},
            {str(k): str(v) for k, v in headers.items()},
        )

    def create(
        self, filename: str, content_type: str, metadata: Mapping[str, str]
    ) -> tuple[str, str, str]:
        """POST /s3/multipart; returns the upload id, and the key and bucket the
        backend chose (bucket "" when it does not say)."""
        body = {"filename": filename, "type": content_type, "metadata": dict(metadata)}
        doc = self._call("POST", "/multipart", json=body)
        if not isinstance(doc.get("uploadId"), str) or not isinstance(doc.get("key"), str):
            raise self._bad("POST /s3/multipart", "an answer without uploadId and key")
        return doc["uploadId"], doc["key"], str(doc.get("bucket") or "")

    def sign_part(self, upload_id: str, key: str, number: int) -> str:
        """A presigned URL for one part."""
        route = f"/multipart/{quote(upload_id, safe='')}/{number}"
        doc = self._call("GET", route, params=[("key", key)])
        if not isinstance(doc.get("url"), str):
            raise self._bad(f"GET /s3{route}", "an answer without url")
        return str(doc["url"])

    def list_parts(self, upload_id: str, key: str) -> list[UploadedPart]:
        route = f"/multipart/{quote(upload_id, safe='')}"
        doc = self._call("GET", route, params=[("key", key)])
        if not isinstance(doc, list):
            raise self._bad(f"GET /s3{route}", "an answer that is not a list of parts")
        return [
            UploadedPart(int(p["PartNumber"]), str(p["ETag"]).strip('"'), int(p.get("Size", 0)))
            for p in doc
        ]

    def complete(self, upload_id: str, key: str, parts: Sequence[tuple[int, str]]) -> str:
        """Complete; returns the location the backend reports."""
        route = f"/multipart/{quote(upload_id, safe='')}/complete"
        body = {"parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]}
        doc = self._call("POST", route, params=[("key", key)], json=body)
        return str(doc.get("location") or "")

    def abort(self, upload_id: str, key: str) -> None:
        route = f"/multipart/{quote(upload_id, safe='')}"
        self._call("DELETE", route, params=[("key", key)])

    # -- plumbing -------------------------------------------------------------

    def _call(
        self,
        method: str,
        route: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        json: Any = None,
    ) -> Any:
        name = f"{method} /s3{route.split('?', maxsplit=1)[0]}"
        log.debug("backend %s", name)
        try:
            response = self.http.request(method, self.base + route, params=list(params), json=json)
        except httpx.TimeoutException:
            raise TemporaryFailure(
                "the signing backend timed out", operation=name, retryable=True
            ) from None
        except httpx.TransportError as exc:
            msg = f"the signing backend could not be reached: {type(exc).__name__}"
            raise TemporaryFailure(msg, operation=name, retryable=True) from None
        try:
            doc = response.json() if response.content else {}
        except ValueError:
            doc = None
        if response.status_code >= 300:
            reason = doc.get("error") if isinstance(doc, dict) else None
            text = f"the signing backend answered HTTP {response.status_code}"
            if reason:
                text += f": {str(reason)[:300]}"
            elif doc is None and response.text.lstrip().startswith("<"):
                text += " with an HTML page (is --signer the backend's base URL?)"
            status = response.status_code
            retryable = status >= 500 or status == 429
            cls = TemporaryFailure if retryable else RemoteError
            raise cls(text, operation=name, status=status, retryable=retryable)
        if doc is None:
            raise self._bad(name, "an answer that is not JSON")
        return doc

    @staticmethod
    def _bad(name: str, what: str) -> RemoteError:
        return RemoteError(f"the signing backend gave {what}", operation=name)
