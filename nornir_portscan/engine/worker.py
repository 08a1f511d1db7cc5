"""A worker process: drives a pool of connect probes on a gevent hub.

Started by the executor as its own interpreter (``python -m nornir_portscan.engine.worker``), so the
caller's process never imports gevent and its ``__main__`` is never re-imported. It reads a
``WorkerConfig`` and then ``Unit`` messages on stdin and writes results on stdout.

The pool is a fixed set of ``concurrency`` slots. Each slot owns a non-blocking socket and a
libev io watcher; a probe is a callback, not a greenlet, so the per-probe cost is a few
syscalls. A socket whose connect was refused is reused for the next probe (Linux allows a new
connect on it after one ``ECONNABORTED``), which halves the kernel work on closed ports.

What the kernel reports becomes a port state or a local error by ``classify``'s table; only
the socket can tell the rest: an ICMP error's origin and sender (the network's, or this host's
own), and whether a silent SYN ever left (``TCP_INFO``).

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

if sys.flags.no_site:  # started by the executor (-S): where gevent is, after the standard library
    sys.path += filter(None, os.environ.get("_NORNIR_PORTSCAN_WORKER_PATH", "").split(os.pathsep))
    try:
        import gevent  # noqa: F401
    except ImportError:  # it needs what only the site module adds (a .pth file's directory)
        import site

        site.main()

from gevent import get_hub
from gevent.event import Event

from nornir_portscan.classify import classify_errno, classify_icmp, is_transient, local_reason
from nornir_portscan.engine.protocol import (
    STOP,
    FrameReader,
    Unit,
    WorkerConfig,
    WorkerReady,
    frame,
    sockaddr,
)
from nornir_portscan.engine.schedule import Probe, Schedule
from nornir_portscan.states import PortState

_EINPROGRESS = errno.EINPROGRESS
_ECONNABORTED = errno.ECONNABORTED
_EALREADY = errno.EALREADY
_ECONNREFUSED = errno.ECONNREFUSED
# A completed handshake the service then reset: the socket reports the reset, not the connect.
_ANSWERED_THEN_RESET = frozenset({errno.ECONNRESET, errno.EPIPE})
# What connect() can return at once that is still the network's answer: on loopback the
# handshake may run inside the call. Any other error there is this host refusing.
_SYNC_ANSWERS = frozenset({0, _ECONNREFUSED, *_ANSWERED_THEN_RESET})
_SOL_SOCKET = socket.SOL_SOCKET
_MSG_ERRQUEUE = socket.MSG_ERRQUEUE
_SO_ERROR = socket.SO_ERROR
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST: no TIME_WAIT on either side
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_EE_FORMAT = struct.Struct("=IBBBBII")  # struct sock_extended_err, then the sender's sockaddr
_EE_ORIGIN_ICMP6 = 3
_OWN_ICMP = "own"  # not a reason: an ICMP error this host sent about its own packet
_EE_ORIGINS_ICMP = (2, _EE_ORIGIN_ICMP6)  # SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 (LOCAL is 1)
_FD_RESERVE = 24  # stdio, the pipes, libev; 1000 probes + 24 fit the common 1024
_TCP_INFO_LEN = 40  # struct tcp_info up to tcpi_retrans
_TCPI_RETRANSMITS = 2
_TCPI_RETRANS = 36
_U32 = struct.Struct("=I")
_V4_MAPPED = bytes(10) + b"\xff\xff"
_AF_INET_BYTES = struct.pack("=H", socket.AF_INET)
_AF_INET6_BYTES = struct.pack("=H", socket.AF_INET6)
_PROGRESS_INTERVAL = 0.1
_now = time.monotonic  # the schedule's clock too: probe.started is read by both


def _offender(data: bytes) -> bytes | None:
    """The packed address of the ICMP error's sender (``SO_EE_OFFENDER``), if given."""
    sockaddr = data[_EE_FORMAT.size :]
    if len(sockaddr) >= 8 and sockaddr[:2] == _AF_INET_BYTES:
        return sockaddr[4:8]
    if len(sockaddr) >= 24 and sockaddr[:2] == _AF_INET6_BYTES:
        return _unmapped(sockaddr[8:24])
    return None


def _unmapped(packed: bytes) -> bytes:
    """An IPv4-mapped IPv6 address as the IPv4 one; any other address as it is."""
    return packed[12:] if packed[:12] == _V4_MAPPED else packed


def _never_left(sock: socket.socket) -> bool:
    """Whether the kernel retransmitted the SYN but none of it left this host: a local
    firewall drops it (netfilter's drop is EPERM to the sender, which TCP keeps to itself).

    Only visible once the first retransmission is due (TCP's initial RTO, 1 s): a shorter
    silent probe cannot tell a local drop from the network's silence.
    """
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return False
    if len(info) < _TCP_INFO_LEN:
        return False
    # tcpi_retransmits: retransmission timeouts so far; tcpi_retrans: segments retransmitted
    # and not yet acknowledged, which a retransmission that failed locally does not count
    return info[_TCPI_RETRANSMITS] > 0 and _U32.unpack_from(info, _TCPI_RETRANS)[0] == 0


def _packed(address: str) -> bytes | None:
    """``address`` packed, an IPv4-mapped one as IPv4; None if it is no address."""
    address = address.partition("%")[0]  # fe80::1%eth0: the zone is not part of the address
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    except (OSError, ValueError):
        return None
    return _unmapped(packed)


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
                self._local_error(slot, exc.errno or 0)
                return False
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                if job.family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            slot.sock = sock
            slot.watcher = self.loop.io(sock.fileno(), 2)
        address = sockaddr(job.address, slot.port)  # a zone is a scope id
        # the clock of this probe, not of the pump pass: a pass can start a thousand probes
        slot.started = _now()
        err = sock.connect_ex(address)
        if err == _ECONNABORTED:  # the reused socket's previous connect failed: connect again
            err = sock.connect_ex(address)
        elif err == _EALREADY:
            # Its previous connect got only a soft error (an ICMP that came while connect()
            # held the socket: SO_ERROR said refused, the socket stayed in SYN_SENT): a new one.
            self._discard(slot)
            return self._start(slot)
        if err == _EINPROGRESS:
            job.probes += 1
            slot.watcher.start(self._on_writable, slot)
            return True
        if err in _SYNC_ANSWERS:  # the handshake ran within connect() (loopback)
            job.probes += 1
            self._finish(slot, err)
        else:
            # connect() itself failed, so no SYN left: the local kernel refused (a route of
            # type unreachable, prohibit or blackhole, a broadcast address) or lacked a
            # resource. Never a network answer, and not a probe sent.
            self._discard(slot)
            self._local_error(slot, err)
        return False

    def _on_writable(self, slot: _Slot) -> None:
        sock = slot.sock
        assert sock is not None
        err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
        if err == 0 and not _connected(sock):
            # Not an answer yet: Linux queues an ICMP error and wakes epoll (EPOLLERR) just
            # before it sets SO_ERROR and closes the socket; the next wake-up reads the errno.
            return
        slot.watcher.stop()
        self._finish(slot, err)

    def _finish(self, slot: _Slot, err: int) -> None:
        """A connect whose SYN was sent finished with ``err`` (0 for connected)."""
        sock = slot.sock
        job = slot.job
        assert sock is not None
        assert job is not None
        rtt = _now() - slot.started
        answer = classify_errno(err)
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
        elif err == _ECONNREFUSED:  # a RST; the socket is reused
            # ... or this host's own firewall (a REJECT's default, ICMP port-unreachable). On
            # loopback this host is the target: nothing to tell apart, so no syscall spent.
            address = job.address
            loopback = address[:4] == "127." or address == "::1"
            if not loopback and self._icmp_reason(sock, err, address) == _OWN_ICMP:
                self._discard(slot)
                answer = None
        else:
            # EHOSTUNREACH, EACCES (an ICMPv6 admin-prohibited, or a local refusal), ...:
            # only an ICMP error from the network in the error queue makes it an answer.
            reason = None if answer else self._icmp_reason(sock, err, job.address)
            self._discard(slot)
            if reason is not None and reason != _OWN_ICMP:
                answer = (PortState.FILTERED, reason)
        if answer is None:
            self._local_error(slot, err)
            return
        self.schedule.answered(slot, answer[0], answer[1], rtt)

    def _local_error(self, slot: _Slot, err: int) -> None:
        """A local failure: retried if it is a shortage, else an ``error`` at once."""
        if is_transient(err):
            self.schedule.failed(slot, err)
        else:
            self.schedule.refused(slot, local_reason(err))

    def _icmp_reason(self, sock: socket.socket, err: int, target: str) -> str | None:
        """The reason carried by the last ICMP error that caused ``err``, from the socket's
        error queue: None if there is none, ``_OWN_ICMP`` if this host sent it.

        An ICMP error this host generated about its own packet (a local firewall's
        ``reject``, a failed neighbour lookup) names our own address as its sender: that is
        not the network's answer, unless we are probing our own address.
        """
        reason = None
        own: bytes | None = b""  # our own address, looked up for the first ICMP error only
        while True:
            try:
                _, ancdata, _, _ = sock.recvmsg(0, 512, _MSG_ERRQUEUE)
            except OSError:  # empty (most calls: one syscall)
                return reason
            for _level, _type, data in ancdata:
                if len(data) < _EE_FORMAT.size:
                    continue
                ee_errno, origin, icmp_type, icmp_code, _, _, _ = _EE_FORMAT.unpack_from(data)
                # a reused socket may still hold the ICMP port-unreachable (ECONNREFUSED) of
                # its previous probe
                if origin not in _EE_ORIGINS_ICMP or ee_errno != err:
                    continue
                if own == b"":
                    try:
                        own = _packed(sock.getsockname()[0])
                    except OSError:
                        own = None
                sender = _offender(data)
                if sender is not None and sender == own and sender != _packed(target):
                    reason = _OWN_ICMP
                    continue
                # an IPv6 socket to an IPv4-mapped address gets ICMPv4 errors
                reason = classify_icmp(origin == _EE_ORIGIN_ICMP6, icmp_type, icmp_code)

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
        dropped_here = _never_left(sock)
        self._discard(slot)
        if dropped_here:
            self.schedule.refused(slot, local_reason(errno.EPERM))
            return True
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
