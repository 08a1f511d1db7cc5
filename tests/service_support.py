"""What the tests of the scan service share: its workers counted, a service, threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nornir_portscan.engine import executor
from nornir_portscan.engine.service import ScanService

__all__ = ["in_threads", "poll", "running", "started", "svc"]


@pytest.fixture
def started(monkeypatch) -> list[int]:
    """The pids of the workers started during the test."""
    pids: list[int] = []
    real = executor._Worker

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self, env: Any, proc: Any = None) -> None:
            super().__init__(env, proc)
            pids.append(self.proc.pid)

    monkeypatch.setattr(executor, "_Worker", Counted)
    return pids


@pytest.fixture
def svc() -> Iterator[ScanService]:
    with ScanService(idle_timeout=0.5) as scanner:
        yield scanner


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``count`` threads released together; results (or exceptions) in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = work(i)
        except BaseException as exc:  # the test looks at it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    return results


def poll(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
