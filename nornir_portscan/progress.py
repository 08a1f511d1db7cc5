"""A progress bar on a terminal: the engine's progress callback (the CLI's bar, and the one the
Nornir ``ProgressBar`` processor draws)."""

from __future__ import annotations

import contextlib
import sys
from typing import TextIO

from nornir_portscan.models import Progress

__all__ = ["ProgressBar"]


class ProgressBar:
    """Draws ``portscan [#####.....]  50%  500/1000 probes  812/s  ETA 0.6 s`` on a terminal.

    Args:
        stream: Where to draw; ``None`` means ``sys.stderr`` at the time of drawing.
        force: Draw even when the stream is not a terminal: then a line per 10 % done.
        width: Characters of the bar itself.
        unit: What ``Progress.done`` counts.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        force: bool = False,
        width: int = 30,
        unit: str = "probes",
    ) -> None:
        self.stream = stream
        self.force = force
        self.width = width
        self.unit = unit
        self._open = False  # a line is drawn and not yet ended
        self._decile = -1  # the last 10 % step written to a stream that is not a terminal
        self._elapsed = 0.0  # of the last update: it goes back when a new scan starts
        self._gone = False  # the stream failed (a terminal hung up): draw no more

    def __call__(self, progress: Progress) -> None:
        """The engine's progress callback."""
        if self._gone:
            return
        try:
            self._draw(progress)
        except (OSError, ValueError):  # a hung-up terminal, a closed stream: not the scan's end
            self._gone = True

    def _draw(self, progress: Progress) -> None:
        stream = self.stream or sys.stderr
        tty = stream.isatty()
        if not (tty or self.force):
            return
        done, total, elapsed = progress.done, progress.total, progress.elapsed
        fraction = done / total if total else 1.0
        filled = round(fraction * self.width)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f"  ETA {(total - done) / rate:.1f} s" if rate > 0 and done < total else ""
        line = (
            f"portscan [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%}  "
            f"{done}/{total} {self.unit}  {rate:,.0f}/s  {elapsed:.1f} s{eta}"
        )
        finished = done >= total
        if elapsed < self._elapsed:
            self._decile = -1
        self._elapsed = elapsed
        if tty:
            stream.write("\r\033[K" + line + ("\n" if finished else ""))
            self._open = not finished
        elif int(fraction * 10) != self._decile:
            stream.write(line + "\n")
            self._decile = int(fraction * 10)
        stream.flush()

    def end(self) -> None:
        """End a line left open (an interrupted scan)."""
        if self._open and not self._gone:
            self._open = False
            with contextlib.suppress(OSError, ValueError):
                (self.stream or sys.stderr).write("\n")
