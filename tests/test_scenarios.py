"""Scenarios: paths sampled by a tiny model trained here, from the book state of a simulated ITCH file,
applied through the real L3 book; reproducible by seed, valid after every step, written by the CLI; drawn
through the event chain once it is fitted, and field by field as before when asked."""

from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.serving.orderflow import OrderFlowForecaster  # noqa: E402
from model.serving.scenarios import (  # noqa: E402
    FACTORIZED,
    JOINT,
    Cut,
    check_book,
    generate_scenarios,
    load_state,
    parse_state,
    window_config,
)
from model.sim.engine import OPEN_NS, SimConfig  # noqa: E402
from model.sim.run import simulate  # noqa: E402
from model.sim.writers import write  # noqa: E402
from model.training.dataset import DatasetConfig, build, save, sim_source  # noqa: E402
from model.training.train import train  # noqa: E402
from orderbook.book import L3Book  # noqa: E402
from orderbook.clock import clock, clock_unit  # noqa: E402
from orderbook.events import Side  # noqa: E402
from orderbook.venues.itch import ItchFeed  # noqa: E402

SEC = 1_000_000_000
CFG = SimConfig(n_symbols=1, duration_ns=120 * SEC, seed=11)
WINDOW = DatasetConfig().window.__class__(n_events=32, n_rows=8, max_news=2, every_events=16)
CUT_NS = OPEN_NS + 60 * SEC


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(checkpoint folder, the ITCH file, its symbol): a tiny model pre-trained for a few steps."""
    d = tmp_path_factory.mktemp("scen")
    result = simulate(CFG)
    (itch,) = write("itch", result, d / "sim")
    data, _ = save(build([sim_source(CFG)], DatasetConfig(window=WINDOW)), d / "train.npz")
    train("pretrain", data, d / "ckpt", steps=8, batch=8, device="cpu", preset="tiny", checkpoint_every=100)
    return d / "ckpt", itch, result.symbols[0].name


@pytest.fixture(scope="module")
def forecaster(setup):
    return OrderFlowForecaster(setup[0], device="cpu")


@pytest.fixture(scope="module")
def state_args(setup, forecaster):
    _, itch, symbol = setup
    return ("itch", itch, symbol, Cut(ts=CUT_NS), window_config(forecaster.extra))


def test_the_start_state_is_the_feeds_book_at_the_cut(setup, state_args):
    _, itch, symbol = setup
    state = load_state(*state_args, horizon=40)
    feed = ItchFeed()
    for rec in ItchFeed.read_capture(itch):
        events = feed.on_message(rec.raw)
        if events and events[0].symbol == symbol and events[0].ts > CUT_NS:
            break
        last = feed.books[symbol].to_dict() if symbol in feed.books else None
    assert state.book.to_dict() == last and state.ts <= CUT_NS
    assert state.resyncs == 0 and state.builder.window().mask.all()
    assert len(state.real_events) >= 40 and state.real_events[0].ts > CUT_NS


def test_parse_state_reads_a_time_or_a_record_count():
    assert parse_state("itch:/x/a@b.itch@123") == ("itch", __import__("pathlib").Path("/x/a@b.itch"), Cut(ts=123))
    assert parse_state("lobster:f.csv@#50")[2] == Cut(records=50)
    with pytest.raises(ValueError):
        parse_state("itch:file-without-cut")


def _paths(forecaster, state_args, seed, on_step=None, n=4, horizon=12):
    state = load_state(*state_args, horizon=horizon)
    return generate_scenarios(forecaster, state, horizon, n, seed=seed, on_step=on_step)


def _flow(result):
    return [[(e.kind, e.side, e.price, e.size, e.ts, e.order_id) for e in p.events] for p in result.paths]


def test_paths_are_reproducible_by_seed_and_differ_with_another(forecaster, state_args):
    a, b, c = (_paths(forecaster, state_args, seed) for seed in (3, 3, 4))
    assert _flow(a) == _flow(b)
    assert np.array_equal(a.series("mid"), b.series("mid"))
    assert _flow(a) != _flow(c)
    assert sum(len(p.events) for p in a.paths) > 0.5 * 4 * 12  # most steps apply an event


def _independent_check(book: L3Book) -> None:
    """Validity without model/serving/scenarios.py's own checker: not crossed, positive sizes, L3 queues."""
    bid, ask = book.best_bid(), book.best_ask()
    assert bid and ask and bid[0] < ask[0]
    for side, levels in ((Side.BID, book.bids), (Side.ASK, book.asks)):
        for price, total in levels.items():
            queue = book.queue(side, price)
            assert total > 0 and queue and total == sum(s for _, s in queue)
            assert all(book.orders[o].price == price and book.orders[o].side == side and s > 0 for o, s in queue)
    assert sum(len(book.queue(s, p)) for s, lv in ((Side.BID, book.bids), (Side.ASK, book.asks)) for p in lv) == len(
        book.orders
    )


def test_every_applied_event_keeps_the_book_valid(forecaster, state_args):
    seen = []

    def check(step, paths):
        for p in paths:
            _independent_check(p.book)
            assert check_book(p.book) == []
            assert len(p.metrics) == step + 1
        seen.append(step)

    result = _paths(forecaster, state_args, seed=5, on_step=check, n=6, horizon=25)
    assert seen == list(range(1, 26))
    kinds = {e.kind for p in result.paths for e in p.events}
    assert len(kinds) >= 2  # adds and removals both happen, so queues were really exercised


def test_check_book_reports_a_crossed_book():
    book = L3Book("itch", "X")
    book.add(1, Side.BID, 101, 5)
    book.add(2, Side.ASK, 100, 5)
    assert any("crossed" in p for p in check_book(book))


def test_the_cli_writes_charts_csv_and_stylized_facts(setup, tmp_path):
    import argparse

    from streams.cli.scenarios import register

    ckpt, itch, symbol = setup
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = tmp_path / "scen"
    argv = ["scenarios", "--model", str(ckpt), "--symbol", symbol, "--from", f"itch:{itch}@{CUT_NS}",
            "--horizon", "40", "--paths", "3", "--out", str(out), "--seed", "2", "--device", "cpu"]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.run(args) == 0
    for name in ("fan_mid.png", "fan_spread.png", "fan_depth.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "paths.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == ["0", "1", "2"]
    assert all(int(r["events"]) + int(r["skipped"]) == 40 and float(r["spread_ticks"]) > 0 for r in rows)
    md = (out / "scenarios.md").read_text()
    assert "| spread, mean (ticks) |" in md and "real continuation" in md
    spread_row = next(line for line in md.splitlines() if line.startswith("| spread, mean (ticks)"))
    assert spread_row.count("n/a") < 3  # both the generated and the real spread are measured


def test_chart_titles_give_a_clock_not_nanoseconds():
    assert clock(OPEN_NS + 123_000_000) == "09:30:00.123"  # ITCH: since the venue's midnight
    assert clock_unit(OPEN_NS) == "venue clock"
    assert clock(1_723_075_200_123_000_000) == "2024-08-08 00:00:00.123"  # Binance: since the epoch
    assert clock_unit(1_723_075_200_123_000_000) == "UTC"


@pytest.fixture(scope="module")
def chained(setup):
    """The tiny checkpoint with its event chain fitted on its own training set (train --stage event-chain)."""
    from model.training.train import fit_head

    ckpt = setup[0]
    out = fit_head("event_chain", ckpt, ckpt.parent / "train.npz", ckpt.parent / "ckpt-chain", device="cpu")
    return OrderFlowForecaster(out, device="cpu")


def test_the_joint_draw_samples_through_the_chain_and_the_factorized_one_as_before(forecaster, chained, state_args):
    assert bool(chained.model.event_chain.fitted)  # it beat the heads on its held-out windows
    state = load_state(*state_args, horizon=20)
    plain = generate_scenarios(forecaster, state, 20, 4, seed=3)
    factorized = generate_scenarios(chained, state, 20, 4, seed=3, sampling=FACTORIZED)
    joint, again = (generate_scenarios(chained, state, 20, 4, seed=3, sampling=JOINT) for _ in range(2))
    assert plain.sampling == factorized.sampling == FACTORIZED and joint.sampling == JOINT
    assert _flow(factorized) == _flow(plain)  # the chain fitted changes nothing of the factorized draw
    assert _flow(joint) == _flow(again) and _flow(joint) != _flow(factorized)
    for p in joint.paths:
        assert check_book(p.book) == []
    with pytest.raises(ValueError, match="sampling"):
        generate_scenarios(chained, state, 2, 1, sampling="greedy")


def test_a_paths_newest_event_is_read_one_slot_before_the_window_end_which_changes_nothing_else(forecaster, state_args):
    """Training windows end at a message's end, so the last slot only ever held a message's last event: a
    path's newest event is read in the slot before it (scenarios.READ_BEFORE_LAST). Attention is causal, so
    whatever that last slot held, the newest event's logits and state are the same."""
    from model.network.orderflow import FIELDS, to_batch
    from model.serving.scenarios import READ_BEFORE_LAST, fresh_path, next_logits

    assert READ_BEFORE_LAST == 1
    path = fresh_path(load_state(*state_args, horizon=4), 0, 0)
    logits, state = next_logits(forecaster, [path])
    window = forecaster.arrays([path.builder.window()])
    filled = {k: v.copy() for k, v in window.items()}  # the newest event one slot earlier, the last slot a real one
    for key in (*FIELDS, "mask"):
        filled[key][:, :-1] = window[key][:, 1:]
        filled[key][:, -1] = window[key][:, -1]
    with torch.inference_mode():
        out = forecaster.model(to_batch(filled, forecaster.device))
    assert torch.allclose(out["events"][:, -2], state, atol=1e-5)
    assert all(torch.allclose(out["next"][f][:, -2], logits[f], atol=1e-5) for f in FIELDS)
    with torch.inference_mode():  # read at the last slot instead, the state is another
        assert not torch.allclose(forecaster.model(to_batch(window, forecaster.device))["events"][:, -1], state)


def test_the_cli_offers_exactly_the_samplings_generate_scenarios_takes():
    import argparse

    from model.serving.scenarios import SAMPLINGS
    from streams.cli.scenarios import register

    parser = register(argparse.ArgumentParser().add_subparsers())
    (action,) = [a for a in parser._actions if a.dest == "sampling"]
    assert tuple(action.choices) == SAMPLINGS and action.default == SAMPLINGS[0]


def test_messages_group_the_level_updates_of_one_instant_and_leave_other_events_alone():
    from model.serving.scenarios import messages
    from orderbook.events import Event, Kind, Side

    def ev(kind: Kind, ts: int) -> Event:
        return Event(kind, "binance", "X", ts, 0, Side.BID, 100, 1)

    a, b, t1, t2, c, d = (ev(Kind.LEVEL_SET, 1), ev(Kind.LEVEL_SET, 1), ev(Kind.TRADE, 1), ev(Kind.TRADE, 1),
                          ev(Kind.LEVEL_SET, 1), ev(Kind.LEVEL_SET, 2))  # fmt: skip
    assert messages([a, b, t1, t2, c, d]) == [[a, b], [t1], [t2], [c], [d]]
