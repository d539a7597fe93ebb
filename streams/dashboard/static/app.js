// The dashboard page: the book picker, the charts (uPlot, vendored), the alerts and the health panel.
// Everything shown comes from the server's JSON API (Redis as it is) and its live feed (mt:forecasts).
"use strict";

const MAX_POINTS = 3000; // points kept per chart: older ones scroll out
const $ = (id) => document.getElementById(id);

const state = {
  book: null,        // {venue, symbol}
  points: [],        // the selected book's points, oldest first
  pending: null,     // live points that came while the book's history was loading
  loads: 0,          // loads of the book started: only the newest one is shown
  charts: {},
  live: 0,
  redraw: false,
  alertsDue: false,
  alertShown: 0,     // clicks on alerts: only the newest one's detail is drawn
  levels: null,      // the selected book's /api/levels, as last read
};

// ---- formatting: times are UTC from the exchange timestamps; ITCH/LOBSTER stamps are time of day
function fmtTime(t) {
  if (t == null) return "-";
  const iso = new Date(t * 1000).toISOString();
  const clock = iso.slice(11, 23) + " UTC";
  return t > 86400 * 365 ? iso.slice(0, 10) + " " + clock : clock;
}
// axis ticks: the clock alone (a capture or a simulated day spans hours, not days)
const axisTime = (u, splits) => splits.map((t) => new Date(t * 1000).toISOString().slice(11, 19));
const fmtScore = (x) => (x == null ? "-" : x.toFixed(4));
const fmtNum = (x, d = 2) => (x == null ? "-" : Number(x).toLocaleString("en-US", { maximumFractionDigits: d }));
const bookKey = (b) => b.venue + ":" + b.symbol;
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text()));
  return r.json();
}

// ---- charts
// a flat series (a quiet book's mid) gets a narrow range around it, not one from zero
function narrow(u, lo, hi) {
  const pad = hi > lo ? (hi - lo) * 0.1 : Math.max(Math.abs(hi) * 0.05, 1e-9);
  return [lo - pad, hi + pad];
}
const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
const alertDots = { stroke: "#d32f2f", fill: "#d32f2f", paths: () => null, points: { show: true, size: 8 } };

function bandSeries(label, color) {
  return [
    { label: label + " q10", stroke: color + "55", width: 1 },
    { label: label + " q50", stroke: color, width: 1, dash: [4, 4] },
    { label: label + " q90", stroke: color + "55", width: 1 },
  ];
}

function makeChart(id, title, unit, series, bands) {
  const target = $(id);
  const opts = {
    title, width: Math.max(300, target.clientWidth || 600), height: 190, tzDate: utc,
    axes: [{ values: axisTime, label: "UTC" }, { label: unit, size: 70, values: (u, s) => s.map((v) => fmtNum(v, 6)) }],
    scales: { x: { time: true }, y: { range: narrow } },
    series: [{ label: "time (UTC)", value: (u, v) => fmtTime(v) }, ...series],
    bands: bands || [],
    cursor: { drag: { x: true, y: false } },
  };
  return new uPlot(opts, Array.from({ length: series.length + 1 }, () => []), target);
}

function buildCharts(units) {
  for (const k of ["mid", "spread", "depth", "score"]) if (state.charts[k]) state.charts[k].destroy();
  const price = units.price.split(" (")[0];
  Object.assign(state.charts, {
    mid: makeChart("chart-mid", "mid", price,
      [{ label: "mid", stroke: "#1d2330", width: 1.5 }, ...bandSeries("mid", "#1565c0"), { label: "alert", ...alertDots }],
      [{ series: [4, 2], fill: "#1565c022" }]),
    spread: makeChart("chart-spread", "spread", price,
      [{ label: "spread", stroke: "#1d2330", width: 1.5 }, ...bandSeries("spread", "#2e7d32")],
      [{ series: [4, 2], fill: "#2e7d3222" }]),
    depth: makeChart("chart-depth", "top-5 depth", units.size, bandSeries("depth", "#6a1b9a"),
      [{ series: [3, 1], fill: "#6a1b9a22" }]),
    score: makeChart("chart-score", "anomaly score", "0..1",
      [{ label: "score", stroke: "#c77700", width: 1 }, { label: "alert", ...alertDots }]),
  });
}

// the forecast made at the previous point, drawn where it is checked (streams/dashboard/views.py)
const prior = (p, field) => p.map((x, i) => (i ? p[i - 1][field] : null));
const band = (p, name) => [10, 50, 90].map((q) => prior(p, `fc_${name}_q${q}`));

function draw() {
  const p = state.points;
  const c = state.charts;
  if (!c.mid) return;
  const t = p.map((x) => x.t);
  const alerts = (f) => p.map((x) => (x.reason !== "" ? x[f] : null));
  c.mid.setData([t, p.map((x) => x.mid), ...band(p, "mid"), alerts("mid")]);
  c.spread.setData([t, p.map((x) => x.spread_px), ...band(p, "spread")]);
  c.depth.setData([t, ...band(p, "depth")]);
  c.score.setData([t, p.map((x) => x.score), alerts("score")]);
}

function scheduleDraw() {
  if (state.redraw) return;
  state.redraw = true;
  requestAnimationFrame(() => { state.redraw = false; draw(); });
}

// ---- the selected book: "now" and its series
function showNow(x) {
  $("now-book").textContent = x.venue + ":" + x.symbol;
  $("now-bid").textContent = x.bid ?? "-";
  $("now-ask").textContent = x.ask ?? "-";
  $("now-mid").textContent = x.mid_text ?? "-";
  $("now-spread").textContent = x.spread ?? "-";
  $("now-spread-ticks").textContent = x.spread_ticks == null ? "" : fmtNum(x.spread_ticks) + (x.spread_ticks === 1 ? " tick" : " ticks");
  $("now-score").textContent = fmtScore(x.score);
  $("now-window").textContent = x.window;
  $("now-time").textContent = fmtTime(x.t);
  $("model").textContent = x.model;
  showLevelsState();
}

// ---- the selected book's levels: mt:book, as its worker last published them (once a batch)
async function refreshLevels() {
  const b = state.book;
  if (!b) return;
  const d = await getJSON(`/api/levels?venue=${encodeURIComponent(b.venue)}&symbol=${encodeURIComponent(b.symbol)}`);
  if (state.book !== b) return; // another book was picked meanwhile
  state.levels = d;
  const rows = (side) => (d.published ? d[side] : []).map((l) => cells(el("tr"), [l.price, l.size, l.cum]));
  $("ladder-bids").tBodies[0].replaceChildren(...rows("bids"));
  $("ladder-asks").tBodies[0].replaceChildren(...rows("asks"));
  $("ladder").dataset.window = d.published ? d.window : "";
  showLevelsState();
}

// against the forecast shown now: called again whenever that changes (the live feed, a load)
function showLevelsState() {
  const d = state.levels;
  const s = $("ladder-state");
  if (!d || !state.book || d.venue !== state.book.venue || d.symbol !== state.book.symbol) {
    s.textContent = "-";
    s.className = "";
    return;
  }
  if (!d.published) {
    s.textContent = `no levels published (${d.key})`;
    s.className = "missing";
    return;
  }
  // the levels are read where a batch ends: at the newest forecast's window, or tokens after it
  const shown = Number($("now-window").textContent);
  const after = Number.isFinite(shown) && d.window > shown ? `, ${d.window - shown} tokens after the forecast shown` : "";
  s.textContent = `book at ${d.time} (window ${d.window}, seq ${d.seq}${after}); written ${fmtNum(d.age_s, 1)} s ago`;
  s.className = d.age_s > 10 ? "stale" : "";
}

async function loadBook() {
  const b = state.book;
  if (!b) return;
  const load = ++state.loads;
  const pending = (state.pending = []);
  const data = await getJSON(`/api/book?venue=${encodeURIComponent(b.venue)}&symbol=${encodeURIComponent(b.symbol)}&count=${MAX_POINTS}`);
  if (load !== state.loads) return; // a newer load (another book, a reconnect) replaces this one
  const u = data.units;
  $("units").textContent = `Prices in ${u.price}; tick ${u.tick}; depth in ${u.size}; times ${u.time}.`;
  buildCharts(u);
  state.points = data.series;
  let latest = data.latest;
  const last = state.points.length ? state.points[state.points.length - 1].window : -1;
  for (const x of pending) {
    if (x.window > last && x.window > latest.window) { state.points.push(x); latest = x; }
  }
  state.pending = null;
  showNow(latest);
  draw();
}

function onLive(points) {
  state.live += points.length;
  $("live-count").textContent = state.live;
  const b = state.book;
  for (const x of points) {
    if (x.reason !== "") state.alertsDue = true;
    if (!b || x.venue !== b.venue || x.symbol !== b.symbol) continue;
    if (state.pending) { state.pending.push(x); continue; }
    const last = state.points.length ? state.points[state.points.length - 1].window : -1;
    if (x.window <= last) continue; // already drawn from the history
    state.points.push(x);
    showNow(x);
  }
  if (state.points.length > MAX_POINTS) state.points.splice(0, state.points.length - MAX_POINTS);
  scheduleDraw();
}

function connect() {
  const es = new EventSource("/api/stream");
  es.addEventListener("hello", () => {
    $("live").textContent = "live";
    $("live").className = "live on";
    loadBook().catch(console.error); // after subscribing: nothing falls between the history and the feed
  });
  es.addEventListener("forecasts", (e) => onLive(JSON.parse(e.data)));
  es.addEventListener("reload", () => loadBook().catch(console.error));
  es.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "live off"; };
}

// ---- the book picker
async function refreshBooks() {
  const books = await getJSON("/api/books");
  const sel = $("symbol");
  const have = new Set([...sel.options].map((o) => o.value));
  for (const b of books) {
    if (!have.has(bookKey(b))) sel.append(el("option", { value: bookKey(b) }, bookKey(b)));
  }
  if (!state.book && books.length) {
    const wanted = decodeURIComponent(location.hash.slice(1));
    const b = books.find((x) => bookKey(x) === wanted) || books[0];
    sel.value = bookKey(b);
    selectBook(b);
  }
}

function selectBook(b) {
  state.book = b;
  state.points = [];
  location.hash = bookKey(b);
  loadBook().catch(console.error);
  refreshLevels().catch(console.error);
}

// ---- alerts
async function refreshAlerts() {
  state.alertsDue = false;
  const data = await getJSON("/api/alerts?count=50");
  $("alert-total").textContent = data.total;
  const list = $("alerts-list");
  const selected = list.querySelector("li.selected")?.dataset.id;
  list.replaceChildren(...data.alerts.map((a) => {
    const li = el("li", { "data-id": a.id, "data-window": a.window, title: a.reason },
      fmtTime(a.t) + " ", el("b", {}, a.venue + ":" + a.symbol), " ",
      el("span", { class: "score" }, fmtScore(a.score)), " " + a.reason.slice(0, 70) + (a.reason.length > 70 ? "..." : ""));
    if (a.id === selected) li.classList.add("selected");
    li.onclick = () => showAlert(a.id, li);
    return li;
  }));
}

async function showAlert(id, li) {
  for (const x of $("alerts-list").querySelectorAll("li.selected")) x.classList.remove("selected");
  li.classList.add("selected");
  const shown = ++state.alertShown; // a later click replaces this one, whichever answer comes first
  const d = await getJSON("/api/alert/" + encodeURIComponent(id));
  if (shown !== state.alertShown) return;
  const a = d.alert;
  const box = $("alert-detail");
  box.hidden = false;
  box.dataset.id = a.id;
  box.dataset.windows = d.series.map((x) => x.window).join(",");
  $("detail-book").textContent = a.venue + ":" + a.symbol;
  $("detail-window").textContent = a.window;
  $("detail-score").textContent = fmtScore(a.score);
  $("detail-seq").textContent = a.seq;
  $("detail-time").textContent = fmtTime(a.t);
  $("detail-reason").textContent = a.reason || "(no reason recorded)";
  // the reason names its event span in exchange nanoseconds: the same span as a clock, beside it
  const span = /(\d{6,})\.\.(\d{6,}) ns/.exec(a.reason);
  $("detail-span").textContent = span ? "events " + fmtTime(Number(span[1]) / 1e9) + " to " + fmtTime(Number(span[2]) / 1e9) : "";
  for (const k of ["detail", "detailScore"]) if (state.charts[k]) state.charts[k].destroy();
  const p = d.series;
  const chart = makeChart("chart-detail", "the book around the alert", d.units.price.split(" (")[0],
    [{ label: "mid", stroke: "#1d2330", width: 1.5 }, ...bandSeries("mid", "#1565c0"),
     { label: "this alert", ...alertDots, points: { show: true, size: 11 } }],
    [{ series: [4, 2], fill: "#1565c022" }]);
  chart.setData([p.map((x) => x.t), p.map((x) => x.mid), ...band(p, "mid"),
    p.map((x) => (x.window === a.window ? x.mid : null))]);
  state.charts.detail = chart;
  const scores = makeChart("chart-detail-score", "its anomaly score", "0..1",
    [{ label: "score", stroke: "#c77700", width: 1 }, { label: "this alert", ...alertDots, points: { show: true, size: 11 } }]);
  scores.setData([p.map((x) => x.t), p.map((x) => x.score), p.map((x) => (x.window === a.window ? x.score : null))]);
  state.charts.detailScore = scores;
  await showWindow(a, shown);
}

// the alert's own window (mt:window:...): its events, its book series, the most surprising event, the drivers
async function showWindow(a, shown) {
  const box = $("window-detail");
  box.hidden = true;
  $("window-state").className = "note";
  $("window-state").textContent = "reading its window from Redis...";
  if (state.charts.window) { state.charts.window.destroy(); delete state.charts.window; }
  const url = `/api/window?venue=${encodeURIComponent(a.venue)}&symbol=${encodeURIComponent(a.symbol)}&window=${a.window}`;
  const r = await fetch(url);
  if (shown !== state.alertShown) return;
  const stateLine = $("window-state");
  if (r.status === 404) {
    stateLine.textContent = await r.text();
    stateLine.className = "note missing";
    $("window-events").tBodies[0].replaceChildren();
    return;
  }
  if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text()));
  const w = await r.json();
  if (shown !== state.alertShown) return;
  stateLine.className = "note";
  stateLine.textContent = `${w.events.length} events from ${w.span[0]} to ${w.span[1]} (times: the venue's clock or UTC); ` +
    `from Redis ${w.key}` + (w.ttl_s > 0 ? `, kept ${fmtNum(w.ttl_s / 3600, 1)} h more` : "");
  const s = w.surprising;
  const ev = s ? w.events[s.event] : null;
  $("window-surprising").textContent = ev
    ? `most surprising event: #${ev.i} ${ev.kind} ${ev.side} ${ev.price_ticks >= 0 ? "+" : ""}${ev.price_ticks} ticks size ${ev.size} (${fmtNum(s.nll, 1)} nats) at ${ev.time}`
    : "most surprising event: the model names none (" + (w.model || "its model") + " scores no single event)";
  $("window-drivers").textContent = w.drivers.length
    ? "driven by " + w.drivers.map((x) => x.feature + " " + Math.round(x.share * 100) + "%").join(", ")
    : "drivers: the model gives none (its reason above says why)";
  $("window-events").dataset.surprising = s ? s.event : "";
  $("window-events").tBodies[0].replaceChildren(...w.events.map((e) => {
    const tr = el("tr", { "data-i": e.i, class: s && e.i === s.event ? "surprising" : "" });
    return cells(tr, [e.i, e.time, e.kind, e.side, (e.price_ticks > 0 ? "+" : "") + e.price_ticks, fmtNum(e.size, 8)]);
  }));
  box.hidden = false;
  const marked = $("window-events").querySelector("tr.surprising");
  if (marked) { // in view inside its scrolling box, the page itself left where it is
    const scroller = marked.closest(".scroll");
    scroller.scrollTop = marked.offsetTop - scroller.clientHeight / 2;
  }
  const rows = w.series;
  if (rows.length) {
    const chart = new uPlot({
      title: "the window's book: one row per message (0: the last)", width: Math.max(300, $("chart-window").clientWidth || 600),
      height: 170, scales: { x: { time: false }, y: { range: narrow }, ticks: { range: narrow } },
      axes: [{ label: "message" }, { label: w.units.price.split(" (")[0], size: 70, values: (u, v) => v.map((x) => fmtNum(x, 6)) },
        { scale: "ticks", side: 1, label: "spread (ticks)", grid: { show: false } }],
      series: [{ label: "row" }, { label: "mid", stroke: "#1d2330", width: 1.5 },
        { label: "spread (ticks)", stroke: "#2e7d32", width: 1, scale: "ticks" }],
    }, [rows.map((x) => x.row), rows.map((x) => x.mid), rows.map((x) => x.spread_ticks)], $("chart-window"));
    state.charts.window = chart;
  }
}

// ---- health
function cells(tr, values) { for (const v of values) tr.append(el("td", {}, v)); return tr; }

async function refreshHealth() {
  const h = await getJSON("/api/health");
  $("workers").tBodies[0].replaceChildren(...h.workers.map((w) => {
    const age = w.heartbeat_age_s;
    const tr = el("tr", { "data-worker": w.id });
    cells(tr, [w.id]);
    tr.append(el("td", { class: age == null || age > 5 ? "stale" : "" }, age == null ? "none" : age.toFixed(1) + " s"));
    cells(tr, [w.model ?? "-", w.swapped === "0" ? "start" : w.swapped ? fmtTime(Number(w.swapped) / 1e9) : "-",
      w.skipped ?? "not published", w.swap_error || "-", w.device ?? "not published"]);
    tr.append(el("td", { class: "latency", "data-p50": w.model_batch_p50_ms ?? "", "data-p99": w.model_batch_p99_ms ?? "" },
      fmtLatency(w.model_batch_p50_ms, w.model_batch_p99_ms)));
    tr.append(el("td", { class: "latency", "data-p50": w.partition_batch_p50_ms ?? "", "data-p99": w.partition_batch_p99_ms ?? "" },
      fmtLatency(w.partition_batch_p50_ms, w.partition_batch_p99_ms)));
    return tr;
  }));
  if (h.deployment.model) $("model").textContent = h.deployment.model;
  const r = h.forecasts_per_s;
  $("fps").textContent = fmtNum(r.total, 1);
  $("fps-venues").textContent = "(last " + r.window_s + " s; " +
    (Object.entries(r.per_venue).map(([v, n]) => v + " " + fmtNum(n, 1)).join(", ") || "none") + ")";
  const m = h.messages_per_s;
  const venues = Object.entries(m.per_venue);
  $("mps").replaceChildren(...(venues.length ? venues.map(([v, x]) => el("span",
    { class: "mps", "data-venue": v, "data-rate": x.rate, "data-messages": x.messages },
    v + " " + (typeof x.rate === "number" ? fmtNum(x.rate, 1) : x.rate) + " ")) : ["no worker publishes its counts"]));
  $("mps-window").textContent = m.span_s == null ? "" : "(over the last " + fmtNum(m.span_s, 1) + " s of heartbeats)";
  $("mps-window").dataset.span = m.span_s ?? "";
  const rs = Object.entries(h.resyncs);
  $("resyncs").replaceChildren(...(rs.length ? rs.map(([v, n]) => el("span", { class: "resyncs", "data-venue": v, "data-resyncs": n },
    v + " " + n + " ")) : ["no live worker publishes its counts"]));
  showDeadLetters(h.dlq, h.lag.dlq);
  const lag = h.lag;
  $("lag-state").textContent = "(group " + (lag.group ?? "-") + ": " + lag.state +
    (lag.read_at ? ", read " + new Date(lag.read_at * 1000).toISOString().slice(11, 19) + " UTC" : "") + ")";
  $("lag").tBodies[0].replaceChildren(...lag.partitions.map((p) => cells(el("tr"), [p.topic, p.partition, p.end, p.committed, p.lag])));
  $("drift").tBodies[0].replaceChildren(...h.drift.map((d) => {
    const tr = el("tr");
    cells(tr, [d.venue + ":" + d.symbol]);
    tr.append(el("td", { class: "state-" + d.state }, d.state));
    return cells(tr, [d.surprise_psi ?? "null", d.surprise_level ?? "null", d.feature_psi_max ?? "null", d.feature ?? "-", d.windows ?? "-"]);
  }));
  const other = Object.entries(h.other);
  $("other-meta").tBodies[0].replaceChildren(...(other.length ? other.map(([k, v]) => cells(el("tr"), [k, v]))
    : [cells(el("tr"), ["none"])]));
}

// "" or absent: the worker has had no batch yet (or publishes no latency)
function fmtLatency(p50, p99) {
  if (p50 == null || p50 === "") return p50 === "" ? "no batch yet" : "not published";
  return fmtNum(p50, 2) + " / " + fmtNum(p99, 2) + " ms";
}

// mt:meta's dlq:<worker>:<venue>:<reason> counts, summed over the live workers: reason x venue
function showDeadLetters(d, kafka) {
  $("dlq-state").textContent = "(messages dead-lettered since each live worker started: " + d.total + "; workers " +
    (d.workers.join(", ") || "none") + (d.stale.length ? "; left out, no heartbeat for " + d.live_s + " s: " + d.stale.join(", ") : "") + ")";
  const table = $("dlq");
  table.tHead.rows[0].replaceChildren(el("th", {}, "reason"), ...d.venues.map((v) => el("th", {}, v)));
  const reasons = Object.entries(d.reasons);
  table.tBodies[0].replaceChildren(...(reasons.length ? reasons.map(([reason, per]) =>
    cells(el("tr", { "data-reason": reason }), [reason, ...d.venues.map((v) => per[v] ?? 0)]))
    : [cells(el("tr", { class: "none" }), ["none"])]));
  $("dlq-kafka").textContent = kafka == null ? "" : kafka.offsets == null ? kafka.topic + ": no such topic yet"
    : kafka.topic + " spans " + kafka.offsets + " offsets (every worker's dead letters since the topic was made, " +
      "plus one offset per transaction commit marker: at most that many messages)";
}

// ---- start
function every(ms, f) {
  const run = () => f().catch((e) => console.error(e)).finally(() => setTimeout(run, ms));
  run();
}

$("symbol").onchange = (e) => {
  const [venue, ...rest] = e.target.value.split(":");
  selectBook({ venue, symbol: rest.join(":") });
};
connect();
every(2000, refreshBooks);
every(2000, refreshHealth);
every(1000, refreshLevels);
every(1000, async () => { if (state.alertsDue || $("alert-total").textContent === "-") await refreshAlerts(); });
every(10000, refreshAlerts);
