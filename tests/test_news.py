"""orderbook.news: the one `md.news` parser (the worker's and `megatrading score`'s), and headlines waiting
for a replayed stream's clock."""

from __future__ import annotations

import json

import pytest

from model.serving.scoring import read_news
from orderbook.errors import DecodeError
from orderbook.news import Headline, PendingHeadlines, parse_news

REFUSED = {
    "not json": b"nope",
    "no fields": b"{}",
    "a list": b"[1, 2]",
    "ts not a number": b'{"ts": "soon", "symbols": ["A"], "headline": "h"}',
    "ts null": b'{"ts": null, "symbols": ["A"], "headline": "h"}',
    "symbols a string": b'{"ts": 1, "symbols": "AB", "headline": "h"}',
    "a symbol not a string": b'{"ts": 1, "symbols": ["A", 2], "headline": "h"}',
    "headline not a string": b'{"ts": 1, "symbols": ["A"], "headline": 7}',
    "no headline": b'{"ts": 1, "symbols": ["A"]}',
    # found writing the news fuzz target: the first two and the last escaped as OverflowError and
    # RecursionError (ending the worker's heartbeat timer); a ts past int64 is on no stream's clock
    "ts infinite": b'{"ts": 1e999, "symbols": ["A"], "headline": "h"}',
    "ts Infinity": b'{"ts": Infinity, "symbols": ["A"], "headline": "h"}',
    "ts past int64": b'{"ts": 9223372036854775808, "symbols": ["A"], "headline": "h"}',
    "ts below int64": b'{"ts": -9223372036854775809, "symbols": ["A"], "headline": "h"}',
    "nested past the parser": b"[" * 100_000,
    # JSON's escapes spell lone surrogates, which no UTF-8 writer takes: the compiled window builders raised
    # UnicodeEncodeError on joining this headline to a window (the worker's batch failed on it at every retry)
    "headline a lone surrogate": b'{"ts": 1, "symbols": ["A"], "headline": "\\ud800 x"}',
    "symbol a lone surrogate": b'{"ts": 1, "symbols": ["\\udfff"], "headline": "h"}',
}


def test_a_news_record_parses_into_its_time_symbols_and_headline():
    got = parse_news(b'{"ts": 5, "symbols": ["A", "B"], "headline": "h", "source": "s"}')
    assert got == Headline(5, ["A", "B"], "h") and got == (5, ["A", "B"], "h")
    pair = parse_news(b'{"ts": 5, "symbols": ["A"], "headline": "up \\ud83d\\ude80 \xc3\xa9"}')
    assert pair.headline == "up \U0001f680 \u00e9"  # an escaped surrogate pair is one character


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
def test_a_record_not_in_the_news_layout_is_a_malformed_decode_error(value):
    with pytest.raises(DecodeError) as err:
        parse_news(value)
    assert err.value.reason == "malformed" and "venue=news" in str(err.value)


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
def test_a_news_file_refuses_what_the_worker_refuses_naming_the_line(tmp_path, value):
    p = tmp_path / "news.jsonl"
    p.write_bytes(json.dumps({"ts": 1, "symbols": ["A"], "headline": "x"}).encode() + b"\n\n" + value + b"\n")
    with pytest.raises(ValueError, match=r"news\.jsonl:3: not an md\.news record"):
        read_news(p)


def test_a_news_file_is_read_in_time_order(tmp_path):
    p = tmp_path / "news.jsonl"
    lines = [{"ts": 9, "symbols": ["A"], "headline": "late"}, {"ts": 2, "symbols": ["B"], "headline": "early"}]
    p.write_text("".join(json.dumps(d) + "\n" for d in lines))
    assert read_news(p) == [Headline(2, ["B"], "early"), Headline(9, ["A"], "late")]


def test_pending_headlines_are_handed_out_once_each_when_the_clock_reaches_them():
    pending = PendingHeadlines([Headline(30, ["A"], "c"), Headline(10, ["A"], "a"), Headline(10, ["B"], "b")])
    assert pending.due(5) == []
    assert pending.due(10) == [Headline(10, ["A"], "a"), Headline(10, ["B"], "b")]
    assert pending.due(10) == [] and pending.due(29) == []
    assert pending.due(100) == [Headline(30, ["A"], "c")] and pending.due(200) == []
