"""A Nornir processor that draws one progress bar over the probes of a ``portscan`` run.

    >>> from nornir_portscan.nornir.processors import ProgressBar
    >>> nr.with_processors([ProgressBar()]).run(task=portscan, ports="top100")  # doctest: +SKIP

The ``portscan`` task finds the processor among the run's processors and passes it to the engine
as the progress callback, so the bar counts probes of the whole run, not hosts.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from nornir_portscan.models import Progress

if TYPE_CHECKING:
    from nornir.core.inventory import Host
    from nornir.core.task import AggregatedResult, MultiResult, Task

__all__ = ["ProgressBar"]


class ProgressBar:
    """Draws ``portscan [#####.....]  50%  500/1000 probes  1.2 s`` on a terminal.

    Args:
        stream: Where to draw; ``None`` means ``sys.stderr`` at the time of drawing.
        force: Draw even when the stream is not a terminal: then a line per 10 % done.
        width: Characters of the bar itself.
    """

    def __init__(
        self, stream: TextIO | None = None, *, force: bool = False, width: int = 30
    ) -> None:
        self.stream = stream
        self.force = force
        self.width = width
        self._open = False  # a line is drawn and not yet ended
        self._decile = -1  # the last 10 % step written to a stream that is not a terminal
        self._elapsed = 0.0  # of the last update: it goes back when a new scan starts

    def __call__(self, progress: Progress) -> None:
        """The engine's progress callback."""
        stream = self.stream or sys.stderr
        tty = stream.isatty()
        if not (tty or self.force):
            return
        fraction = progress.done / progress.total if progress.total else 1.0
        filled = round(fraction * self.width)
        line = (
            f"portscan [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%}  "
            f"{progress.done}/{progress.total} probes  {progress.elapsed:.1f} s"
        )
        finished = progress.done >= progress.total
        if progress.elapsed < self._elapsed:
            self._decile = -1
        self._elapsed = progress.elapsed
        if tty:
            stream.write("\r" + line + ("\n" if finished else ""))
            self._open = not finished
        elif int(fraction * 10) != self._decile:
            stream.write(line + "\n")
            self._decile = int(fraction * 10)
        stream.flush()

    # -- the Nornir processor interface ------------------------------------------------------
    def task_started(self, task: Task) -> None:
        """Nothing to do: the bar appears with the first probes."""

    def task_completed(self, task: Task, result: AggregatedResult) -> None:  # noqa: ARG002
        """End a bar left open (an interrupted scan)."""
        if self._open:
            (self.stream or sys.stderr).write("\n")
            self._open = False

    def task_instance_started(self, task: Task, host: Host) -> None:
        """Hosts are not counted: the bar counts probes."""

    def task_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        """Hosts are not counted: the bar counts probes."""

    def subtask_instance_started(self, task: Task, host: Host) -> None:
        """Subtasks are not counted."""

    def subtask_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        """Subtasks are not counted."""
