"""The worker's venue without a native decoder (Coinbase) on the compiled window builders
(orderbook.venue_windows.CompiledBuilderWindows): the same windows, rejects and stats as the all-Python
reference, across the worker's own snapshot records (streams/snapshots.py: the compiled builders go in as the
reference builders they stand for) restored on either kind of builder, and a panic of a compiled builder
handled as a Python builder's bug is (the record dead-lettered as internal_error, the symbol's windows
starting over), where uncaught it would end the worker's inbox task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model.sim.engine import SimResult
from orderbook import native
from orderbook.venue_windows import INTERNAL_ERROR, CompiledBuilderWindows, VenueWindows, process_records
from orderbook.venues import capture_records
from orderbook.windows import WindowConfig
from streams import snapshots
from streams.pipeline import VenuePipeline
from tests.test_snapshot import Item, real_stream, sim, sim_stream  # noqa: F401 (sim: the fixture)

if native.available():
    from orderbook.native.check import pipeline_difference

pytestmark = pytest.mark.skipif(not native.enabled(), reason=native.describe())

CONFIG = WindowConfig(n_events=32, n_rows=8, every_events=16)
WHERE = {"group": "g", "topic": "md.raw.x", "partition": 0}


def run(venue: str, items: list[Item], *, native: bool | None, cuts: dict[int, bool | None] | None = None) -> Any:
    """The stream through a VenuePipeline (`native` as the worker passes it); at each cut its snapshot record
    (snapshots.encode) is read back (snapshots.decode) onto the builders `cuts[i]` asks for and goes on."""
    pipe = VenuePipeline(venue, CONFIG, native=native)
    windows, rejects, news_ts = [], [], 0
    for i, item in enumerate(items):
        if cuts and i in cuts:
            _, value = snapshots.encode(WHERE["group"], WHERE["topic"], 0, pipe)
            pipe = snapshots.decode(value, **WHERE, venue=venue, config=CONFIG, max_bytes=None, native=cuts[i])
            assert isinstance(pipe.core, CompiledBuilderWindows) is (cuts[i] is None)
        if item.news:
            pipe.add_news(news_ts, [item.news[0]], item.news[1])
            continue
        ws, rs = pipe.process(item.key, item.raw, 0, i)
        windows += ws
        rejects += [(r.reason, r.error, r.offset, r.index, r.value) for r in rs]
        if ws:
            news_ts = ws[-1].ts
    return windows, rejects, pipe.stats


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["coinbase"])
def test_a_capture_on_the_compiled_builders_gives_the_reference_output_across_snapshots(
    shared_data: Path, case: str
) -> None:
    venue, items = real_stream(shared_data, case)
    want = run(venue, items, native=False)
    assert len(want[0]) > 50 and want[1]  # windows, and the malformed records' rejects
    assert isinstance(VenuePipeline(venue, CONFIG).core, CompiledBuilderWindows)
    assert pipeline_difference(want, run(venue, items, native=None)) is None
    # restored on the compiled builders, then on the Python ones (a worker run with MT_NATIVE=0), and back
    n = len(items)
    cuts = {n // 5: None, 2 * n // 5: False, 3 * n // 5: None, 4 * n // 5: None}
    assert pipeline_difference(want, run(venue, items, native=None, cuts=cuts)) is None


def test_a_simulated_stream_on_the_compiled_builders_gives_the_reference_output_across_snapshots(
    sim: SimResult,  # noqa: F811
) -> None:
    venue, items = sim_stream(sim, "coinbase-full")
    want = run(venue, items, native=False)
    assert len(want[0]) > 50 and want[1]
    n = len(items)
    cuts = {n // 4: None, n // 2: False, 3 * n // 4: None}
    assert pipeline_difference(want, run(venue, items, native=None, cuts=cuts)) is None


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
