"""A Nornir runner plugin that runs each host's task in a process of a ``multiprocessing`` pool:
the task and the host are pickled to a fresh interpreter (``spawn``), and the results pickled
back. It shows that the task keeps no state a host's call would need from another call.

Also the grouped task the process runner tests use; it must be importable by the children.
"""

from __future__ import annotations

import multiprocessing
import socket
from typing import Any

from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, MultiResult, Task

from nornir_portscan.nornir.tasks import portscan


def _start(job: tuple[Task, Host]) -> MultiResult:
    task, host = job
    return task.start(host)


class ProcessRunner:
    """Run every host's task in a pool of ``num_workers`` spawned processes."""

    def __init__(self, num_workers: int = 4) -> None:
        self.num_workers = num_workers

    def run(self, task: Task, hosts: list[Host]) -> AggregatedResult:
        result = AggregatedResult(task.name)
        with multiprocessing.get_context("spawn").Pool(self.num_workers) as pool:
            for multi in pool.map(_start, [(task.copy(), host) for host in hosts]):
                result[multi.host.name] = multi
        return result


def open_then_close(task: Task, port: int, **settings: Any) -> None:
    """In the child: listen on the host's address, check it is open, close it, check it is
    closed; each check is a ``portscan`` of this host, now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((task.host.hostname, port))
        sock.listen(16)
        task.run(task=portscan, name="pre", ports=str(port), expect_open=str(port), **settings)
    task.run(task=portscan, name="post", ports=str(port), expect_closed=str(port), **settings)
