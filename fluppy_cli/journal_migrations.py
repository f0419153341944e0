"""Journal format migrations: each step takes an entry of version N to N+1.
An entry is migrated when read and written back in the current format when
next saved, so old entries keep resuming after an upgrade."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Doc = dict[str, Any]


def _v1_to_v2(doc: Doc) -> Doc:
    """Version 2 records the signing backend (backend and hybrid mode)."""
    return {**doc, "version": 2, "signer": ""}


STEPS: dict[int, Callable[[Doc], Doc]] = {1: _v1_to_v2}
CURRENT = 2


def migrate(doc: Doc) -> Doc:
    """Bring an entry to the current version; ValueError for an unknown one."""
    version = doc.get("version")
    while version != CURRENT:
        step = STEPS.get(version) if isinstance(version, int) else None
        if step is None:
            raise ValueError(f"unknown format version {version!r}")
        doc = step(doc)
        version = doc["version"]
    return doc
