"""Forecasts out: Redis as docs/design.md lays it out, written idempotently, one pipeline per batch.

Keys (the public contract):
- `mt:latest:{venue}:{symbol}` hash: the newest forecast, plain string fields.
- `mt:hist:{venue}:{symbol}` stream: every forecast, trimmed with `MAXLEN ~`.
- `mt:alerts` stream: forecasts whose anomaly score passed the threshold, with `reason`.
- `mt:window:{venue}:{symbol}:{window}` string: the window that raised an alert (its events, its book
  series rows, its most surprising event and the score's drivers where the model gives them), compact
  JSON (streams/alert_window.py), written with its alert and expiring `alert_window_ttl_s` later.
- `mt:book:{venue}:{symbol}` string: the book's best levels (`book_levels` a side, default 10), compact
  JSON `{"window", "ts", "seq", "emitted_ts", "venue", "symbol", "bids", "asks"}`: `bids` and `asks`
  as `[[price, size], ...]` best first, in the venue's integer units as the book holds them; `window`
  the book's count of event tokens when they were read (a forecast's `window`: equal to one, the levels
  are that forecast's book; greater, the book took messages after its newest forecast), `ts` and `seq`
  its last event's, `emitted_ts` when the worker wrote it (ns). Written with the batch's forecasts, once
  per partition batch for each book with a window in the batch.
- `mt:forecasts` pub/sub channel: each forecast as it is written, as JSON.
- `mt:meta` hash: model name and version, schema version, worker heartbeats, the windows each
  worker skipped because the model fell behind (`overload = "latest"`, streams/batcher.py), the
  drift of each book (`drift:{venue}:{symbol}`, compact JSON: model/serving/drift.py), and each
  worker's model: `model:{worker}`, `swapped:{worker}` (when it took it, ns; 0: at start) and
  `swap_error:{worker}` (the last wanted model it refused, and why; empty when none); with each
  heartbeat, the worker's running counts since it started, `messages:{worker}:{venue}` (venue
  messages processed, the Prometheus `megatrading_messages_total`) and `records:{worker}:{venue}`
  (Kafka records), `dlq:{worker}:{venue}:{reason}` (messages dead-lettered to md.dlq, the Prometheus
  `megatrading_dlq_total`), `resyncs:{worker}:{venue}` (times its books fell out of sync and awaited
  a snapshot; only for venues whose books resync: Binance, Coinbase, Kraken), and `started:{worker}`
  (when it started, ns: a new value means the counts restarted from zero); with each heartbeat too,
  its batch times in ms over its last 1,000 batches, `model_batch_p50_ms:{worker}`,
  `model_batch_p99_ms:{worker}` (the model's batches), `partition_batch_p50_ms:{worker}`,
  `partition_batch_p99_ms:{worker}` (records taken -> forecasts in Redis; "" before the first
  batch); with its model, `device:{worker}` (where the model runs: "cpu", "cuda:0").
- `mt:control` hash: what operators want of the workers (`megatrading model use`): `model`, the
  spec every worker should serve (absent: each its own `--model`); read with each heartbeat.

Idempotence: a forecast is ordered by `window`, its book's count of event tokens at the
window's end, which a replay after a crash reproduces exactly (venue sequence numbers do
not serve: Coinbase level2 books interleave a message count with trade sequence numbers).
One Lua script per forecast compares it with what the latest hash holds and writes nothing
when the forecast is not newer, so a replay (at-least-once delivery) adds nothing a reader
can see: no second history entry, no second alert, its window's key left as it was. A book's
levels are ordered the same way, by their `window`: a script writes them only over older ones, so a
replay, cut into batches as it may be, never puts an older book over a newer one. The heartbeat's
counts are absolute values: a repeated heartbeat counts nothing twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any, NamedTuple

import redis
import redis.asyncio

from streams.config import Settings

LATEST = "mt:latest:{venue}:{symbol}"
HIST = "mt:hist:{venue}:{symbol}"
ALERTS = "mt:alerts"
CHANNEL = "mt:forecasts"
META = "mt:meta"
DRIFT_FIELD = "drift:{venue}:{symbol}"  # an mt:meta field: a book's drift, compact JSON
WINDOW = "mt:window:{venue}:{symbol}:{window}"  # an alert's window, compact JSON (streams/alert_window.py)
BOOK = "mt:book:{venue}:{symbol}"  # a book's best levels, compact JSON (`book_json`)
MESSAGES_FIELD = "messages:{worker}:{venue}"  # mt:meta: venue messages a worker processed since it started
RECORDS_FIELD = "records:{worker}:{venue}"  # mt:meta: Kafka records a worker processed since it started
STARTED_FIELD = "started:{worker}"  # mt:meta: when the worker started (ns): its counts' origin
DLQ_FIELD = "dlq:{worker}:{venue}:{reason}"  # mt:meta: messages a worker dead-lettered since it started
RESYNCS_FIELD = "resyncs:{worker}:{venue}"  # mt:meta: times its books resynced since it started
COUNTS = ("messages", "records", "resyncs")  # the `<name>:{worker}:{venue}` counts above
DEVICE_FIELD = "device:{worker}"  # mt:meta: the device the worker's model runs on ("cpu", "cuda:0")
# mt:meta: the worker's batch times, ms over its last 1,000 batches ("" before its first): the model's
# batches (the batcher) and its partition batches (records taken -> forecasts in Redis)
LATENCY_FIELDS = ("model_batch_p50_ms", "model_batch_p99_ms", "partition_batch_p50_ms", "partition_batch_p99_ms")
CONTROL = "mt:control"
WANTED_MODEL = "model"  # an mt:control field: the model spec the workers should serve

# ARGV: seq, window, history maxlen, alert (1/0), the forecast as JSON (published), its fields as a
# JSON array of strings [name, value, ...] (one argument, not ~80: packing the arguments was a third of
# a write's time; cjson gives the strings back byte for byte), alerts maxlen; for an alert with its
# window (KEYS[5]), the window's JSON and its time to live in seconds: written in the same script, so an
# alert and its window appear together and a replay, which writes nothing, leaves the window as it was
_WRITE = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'window') or '-1')
if tonumber(ARGV[2]) <= cur then return 0 end
local fields = cjson.decode(ARGV[6])
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
if ARGV[4] == '1' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', unpack(fields))
  if KEYS[5] then redis.call('SET', KEYS[5], ARGV[8], 'EX', ARGV[9]) end
end
redis.call('PUBLISH', KEYS[4], ARGV[5])
return 1
"""

# ARGV: the levels' window, their JSON (which `book_json` starts with the window: read back without
# decoding the levels). Only over an older book: a replay leaves a newer one as it is
_WRITE_BOOK = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local w = tonumber(string.match(cur, '^{"window":(%d+)'))
  if w and tonumber(ARGV[1]) <= w then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class CountField(NamedTuple):
    """A worker's count field of `mt:meta`, parsed (`count_field`)."""

    name: str  # one of COUNTS, or "dlq"
    worker: str
    venue: str
    reason: str  # a dead letter's reason; "" for the others


def count_field(field: str) -> CountField | None:
    """The parts of a worker's count field (MESSAGES_FIELD, RECORDS_FIELD, RESYNCS_FIELD, DLQ_FIELD), None
    for any other field: a worker id may hold colons, a venue and a reason none, so they are read from the
    right. The one reading of these names, for the worker that forgets its own, a venue's reset and the
    dashboard."""
    name, _, rest = field.partition(":")
    if name == "dlq":
        parts = rest.rsplit(":", 2)
        return CountField(name, *parts) if len(parts) == 3 else None
    if name in COUNTS:
        worker, _, venue = rest.rpartition(":")
        return CountField(name, worker, venue, "") if worker and venue else None
    return None


WINDOW_TTL_S = 7 * 86_400  # how long an alert's window stays (`alert_window_ttl_s`)


def book_json(
    venue: str,
    symbol: str,
    window: int,
    ts: int,
    seq: int,
    bids: Sequence[Sequence[int]],
    asks: Sequence[Sequence[int]],
    emitted_ts: int,
) -> str:
    """A book's levels as `BOOK` holds them (module docstring), `window` first: the write script reads it."""
    doc = {"window": window, "ts": ts, "seq": seq, "emitted_ts": emitted_ts, "venue": venue, "symbol": symbol,
           "bids": bids, "asks": asks}  # fmt: skip
    return json.dumps(doc, separators=(",", ":"))


@lru_cache(maxsize=16)
def _layout(names: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """Each field name's JSON as `encode_forecast` writes it: before a value in the published object, before
    a number's string and before any other string in the array of fields. A forecast's names are the schema's
    (RECORD_FIELDS), the same for every forecast: encoded once."""
    return ([encode_basestring_ascii(k) + ":" for k in names], [encode_basestring(k) + ',"' for k in names],
            [encode_basestring(k) + "," for k in names])  # fmt: skip


def encode_forecast(f: Mapping[str, object]) -> tuple[str, str]:
    """A forecast as the write script takes it: the forecast as compact JSON, byte for byte what
    `json.dumps(f, separators=(",", ":"))` gives, and its fields as the JSON array of strings `[name, value,
    ...]` that `json.dumps(..., ensure_ascii=False)` gives, each value as the hash keeps it (`repr` of a float,
    full precision; `str` of the rest). Each float is formatted once for both, with `float.__repr__` as `json`
    formats a finite float, and a number's string needs no escaping: formatting the ~30 floats twice and
    encoding the strings again took twice as long (bench/sink_bench.py). A value whose JSON is not its plain
    string (a non-finite float, a bool, None, a container) sends the object through `json.dumps`."""
    object_keys, number_keys, string_keys = _layout(tuple(f))
    obj: list[str] = []
    fields: list[str] = []
    plain = True
    for i, v in enumerate(f.values()):
        t = type(v)
        if t is float or t is int:
            s = repr(v)
            plain = plain and s[-1] not in "nf"  # nan, inf, -inf: JSON spells them NaN, Infinity
            obj.append(object_keys[i] + s)
            fields.append(number_keys[i] + s + '"')
        elif t is str:
            obj.append(object_keys[i] + encode_basestring_ascii(v))  # type: ignore[arg-type]
            fields.append(string_keys[i] + encode_basestring(v))  # type: ignore[arg-type]
        else:
            plain = False
            fields.append(string_keys[i] + encode_basestring(str(v)))
    payload = "{" + ",".join(obj) + "}" if plain else json.dumps(f, separators=(",", ":"))
    return payload, "[" + ",".join(fields) + "]"


# timeouts: a hung server must surface as an error the worker retries and reports, not as a
# write that waits forever without a word
TIMEOUTS: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5}


class RedisSink:
    """Writes with a blocking client (`write`), or on the caller's event loop (`write_async`: the
    worker's, where a hop to a thread and back cost more than the round trip itself)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        alert_threshold: float = Settings.alert_threshold,
        history_maxlen: int = 100_000,
        alerts_maxlen: int = 100_000,
        window_ttl_s: int = WINDOW_TTL_S,
        url: str | None = None,
    ) -> None:
        self.redis = client
        self.url = url  # for the event loop's client, made on its first write_async
        self.alert_threshold = alert_threshold
        self.history_maxlen = history_maxlen
        self.alerts_maxlen = alerts_maxlen
        self.window_ttl_s = window_ttl_s  # 0: alerts' windows are not written
        self._script = client.register_script(_WRITE)
        self._book_script = client.register_script(_WRITE_BOOK)
        self._aredis: redis.asyncio.Redis | None = None
        self._ascript: Any = None
        self._abook_script: Any = None
        self.written = 0
        self.duplicates = 0
        self.books_written = 0
        self.books_stale = 0  # levels not written: the key held the same or a newer book (a replay)

    @classmethod
    def from_url(cls, url: str, **kw: object) -> RedisSink:
        return cls(redis.Redis.from_url(url, **TIMEOUTS), url=url, **kw)  # type: ignore[arg-type]

    def _calls(
        self, forecasts: Iterable[Mapping[str, object]], windows: Sequence[str | None] | None
    ) -> Iterator[tuple[list[str], list[object]]]:
        """The write script's (keys, args) for each forecast; `windows`, given: each forecast's window as
        JSON (streams/alert_window.py), None where it has none (it is written for alerts only)."""
        for i, f in enumerate(forecasts):
            keys = [LATEST.format(**f), HIST.format(**f), ALERTS, CHANNEL]
            is_alert = float(f["anomaly_score"]) >= self.alert_threshold  # type: ignore[arg-type]
            payload, fields = encode_forecast(f)
            args: list[object] = [f["seq"], f["window"], self.history_maxlen, "1" if is_alert else "0",
                                  payload, fields, self.alerts_maxlen]  # fmt: skip
            window = windows[i] if is_alert and windows is not None and self.window_ttl_s > 0 else None
            if window:
                keys.append(WINDOW.format(**f))
                args += [window, self.window_ttl_s]
            yield keys, args

    def _count(self, results: list[Any], books: int) -> int:
        """Count a round trip's results: the books' come last (`books` of them)."""
        split = len(results) - books
        new = sum(int(r) for r in results[:split])
        self.written += new
        self.duplicates += split - new
        fresh = sum(int(r) for r in results[split:])
        self.books_written += fresh
        self.books_stale += books - fresh
        return new

    @staticmethod
    def _book_calls(books: Sequence[tuple[str, str, int, str]]) -> Iterator[tuple[list[str], list[object]]]:
        for venue, symbol, window, doc in books:
            yield [BOOK.format(venue=venue, symbol=symbol)], [window, doc]

    def write(
        self,
        forecasts: Iterable[Mapping[str, object]],
        windows: Sequence[str | None] | None = None,
        books: Sequence[tuple[str, str, int, str]] = (),
    ) -> int:
        """Write a batch in one round trip; returns how many forecasts were new. `windows`: each forecast's
        window as JSON, or None (see `_calls`): an alert's is written beside it, under `WINDOW`. `books`:
        (venue, symbol, window, `book_json`) of each book's levels, written under `BOOK` where newer."""
        pipe = self.redis.pipeline(transaction=False)
        for keys, args in self._calls(forecasts, windows):
            self._script(keys=keys, args=args, client=pipe)
        for keys, args in self._book_calls(books):
            self._book_script(keys=keys, args=args, client=pipe)
        return self._count(pipe.execute(), len(books)) if len(pipe) else 0

    async def write_async(
        self,
        forecasts: Iterable[Mapping[str, object]],
        windows: Sequence[str | None] | None = None,
        books: Sequence[tuple[str, str, int, str]] = (),
    ) -> int:
        """`write` on the running event loop, one round trip (the sink's url; used from one loop only)."""
        if self._aredis is None:
            if self.url is None:
                raise ValueError("write_async needs a sink made with from_url")
            self._aredis = redis.asyncio.Redis.from_url(self.url, **TIMEOUTS)
            self._ascript = self._aredis.register_script(_WRITE)
            self._abook_script = self._aredis.register_script(_WRITE_BOOK)
        pipe = self._aredis.pipeline(transaction=False)
        for keys, args in self._calls(forecasts, windows):
            await self._ascript(keys=keys, args=args, client=pipe)  # queued: the pipeline runs it below
        for keys, args in self._book_calls(books):
            await self._abook_script(keys=keys, args=args, client=pipe)
        return self._count(await pipe.execute(), len(books)) if len(pipe) else 0

    async def aclose(self) -> None:
        if self._aredis is not None:
            await self._aredis.aclose()
            self._aredis = None

    def set_meta(self, model: str, schema: int) -> None:
        self.redis.hset(META, mapping={"model": model, "schema": str(schema)})

    def worker_model(
        self, worker_id: str, model: str, swapped_ns: int, error: str = "", device: str | None = None
    ) -> None:
        """The model a worker serves: `model` (the deployment's, so the last worker to write it) and the
        worker's own `model:`, `swapped:` (0: the model it started with), `swap_error:` and, given, `device:`
        (where the model runs) fields."""
        fields = {"model": model, f"model:{worker_id}": model, f"swapped:{worker_id}": str(swapped_ns)}
        if device is not None:
            fields[DEVICE_FIELD.format(worker=worker_id)] = device
        self.redis.hset(META, mapping=fields | {f"swap_error:{worker_id}": error})

    def forget_counts(self, worker_id: str) -> int:
        """Remove the worker's counts of a previous run (`messages:`, `records:`, `dlq:`, `resyncs:` of
        `worker_id`), as it starts: a heartbeat writes the counts it has, and a reason or venue the new run
        has not met would otherwise stand beside them with the old run's count. Returns how many went."""
        mine = [key for key in (raw.decode() for raw in self.redis.hkeys(META))
                if (parsed := count_field(key)) is not None and parsed.worker == worker_id]  # fmt: skip
        return int(self.redis.hdel(META, *mine)) if mine else 0

    def swap_refused(self, worker_id: str, error: str) -> None:
        self.redis.hset(META, f"swap_error:{worker_id}", error)

    def heartbeat(
        self,
        worker_id: str,
        skipped: int | None = None,
        meta: Mapping[str, str] | None = None,
        counts: Mapping[str, Sequence[int]] | None = None,
        started_ns: int | None = None,
        now_ns: int | None = None,
        *,
        dlq: Mapping[tuple[str, str], int] | None = None,
        resyncs: Mapping[str, int] | None = None,
        latency_ms: Mapping[str, float | None] | None = None,
    ) -> str | None:
        """The worker's heartbeat (`now_ns`, default now) and, given, the windows its batcher skipped since
        it started, its counts since it started (`counts`: venue -> (messages, records); `dlq`: (venue,
        reason) -> messages dead-lettered; `resyncs`: venue -> its books' resyncs) with when it started,
        its batch times (`latency_ms`: a `LATENCY_FIELDS` name -> ms, None before its first batch) and more
        `mt:meta` fields (the drift of its books, `drift:<venue>:<symbol>`): one HSET of absolute values,
        so a heartbeat repeated after an outage counts nothing twice, and a reader finds each count with
        the heartbeat time it was taken at. Returns the model spec operators want served (`mt:control`),
        read in the same round trip; None when none is set."""
        fields = {f"heartbeat:{worker_id}": str(time.time_ns() if now_ns is None else now_ns)}
        if skipped is not None:
            fields[f"skipped:{worker_id}"] = str(skipped)
        if started_ns is not None:
            fields[STARTED_FIELD.format(worker=worker_id)] = str(started_ns)
        for venue, (messages, records) in (counts or {}).items():
            fields[MESSAGES_FIELD.format(worker=worker_id, venue=venue)] = str(messages)
            fields[RECORDS_FIELD.format(worker=worker_id, venue=venue)] = str(records)
        for (venue, reason), n in (dlq or {}).items():
            fields[DLQ_FIELD.format(worker=worker_id, venue=venue, reason=reason)] = str(n)
        for venue, n in (resyncs or {}).items():
            fields[RESYNCS_FIELD.format(worker=worker_id, venue=venue)] = str(n)
        for name, ms in (latency_ms or {}).items():
            fields[f"{name}:{worker_id}"] = "" if ms is None else f"{ms:.3f}"
        if meta:
            fields.update(meta)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(META, mapping=fields)
        pipe.hget(CONTROL, WANTED_MODEL)
        _, wanted = pipe.execute()
        return wanted.decode() if wanted else None

    def wanted_model(self) -> str | None:
        """The model spec operators want served (`mt:control`), None when none is set."""
        wanted = self.redis.hget(CONTROL, WANTED_MODEL)
        return wanted.decode() if wanted else None

    def want_model(self, spec: str | None) -> None:
        """Ask every worker to serve `spec` from now on (None: each its own `--model` again)."""
        if spec is None:
            self.redis.hdel(CONTROL, WANTED_MODEL)
        else:
            self.redis.hset(CONTROL, WANTED_MODEL, spec)
