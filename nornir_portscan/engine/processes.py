"""Starting worker processes, and ``WorkerPool``: workers started before the scan is known.

Only the standard library is imported here, so a front door can start a worker before it
imports the rest of the package (the CLI does, right after reading its arguments): the worker's
start-up (a fresh interpreter importing gevent) then runs on another CPU while this process
imports the pipeline and reads its targets.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import subprocess
import sys
import weakref
from collections.abc import Mapping
from pathlib import Path

__all__ = ["WorkerPool", "cpu_count", "start_worker", "worker_env"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the dir that holds the package
WORKER_COMMAND = ["-m", "nornir_portscan.engine.worker"]
"""Arguments to ``sys.executable`` that start a worker; a seam for the scheduler's unit tests."""
WORKER_PATH = "_NORNIR_PORTSCAN_WORKER_PATH"
"""The environment variable that names the directories of gevent and of what it imports, which
a worker (run without the site module) puts after the standard library."""
_GEVENT_PACKAGES = ("gevent", "greenlet", "zope")  # zope.event, zope.interface


def cpu_count() -> int:
    """The CPUs this process may run on: the default number of workers."""
    return len(os.sched_getaffinity(0)) or 1


def worker_env() -> dict[str, str]:
    """The environment of a worker: this one, with this copy of the package first, and where
    gevent is (``WORKER_PATH``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, *filter(None, [env.get("PYTHONPATH")])])
    env[WORKER_PATH] = os.pathsep.join(_gevent_dirs())
    return env


def _gevent_dirs() -> list[str]:
    """The ``sys.path`` entries that hold gevent and the packages it imports; found, not
    imported (this process never imports gevent). Not in the script's directory (or the working
    directory), which a worker never sees (-P)."""
    path = sys.path if sys.flags.safe_path else sys.path[1:]
    dirs: list[str] = []
    for name in _GEVENT_PACKAGES:
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        for location in (spec and spec.submodule_search_locations) or ():
            parent = str(Path(location).parent)
            if parent not in dirs:
                dirs.append(parent)
    return dirs


def start_worker(env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start one worker process; it waits for its ``WorkerConfig`` on stdin (it leaves when
    stdin ends). ``ScanError`` if it cannot be started."""
    try:
        return subprocess.Popen(
            # -P: never the caller's working directory first on sys.path, so the worker
            # runs this copy of the package (PYTHONPATH below), not one that happens to be
            # in the current directory. -S: no site module, whose .pth files (an editable
            # install's finder) cost a fifth of a worker's start; the worker adds gevent's
            # directories itself (WORKER_PATH), or runs site after all if gevent needs more.
            [sys.executable, "-S", "-P", *WORKER_COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        from nornir_portscan.errors import ScanError

        raise ScanError(f"cannot start a worker process with {sys.executable!r}: {exc}") from exc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc``, reap it (waiting at most 1 s) and close its pipes."""
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1)
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            if pipe is not None:
                pipe.close()


class WorkerPool:
    """Worker processes started before the scan is known, so that their start-up (a fresh
    interpreter importing gevent, about 0.04 s) overlaps the caller's own work, such as walking
    an inventory of a thousand hosts::

        with WorkerPool() as workers:
            request = build_request(targets_from_inventory(), ports="22,443")
            report = scan(request, workers=workers)

    ``scan`` takes the workers it needs; ``close`` (the end of the ``with`` block) stops the
    others. Idle workers only wait for their orders: nothing is sent before ``scan``.
    """

    def __init__(self, processes: int | None = None) -> None:
        # the one check of the setting (OptionError); 1 needs none, and skipping it spares a
        # caller in a hurry the models' import before its worker starts
        if not (type(processes) is int and processes == 1):
            from nornir_portscan.models import ScanOptions

            ScanOptions(processes=processes)
        self._idle: list[subprocess.Popen[bytes]] = []
        # a pool dropped without close() still stops its workers when it is collected
        self._finalizer = weakref.finalize(self, _stop_all, self._idle)
        env = worker_env()
        try:
            for _ in range(processes or cpu_count()):
                self._idle.append(start_worker(env))
        except BaseException:
            self.close()
            raise

    def take(self) -> subprocess.Popen[bytes] | None:
        """An idle worker that is still running, or None when none is left."""
        while self._idle:
            proc = self._idle.pop()
            if proc.poll() is None:
                return proc
            stop_process(proc)  # died while idle: reap it, try the next
        return None

    def close(self) -> None:
        """Stop the workers no scan took."""
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    while procs:
        stop_process(procs.pop())
