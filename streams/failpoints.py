"""Failpoints: faults a test arms inside a worker process, for the failures no outside action can cause
on demand (FreeBSD's fail(9), TiKV's fail-rs). The upstream consumer stall after a broker outage
(streams/stall.py) comes once in a few dozen outages; its recovery is tested by arming `fetch_stall`.
`batch_delay` holds a batch between its forecasts and its commit (streams/partition.py), so that a
test can stop the worker while a batch is in flight.

Armed from the environment, read once: `MT_FAILPOINTS="NAME=AFTER:MARKER[,...]"`. `hit(NAME)` is
True at its AFTER-th call (1: the first) in the first process that gets there; that process creates
the MARKER file, so the same failpoint in a later process (the worker restarted with the same
environment) stays quiet. Unarmed, `hit` is one dictionary lookup.

A poison record is the other kind: `MT_FAILPOINT_NATIVE_PANIC=HEX`, a record value on which the native
path panics every time it is given it, in every process (`native_poisoned`; streams/pipeline.py makes the
compiled code panic for real), as a record that meets a bug of orderbook/native would. The fuzz targets
have found none (`make fuzz`); the worker's answer to one is tested on this (tests/test_faults.py).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

ENV = "MT_FAILPOINTS"


def parse(text: str) -> dict[str, tuple[int, Path]]:
    """`NAME=AFTER:MARKER` items, comma-separated; ValueError names a malformed one."""
    armed: dict[str, tuple[int, Path]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, rest = item.partition("=")
        after, _, marker = rest.partition(":")
        if not (name and after.isdigit() and int(after) >= 1 and marker):
            raise ValueError(f"{ENV}: {item!r} is not NAME=AFTER:MARKER (AFTER a count from 1, MARKER a file path)")
        armed[name] = (int(after), Path(marker))
    return armed


_ARMED = parse(os.environ.get(ENV, ""))
POISON_ENV = "MT_FAILPOINT_NATIVE_PANIC"
_POISON = bytes.fromhex(os.environ.get(POISON_ENV, "")) or None
_calls: Counter[str] = Counter()


def hit(name: str) -> bool:
    """Whether the failpoint `name` fires at this call (module docstring)."""
    if name not in _ARMED:
        return False
    after, marker = _ARMED[name]
    _calls[name] += 1
    if _calls[name] != after:
        return False
    try:
        marker.touch(exist_ok=False)  # atomic: one process of all that share the marker fires
    except FileExistsError:
        return False
    return True


def native_poisoned(values: Iterable[bytes]) -> bool:
    """Whether a record of `values` is the armed poison record (module docstring); unarmed, one test."""
    return _POISON is not None and any(v == _POISON for v in values)
