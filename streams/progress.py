"""Progress bars of the long-running verbs, on stderr so that stdout stays clean for pipes.

On a terminal: tqdm's bar, redrawn in place. Elsewhere (a log file, a pipe, a test's capture, a CI
job): the same bar text as a line every `LOG_INTERVAL_S` seconds, first and last line included, so
that a log shows the total at once and where the run stands, instead of nothing (tqdm's own
non-terminal default, `disable=None`) or a line of carriage returns. `TQDM_DISABLE=1` silences both.

A capture file's reader (orderbook/venues) takes a path and yields records: it says nothing of
how far in the file it is, and counting the messages first costs a second pass over a file that
may be gigabytes of gzip. `follow_files` therefore gives a bar the files' sizes in bytes as its
total and advances it from the reader's own file descriptor, found by the file's identity and read
with `lseek(fd, 0, SEEK_CUR)` (for a gzipped file: the compressed bytes read), from a thread that
polls a few times a second: nothing is added to the reading loop.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL_S = 10.0  # seconds between lines where stderr is no terminal
POLL_S = 0.25  # how often follow_files reads the reader's position
_FD_DIRS = ("/proc/self/fd", "/dev/fd")  # Linux, then macOS/BSD


class _Lines:
    """A file for tqdm off a terminal: each redraw (`\\r` + text + padding) becomes one line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, s: str) -> int:
        text = s.replace("\r", "").rstrip()
        if text:
            self.out.write(text + "\n")
        return len(s)

    def flush(self) -> None:
        self.out.flush()


def progress_bar(total: float | None = None, unit: str = "it", desc: str = "", **kw: Any) -> tqdm:
    """A tqdm bar on stderr (module docstring): redrawn on a terminal, a line per LOG_INTERVAL_S elsewhere."""
    if kw.get("disable") is False:
        del kw["disable"]  # an explicit False would override TQDM_DISABLE (tqdm's env sets defaults only)
    err = sys.stderr
    if err.isatty():
        return tqdm(total=total, unit=unit, desc=desc, file=err, **kw)
    kw.setdefault("mininterval", LOG_INTERVAL_S)
    kw.setdefault("ncols", 100)  # no terminal to measure; 100 columns keep the bar readable in a log
    return tqdm(total=total, unit=unit, desc=desc, file=_Lines(err), **kw)


class FilePosition:
    """How far a reader of `paths` (read one after the other) is, in bytes of the files on disk:
    the sizes of the files before the one open plus that one's descriptor's offset."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        stats = [os.stat(p) for p in paths]
        self.ids = [(s.st_dev, s.st_ino) for s in stats]
        self.sizes = [s.st_size for s in stats]
        self.total = sum(self.sizes)
        self._fd: int | None = None
        self._index = 0
        self._last = 0

    def __call__(self) -> int:
        """Bytes read so far, never less than at the last call (a descriptor between two files reads as
        the last position seen)."""
        pos = self._offset(self._fd, self._index) if self._fd is not None else None
        if pos is None:
            self._fd = None
            for fd in _open_fds():
                pos = self._offset(fd, None)
                if pos is not None:
                    self._fd = fd
                    break
        if pos is not None:
            self._last = max(self._last, min(pos, self.total))
        return self._last

    def finished(self) -> None:
        """The reader ran to the end of the last file (its descriptor is closed by now, so say so)."""
        self._last = self.total

    def _offset(self, fd: int, index: int | None) -> int | None:
        """`fd`'s offset counted from the first file's start, if `fd` is one of `paths` (and is the
        `index`-th one, when given); None otherwise or once closed."""
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if ident not in self.ids or (index is not None and self.ids[index] != ident):
                return None
            i = self.ids.index(ident) if index is None else index
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        except OSError:  # closed meanwhile, or not seekable
            return None
        self._index = i
        return sum(self.sizes[:i]) + offset


def _open_fds() -> list[int]:
    for folder in _FD_DIRS:
        with contextlib.suppress(OSError):
            return sorted(int(name) for name in os.listdir(folder) if name.isdigit())
    return []


@contextlib.contextmanager
def follow_files(
    paths: Sequence[str | Path], desc: str, postfix: Callable[[], str] | None = None, disable: bool = False
) -> Iterator[FilePosition]:
    """A bar of the bytes of `paths` (their sizes: its total) that a reader of them, run in the block,
    has read, with `postfix()` beside it (e.g. the messages sent). The block calls the position's
    `finished()` once the reader has reached the end (the descriptor is gone by then)."""
    position = FilePosition(paths)
    with progress_bar(position.total, unit="B", desc=desc, unit_scale=True, unit_divisor=1024, disable=disable) as bar:
        if bar.disable:
            yield position
            return
        stop = threading.Event()

        def update() -> None:
            bar.update(position() - bar.n)
            if postfix is not None:
                bar.set_postfix_str(postfix(), refresh=False)

        def poll() -> None:
            while not stop.wait(POLL_S):
                update()

        thread = threading.Thread(target=poll, name="progress", daemon=True)
        thread.start()
        try:
            yield position
        finally:
            stop.set()
            thread.join()
            update()
