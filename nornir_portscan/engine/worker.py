"""A worker process: one executor's probes, on a gevent hub of its own.

Started by the executor as its own interpreter (``python -m nornir_portscan.engine.worker``), so the
caller's process never imports gevent and its ``__main__`` is never re-imported. It reads a
``WorkerConfig`` and then ``Unit`` messages on stdin, hands them to the TCP ``Prober``
(``engine/prober.py``) or the ``UdpProber`` (``engine/udp.py``), and writes what they report on
stdout.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
from typing import Any

if sys.flags.no_site:  # started by the executor (-S): where gevent is, after the standard library
    sys.path += filter(None, os.environ.get("_NORNIR_PORTSCAN_WORKER_PATH", "").split(os.pathsep))
    try:
        import gevent  # noqa: F401
    except ImportError:  # it needs what only the site module adds (a .pth file's directory)
        import site

        site.main()

from gevent import get_hub
from gevent.event import Event

from nornir_portscan.engine.prober import Prober
from nornir_portscan.engine.protocol import (
    STOP,
    FrameReader,
    Unit,
    WorkerConfig,
    WorkerReady,
    frame,
)

_FD_RESERVE = 24  # stdio, the pipes, libev; 1000 probes + 24 fit the common 1024


def _raise_fd_limit(wanted: int) -> tuple[int, str | None]:
    """Raise the soft open-file limit toward the hard one; return the usable concurrency."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + _FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    usable = wanted if soft == resource.RLIM_INFINITY else max(1, min(wanted, soft - _FD_RESERVE))
    if usable < wanted:
        return usable, (
            f"concurrency lowered from {wanted} to {usable} per worker: the open-file "
            f"limit is {soft} (raise it with 'ulimit -n')"
        )
    return usable, None


class _Channel:
    """Non-blocking framed messages over stdin/stdout, on the hub."""

    def __init__(self, on_message: Any, on_eof: Any) -> None:
        self.loop = get_hub().loop
        self.reader = FrameReader()
        self.out = bytearray()
        self.on_message = on_message
        self.on_eof = on_eof
        os.set_blocking(0, False)
        os.set_blocking(1, False)
        self.read_watcher = self.loop.io(0, 1)
        self.read_watcher.start(self._readable)
        self.write_watcher = self.loop.io(1, 2)

    def _readable(self) -> None:
        try:
            data = os.read(0, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.read_watcher.stop()
            self.on_eof()
            return
        for message in self.reader.feed(data):
            self.on_message(message)

    def send(self, message: Any) -> None:
        self.out += frame(message)
        self._writable()

    def _writable(self) -> None:
        try:
            written = os.write(1, self.out)
        except BlockingIOError:
            written = 0
        except BrokenPipeError:
            self.out.clear()
            self.on_eof()
            return
        del self.out[:written]
        if self.out and not self.write_watcher.active:
            self.write_watcher.start(self._writable)
        elif not self.out and self.write_watcher.active:
            self.write_watcher.stop()

    def flush(self) -> None:
        os.set_blocking(1, True)
        with contextlib.suppress(OSError):
            while self.out:
                del self.out[: os.write(1, self.out)]


def main() -> None:
    """Serve one executor over stdin/stdout until it says stop or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C
    finished = Event()
    configs: list[WorkerConfig] = []
    probers: dict[str, Any] = {}  # by protocol: TCP's at once, UDP's with its first unit

    def on_message(message: Any) -> None:
        if isinstance(message, Unit):
            prober = probers.get(message.protocol)
            if prober is None and message.protocol == "udp":  # its module and sockets: if asked
                from nornir_portscan.engine.udp import UdpProber

                prober = probers["udp"] = UdpProber(configs[0], channel.send)
            assert prober is not None, message.protocol  # the parent sends tcp or udp
            prober.add(message)
        elif isinstance(message, WorkerConfig):
            concurrency, warning = _raise_fd_limit(message.concurrency)
            configs.append(WorkerConfig(**{**_fields(message), "concurrency": concurrency}))
            probers["tcp"] = Prober(configs[0], channel.send)
            channel.send(WorkerReady(concurrency, warning))
        elif message == STOP:
            finished.set()

    channel = _Channel(on_message, finished.set)
    finished.wait()
    for prober in probers.values():
        prober.close()
    channel.flush()


def _fields(config: WorkerConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


if __name__ == "__main__":
    main()
    # Everything is written: leave now, without the interpreter's teardown (tens of ms that
    # the executor would wait for).
    sys.stderr.flush()
    os._exit(0)
