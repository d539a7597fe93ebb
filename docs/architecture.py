"""Draws docs/architecture.png, the picture of docs/design.md: `.venv/bin/python docs/architecture.py`.

Kafka topics in, one `megatrading worker` (the per-partition pipeline, coloured by the thread each
step runs in), Redis and the output topics, the readers. Coordinates are in inches of a 14 x 8.6 inch
figure, so a box's place can be read off the code; the text is sized to stay legible when the PNG is
shown 1200 px wide.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: the script only writes a file

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

OUT = Path(__file__).with_name("architecture.png")
WIDTH, HEIGHT = 14.0, 8.6

# One colour per thread of the worker, and one per outside system.
EVENT_LOOP = "#dbe8f8"
MODEL_THREAD = "#fde3c8"
IO_THREAD = "#d9f0d3"
STATE_THREAD = "#e6dcf2"
NEWS_THREAD = "#eeeeee"
KAFKA = "#fff4bf"
REDIS = "#f9d3d3"
READER = "#ffffff"
GROUP = "#fafafa"


def box(ax: Axes, x: float, y: float, w: float, h: float, text: str, color: str, *, size: float = 9.5,
        weight: str = "normal", align: str = "center", edge: str = "#444444") -> None:  # fmt: skip
    """A rounded box with its lower-left corner at (x, y) and its text centred (or left-aligned)."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=color,
                                edgecolor=edge, linewidth=1.0))  # fmt: skip
    tx = x + w / 2 if align == "center" else x + 0.1
    ax.text(tx, y + h / 2, text, ha=align, va="center", fontsize=size, fontweight=weight, linespacing=1.25)


def group(ax: Axes, x: float, y: float, w: float, h: float, title: str) -> None:
    """A frame around related boxes, its title at the top left."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", facecolor=GROUP,
                                edgecolor="#888888", linewidth=1.2, linestyle="--"))  # fmt: skip
    ax.text(x + 0.12, y + h - 0.12, title, ha="left", va="top", fontsize=11.5, fontweight="bold")


def arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], label: str = "", *,
          label_at: tuple[float, float] | None = None, rad: float = 0.0) -> None:  # fmt: skip
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=13, linewidth=1.3, color="#333333",
                                 connectionstyle=f"arc3,rad={rad}",
                                 shrinkA=2, shrinkB=2))  # fmt: skip
    if label:
        lx, ly = label_at or ((start[0] + end[0]) / 2 + 0.06, (start[1] + end[1]) / 2)
        ax.text(lx, ly, label, ha="left", va="center", fontsize=8.5, style="italic", color="#222222")


def polyline_arrow(ax: Axes, points: list[tuple[float, float]]) -> None:
    """An arrow along right-angled segments: the last segment carries the head."""
    xs, ys = zip(*points[:-1], strict=True)
    ax.plot(xs, ys, color="#333333", linewidth=1.3, solid_capstyle="butt")
    arrow(ax, points[-2], points[-1])


def draw() -> plt.Figure:
    fig = plt.figure(figsize=(WIDTH, HEIGHT))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.axis("off")

    ax.text(0.2, 8.42, "Mega-Trading: one raw record's path, from Kafka to Redis and md.forecasts",
            fontsize=14, fontweight="bold", va="center")  # fmt: skip

    # ---- producers and the input topics
    box(ax, 0.3, 7.05, 2.45, 0.95, "producers: megatrading\nreplay, simulate --kafka,\nvenue feed handlers",
        READER, size=9)  # fmt: skip
    group(ax, 0.15, 2.75, 2.75, 4.1, "Kafka: input")
    box(ax, 0.3, 5.3, 2.45, 1.15,
        "md.raw.<venue>: lobster,\nitch, binance, coinbase,\nkraken; key: symbol,\nvalue: the venue's bytes",
        KAFKA, size=9)  # fmt: skip
    box(ax, 0.3, 4.1, 2.45, 0.95, "md.state (compacted):\nthe snapshot the commit\nnames, read on a restore",
        KAFKA, size=9)  # fmt: skip
    box(ax, 0.3, 2.9, 2.45, 0.95, "md.news: JSON {ts,\nsymbols, headline,\nsource}; key: symbol", KAFKA, size=9)
    arrow(ax, (1.5, 7.05), (1.5, 6.47))
    polyline_arrow(ax, [(0.3, 7.5), (0.07, 7.5), (0.07, 3.4), (0.3, 3.4)])

    # ---- the worker
    group(ax, 3.2, 0.2, 5.95, 7.85, "megatrading worker (Faust app, one process)")
    cx, cw = 5.2, 3.75  # the per-partition chain
    chain = [
        (7.1, 0.6, "Faust's consumer, fetches handed whole\n(delivery.py) to the venue's Inbox", EVENT_LOOP),
        (6.25, 0.6, "Partition.handle, one per source partition,\nunder its lock; VenuePipeline.process", EVENT_LOOP),
        (5.2, 0.8, "decode + the venue's sync procedure\n(orderbook/venues/<venue>.py) -> Events;\n"
         "a rejected record -> md.dlq", EVENT_LOOP),
        (4.5, 0.45, "order book per symbol (L2Book / L3Book)", EVENT_LOOP),
        (3.8, 0.45, "features: FeatureState, one row a message", EVENT_LOOP),
        (2.95, 0.6, "windows: WindowBuilder (VenueWindows),\none Window every 32 event tokens", EVENT_LOOP),
        (1.97, 0.72, "MicroBatcher: windows of all partitions, <= 256\nor 5 ms -> Forecaster.forecast: predictions\n"
         "and the reasons of alerts", MODEL_THREAD),
        (1.17, 0.55, "records -> Redis first: RedisSink.write,\none round trip, a Lua script a forecast", IO_THREAD),
        (0.3, 0.72, "then PartitionCommitter, one Kafka transaction:\nforecasts, rejects, now and then a snapshot,\n"
         "and the partition's offset commit", EVENT_LOOP),
    ]  # fmt: skip
    for y, h, text, color in chain:
        box(ax, cx, y, cw, h, text, color, size=9)
    for (y_top, _, _, _), (y_next, h_next, _, _) in pairwise(chain):
        arrow(ax, (cx + cw / 2, y_top), (cx + cw / 2, y_next + h_next))

    sx, sw = 3.35, 1.65  # what runs beside the chain
    box(ax, sx, 4.7, sw, 1.35,
        "restore of a newly\ngiven partition:\nfence, snapshot,\nreplay to the\ncommitted offset",
        STATE_THREAD, size=9)  # fmt: skip
    arrow(ax, (sx + sw, 5.9), (cx, 6.4))
    box(ax, sx, 2.65, sw, 1.4,
        "NewsListener\n(a thread) reads all\nof md.news outside\nthe group; add_news\nto every partition",
        NEWS_THREAD, size=9)  # fmt: skip
    arrow(ax, (sx + sw, 3.25), (cx, 3.25))
    box(ax, sx, 0.35, sw, 1.0, "state snapshot:\nevery 20,000\nrecords or 30 s", STATE_THREAD, size=9)
    arrow(ax, (sx + sw, 0.7), (cx, 0.7))

    # inputs into the worker
    arrow(ax, (2.75, 6.2), (cx, 7.4), rad=-0.1)
    arrow(ax, (2.75, 4.6), (sx, 5.2))
    arrow(ax, (2.75, 3.4), (sx, 3.4))

    ax.legend(
        handles=[Patch(facecolor=c, edgecolor="#444444", label=n) for n, c in (
            ("event loop (asyncio)", EVENT_LOOP), ("model thread", MODEL_THREAD), ("io threads (Redis)", IO_THREAD),
            ("state threads", STATE_THREAD), ("news listener thread", NEWS_THREAD), ("Kafka topic", KAFKA),
            ("Redis", REDIS))],
        loc="lower left", bbox_to_anchor=(0.2 / WIDTH, 0.25 / HEIGHT), fontsize=9, frameon=False,
        title="colours: where a step runs", title_fontsize=9.5, alignment="left",
    )  # fmt: skip

    # ---- outputs
    group(ax, 9.45, 3.95, 2.2, 4.1, "Redis")
    box(ax, 9.6, 4.1, 1.9, 3.5,
        "mt:latest:{venue}:{symbol}\nhash: the newest\n\nmt:hist:{venue}:{symbol}\nstream: every forecast\n\n"
        "mt:alerts  stream\n\nmt:forecasts  pub/sub\n\nmt:meta  hash: model,\nschema, heartbeats",
        REDIS, size=8.5, align="left")  # fmt: skip
    group(ax, 9.45, 0.2, 2.2, 3.45, "Kafka: output")
    box(ax, 9.6, 0.35, 1.9, 2.85,
        "md.forecasts\nmsgpack, key: symbol\n\nmd.dlq  rejects,\nheaders with reason\n\nmd.state  snapshot\n\n"
        "offset commit, its\nmetadata state=<p>@<o>",
        KAFKA, size=8.5, align="left")  # fmt: skip
    polyline_arrow(ax, [(cx + cw, 1.47), (9.3, 1.47), (9.3, 4.6), (9.6, 4.6)])
    arrow(ax, (cx + cw, 0.66), (9.6, 0.66))

    # ---- readers
    group(ax, 11.95, 0.2, 1.95, 7.85, "Readers")
    box(ax, 12.05, 6.25, 1.75, 1.3, "megatrading\nforecasts latest |\nhistory | watch |\nalerts", READER, size=9)
    box(ax, 12.05, 4.45, 1.75, 1.45,
        "ForecastClient\n(Python): notebooks,\nan execution desk\nbefore it routes", READER, size=9)  # fmt: skip
    box(ax, 12.05, 2.7, 1.75, 1.4, "surveillance:\nmt:alerts stream,\nthe alert's reason", READER, size=9)
    box(ax, 12.05, 0.45, 1.75, 1.75,
        "Kafka consumers\nisolation_level=\nread_committed:\neach forecast once,\nin its book's order",
        READER, size=9)  # fmt: skip
    arrow(ax, (11.5, 6.9), (12.05, 6.9))
    arrow(ax, (11.5, 5.2), (12.05, 5.2))
    arrow(ax, (11.5, 4.5), (12.05, 3.4))
    arrow(ax, (11.5, 2.6), (12.05, 1.3))
    return fig


def main() -> None:
    fig = draw()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
