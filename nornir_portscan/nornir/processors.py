"""A Nornir processor that draws one progress bar over the hosts of a run.

    >>> from nornir_portscan.nornir.processors import ProgressBar
    >>> nr.with_processors([ProgressBar()]).run(task=portscan, ports="top100")  # doctest: +SKIP

Each host is scanned when its own task calls ``portscan``, so the bar counts hosts done of the
run's hosts.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, TextIO

from nornir_portscan.models import Progress
from nornir_portscan.progress import ProgressBar as _Bar

if TYPE_CHECKING:
    from nornir.core.inventory import Host
    from nornir.core.task import AggregatedResult, MultiResult, Task

__all__ = ["ProgressBar"]


class ProgressBar:
    """Draws ``portscan [#####.....]  50%  500/1000 hosts ...`` on a terminal.

    Args:
        stream: Where to draw; ``None`` means ``sys.stderr`` at the time of drawing.
        force: Draw even when the stream is not a terminal: then a line per 10 % done.
        width: Characters of the bar itself.
    """

    def __init__(
        self, stream: TextIO | None = None, *, force: bool = False, width: int = 30
    ) -> None:
        self._bar = _Bar(stream, force=force, width=width, unit="hosts")
        self._lock = threading.Lock()
        self._total = 0
        self._done = 0
        self._started = 0.0

    def task_started(self, task: Task) -> None:
        """A run begins: count its hosts."""
        with self._lock:
            self._total = len(task.nornir.inventory.hosts)
            self._done = 0
            self._started = time.monotonic()

    def task_completed(self, task: Task, result: AggregatedResult) -> None:  # noqa: ARG002
        """End a bar left open (an interrupted run)."""
        self._bar.end()

    def task_instance_started(self, task: Task, host: Host) -> None:
        """Counted when done."""

    def task_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:  # noqa: ARG002
        """One more host done."""
        with self._lock:
            self._done += 1
            self._bar(Progress(self._done, self._total, time.monotonic() - self._started))

    def subtask_instance_started(self, task: Task, host: Host) -> None:
        """Subtasks are not counted."""

    def subtask_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        """Subtasks are not counted."""
