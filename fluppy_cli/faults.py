"""Fault injection for the crash tests. ``FLUPPY_FAULT=POINT[:PART]`` makes the
process die as kill -9 would (no cleanup, no journal flush) at one point:

- ``after-create``: the multipart upload exists and is journaled, no part sent
- ``after-ack:N``: the server acknowledged part N, the journal has not recorded it
- ``before-complete``: every part is on the server, CompleteMultipartUpload not sent

Read once at import; does nothing when unset."""

from __future__ import annotations

import os

_SPEC = os.environ.get("FLUPPY_FAULT", "")


def hit(point: str, number: int = 0) -> None:
    """Die here if ``FLUPPY_FAULT`` names this point (and part number)."""
    if not _SPEC:
        return
    name, _, at = _SPEC.partition(":")
    if name == point and (not at or int(at) == number):
        os._exit(137)  # no cleanup, no journal flush: exactly what SIGKILL leaves
