"""A worker process: drives a pool of connect probes on a gevent hub.

Started by the executor as its own interpreter (``python -m nornir_portscan.engine.worker``), so the
caller's process never imports gevent and its ``__main__`` is never re-imported. It reads a
``WorkerConfig`` and then ``Unit`` messages on stdin and writes results on stdout.

The pool is a fixed set of ``concurrency`` slots. Each slot owns a non-blocking socket and a
libev io watcher; a probe is a callback, not a greenlet, so the per-probe cost is a few
syscalls. A socket whose connect was refused is reused for the next probe (Linux allows a new
connect on it after one ``ECONNABORTED``), which halves the kernel work on closed ports.

This module is the socket side only; which port goes next, with what timeout and how many
attempts is the ``Schedule``'s (``engine/schedule.py``), which the slots report to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import socket
import struct
import sys
import time
from typing import Any

from gevent import get_hub
from gevent.event import Event

from nornir_portscan.classify import classify_errno, classify_icmp
from nornir_portscan.engine.protocol import (
    STOP,
    FrameReader,
    Unit,
    WorkerConfig,
    WorkerReady,
    frame,
)
from nornir_portscan.engine.schedule import Probe, Schedule
from nornir_portscan.models import PortState

_EINPROGRESS = errno.EINPROGRESS
_ECONNABORTED = errno.ECONNABORTED
_ECONNREFUSED = errno.ECONNREFUSED
# Errors an ICMP message can cause; the error queue tells which one came (Linux reports an
# ICMPv6 admin-prohibited as EACCES, which can also be a local firewall: the queue decides).
_ICMP_ERRORS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM})
_SOL_SOCKET = socket.SOL_SOCKET
_SO_ERROR = socket.SO_ERROR
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST: no TIME_WAIT on either side
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_EE_FORMAT = struct.Struct("=IBBBBII")  # struct sock_extended_err
_FD_RESERVE = 24  # stdio, the pipes, libev; 1000 probes + 24 fit the common 1024
_PROGRESS_INTERVAL = 0.1
_now = time.monotonic  # the schedule's clock too: probe.started is read by both


class _Slot(Probe):
    """A probe slot with its socket and io watcher, kept across probes when they allow it."""

    __slots__ = ("sock", "watcher")

    def __init__(self) -> None:
        super().__init__()
        self.sock: socket.socket | None = None
        self.watcher: Any = None


class Prober:
    """The socket side of one worker's probe pool; its ``Schedule`` says what to probe."""

    def __init__(self, config: WorkerConfig, send: Any) -> None:
        self.loop = get_hub().loop
        self.slots = [_Slot() for _ in range(config.concurrency)]
        self.schedule = schedule = Schedule(
            config,
            self.slots,
            start=self._start,
            settle=self._settle,
            wake=self._wake_at,
            send=send,
            now=_now,
        )
        self.wakeup = self.loop.timer(0.0)
        self.sweeper = self.loop.timer(schedule.tick, schedule.tick)
        self.sweeper.start(schedule.sweep)
        self.reporter = self.loop.timer(_PROGRESS_INTERVAL, _PROGRESS_INTERVAL)
        self.reporter.start(schedule.report_progress)

    def add(self, unit: Unit) -> None:
        self.schedule.add(unit)

    def _wake_at(self, delay: float) -> None:
        if not self.wakeup.active:
            self.wakeup = self.loop.timer(delay)
            self.wakeup.start(self.schedule.pump)

    # -- one probe ---------------------------------------------------------------------------
    def _start(self, slot: _Slot) -> bool:
        """Connect; True while in flight (see ``Schedule``)."""
        job = slot.job
        assert job is not None
        sock = slot.sock
        if sock is not None and sock.family != job.family:
            self._discard(slot)
            sock = None
        if sock is None:
            try:
                sock = socket.socket(job.family, socket.SOCK_STREAM)
            except OSError as exc:
                self.schedule.failed(slot, exc.errno or 0)
                return False
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                if job.family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            slot.sock = sock
            slot.watcher = self.loop.io(sock.fileno(), 2)
        address = (job.address, slot.port)
        # the clock of this probe, not of the pump pass: a pass can start a thousand probes
        slot.started = _now()
        err = sock.connect_ex(address)
        if err == _ECONNABORTED:  # the reused socket's previous connect failed: connect again
            err = sock.connect_ex(address)
        job.probes += 1
        if err == _EINPROGRESS:
            slot.watcher.start(self._on_writable, slot)
            return True
        self._finish(slot, err)
        return False

    def _on_writable(self, slot: _Slot) -> None:
        sock = slot.sock
        assert sock is not None
        err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
        if err == 0 and not _connected(sock):
            return  # a spurious wake-up (epoll after an fd number was reused): still waiting
        slot.watcher.stop()
        self._finish(slot, err)

    def _finish(self, slot: _Slot, err: int) -> None:
        """A connect finished with ``err`` (0 for connected)."""
        sock = slot.sock
        assert sock is not None
        rtt = _now() - slot.started
        reason = None
        if err == 0:
            try:
                self_connect = sock.getsockname()[:2] == sock.getpeername()[:2]
            except OSError as exc:  # no peer: not connected, so no answer (never "open")
                self._discard(slot)
                self.schedule.failed(slot, exc.errno or errno.ENOTCONN)
                return
            self._discard(slot, reset=True)
            if self_connect:
                # The kernel picked the target port as our source port and connected the
                # socket to itself: that says nothing about the port. Probe it again.
                self.schedule.failed(slot, errno.EADDRINUSE)
                return
        elif err in _ICMP_ERRORS:
            reason = self._icmp_reason(sock)
            self._discard(slot)
        elif err != _ECONNREFUSED:
            self._discard(slot)
        answer = (PortState.FILTERED, reason) if reason else classify_errno(err)
        if answer is None:
            self.schedule.failed(slot, err)
            return
        self.schedule.answered(slot, answer[0], answer[1], rtt)

    def _icmp_reason(self, sock: socket.socket) -> str | None:
        """The reason carried by the ICMP error in the socket's error queue, if any."""
        reason = None
        ipv6 = sock.family == socket.AF_INET6
        with contextlib.suppress(OSError):
            while True:
                _, ancdata, _, _ = sock.recvmsg(0, 512, socket.MSG_ERRQUEUE)
                for _level, _type, data in ancdata:
                    if len(data) >= _EE_FORMAT.size:
                        _, origin, icmp_type, icmp_code, _, _, _ = _EE_FORMAT.unpack_from(data)
                        if origin in (2, 3):  # SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6
                            reason = classify_icmp(ipv6, icmp_type, icmp_code) or reason
        return reason

    def _settle(self, slot: _Slot) -> bool:
        """Past its deadline: True if the socket has an answer after all (reported)."""
        sock = slot.sock
        assert sock is not None
        # The loop may have stalled (a slow parent, a busy machine): look at the socket
        # itself before blaming the network.
        err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
        if err == 0:
            if _connected(sock):
                slot.watcher.stop()
                self._finish(slot, 0)
                return True
        else:
            slot.watcher.stop()
            self._finish(slot, err)
            return True
        slot.watcher.stop()
        self._discard(slot)
        return False

    # -- bookkeeping -------------------------------------------------------------------------
    def _discard(self, slot: _Slot, *, reset: bool = False) -> None:
        sock = slot.sock
        if sock is None:
            return
        slot.watcher.stop()
        slot.watcher.close()
        if reset:
            with contextlib.suppress(OSError):
                sock.setsockopt(_SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.close()
        slot.sock = None

    def close(self) -> None:
        self.schedule.report_progress()
        for slot in self.slots:
            self._discard(slot)


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


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
    state: dict[str, Prober] = {}

    def on_message(message: Any) -> None:
        if isinstance(message, Unit):
            state["prober"].add(message)
        elif isinstance(message, WorkerConfig):
            concurrency, warning = _raise_fd_limit(message.concurrency)
            config = WorkerConfig(**{**_fields(message), "concurrency": concurrency})
            state["prober"] = Prober(config, channel.send)
            channel.send(WorkerReady(concurrency, warning))
        elif message == STOP:
            finished.set()

    channel = _Channel(on_message, finished.set)
    finished.wait()
    if "prober" in state:
        state["prober"].close()
    channel.flush()


def _fields(config: WorkerConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


if __name__ == "__main__":
    main()
    # Everything is written: leave now, without the interpreter's teardown (tens of ms that
    # the executor would wait for).
    sys.stderr.flush()
    os._exit(0)
