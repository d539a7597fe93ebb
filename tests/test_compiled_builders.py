"""The offline replays' compiled window builders (orderbook.venue_windows.CompiledBuilderWindows, the training
data's and the alert tables'): a panic of a compiled builder is handled as a Python builder's bug is (the record
rejected as internal_error, the symbol's windows starting over), where uncaught it would end the replay. Their
windows equal the reference builders' (tests/test_native_windows.py, tests/test_dataset.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orderbook import native
from orderbook.venue_windows import INTERNAL_ERROR, CompiledBuilderWindows, VenueWindows, process_records
from orderbook.venues import capture_records
from tests.snapshot_runs import CONFIG

if native.available():
    from orderbook.native.check import pipeline_difference

pytestmark = pytest.mark.skipif(not native.enabled(), reason=native.describe())


class _FailsAt:
    """A window builder that fails on its `at`-th push: a compiled one panics (pyo3's PanicException,
    as a bug in the Rust would), a Python one raises."""

    def __init__(self, inner: Any, at: int) -> None:
        self.inner, self.at, self.pushes = inner, at, 0

    def push(self, book: Any, events: Any, offset: Any = None) -> Any:
        self.pushes += 1
        if self.pushes == self.at:
            if isinstance(self.inner, native._core.WindowBuilder):
                native.panic("a bug met by this record")
            raise RuntimeError("a bug met by this record")
        return self.inner.push(book, events, offset=offset)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _failing(cls: type[VenueWindows], at: int) -> VenueWindows:
    """A `cls` whose first builder fails on its `at`-th push (its replacement does not)."""

    class Failing(cls):  # type: ignore[misc,valid-type]
        wrapped = False

        def _new_builder(self, features: Any, symbol: str) -> Any:
            builder = super()._new_builder(features, symbol)
            if Failing.wrapped:
                return builder
            Failing.wrapped = True
            return _FailsAt(builder, at)

    return Failing("coinbase", CONFIG)


@pytest.mark.realdata
def test_a_panic_of_a_compiled_builder_rejects_its_record_as_a_python_builders_bug_does(shared_data: Path) -> None:
    records = list(capture_records("coinbase", [shared_data / "cryptofeed-captures/COINBASE.ws.28.0.gz"]))
    out = {}
    for cls in (VenueWindows, CompiledBuilderWindows):
        vw = _failing(cls, at=300)
        done = list(process_records(vw, records))
        out[cls] = (
            [w for d in done for w in d.windows],
            [(d.reject.reason, "", i) for i, d in enumerate(done) if d.reject is not None],  # the wording apart
            vw.stats,
        )
        failed = [d.reject.error for d in done if d.reject is not None]
        assert len(failed) == 1 and failed[0].startswith("building windows: "), failed
    want, got = out[VenueWindows], out[CompiledBuilderWindows]
    assert want[1][0][0] == INTERNAL_ERROR and want[2].rejected[INTERNAL_ERROR] == 1
    assert pipeline_difference(want, got) is None  # the same windows after it: the symbol's history started over
    assert len(want[0]) > 100 and want[0][-1].offset[1] > want[1][0][2]
