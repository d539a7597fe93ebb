"""A text table for the benchmarks' printouts: each column as wide as its widest cell."""

from __future__ import annotations

from collections.abc import Container, Sequence


def print_columns(head: Sequence[str], rows: Sequence[Sequence[str]], left: Container[int] = (0,)) -> None:
    """The head, a rule, then the rows; columns in `left` left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for cells in [head, tuple("-" * w for w in widths), *rows]:
        cols = (c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        print("  ".join(cols).rstrip())
