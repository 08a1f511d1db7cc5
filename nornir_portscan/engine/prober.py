"""The socket side of a worker's TCP probe pool: a fixed set of ``concurrency`` slots on the
gevent hub.

Each slot owns a non-blocking socket; a probe is a callback, not a greenlet, so the per-probe
cost is a few syscalls. A socket whose connect was refused is reused for the next probe, which
halves the kernel work on closed ports: a second connect to the same address returns the first
one's outcome and readies the socket for a new connect, so a closed port costs two syscalls (nmap
-sT spends nine). Every socket is registered once, edge-triggered, with an epoll set of the
worker's own that the gevent hub watches: a connect's end is an edge, so no probe costs an
``epoll_ctl``, and one wake-up of the hub hands over a batch of answers, after which the next
probes start.

What the kernel reports becomes a port state or a local error by ``classify``'s table; only
the socket can tell the rest: an ICMP error's origin and sender (the network's, or this host's
own), and whether a silent SYN ever left (``TCP_INFO``).

Which port goes next, with what timeout and how many attempts is the ``Schedule``'s
(``engine/schedule.py``), which the slots report to. This module, the schedule and the timing
are compiled with mypyc where the package was built with a C compiler (``setup.py``); the same
source runs as plain Python elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import time
from typing import Any

from gevent import get_hub

from nornir_portscan.classify import classify_errno, classify_icmp, is_transient, local_reason
from nornir_portscan.engine.errqueue import (
    EE_FORMAT,
    OwnAddresses,
    ask_for_errors,
    offender,
    offender_scope,
    packed,
)
from nornir_portscan.engine.protocol import Unit, WorkerConfig, sockaddr
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
_EE_ORIGIN_ICMP6 = 3
_OWN_ICMP = "own"  # not a reason: an ICMP error this host sent about its own packet
_EE_ORIGINS_ICMP = (2, _EE_ORIGIN_ICMP6)  # SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 (LOCAL is 1)
_TCP_INFO_LEN = 40  # struct tcp_info up to tcpi_retrans
_TCPI_RETRANSMITS = 2
_TCPI_RETRANS = 36
_U32 = struct.Struct("=I")
_PROGRESS_INTERVAL = 0.1
# A connect's end (connected, refused, an ICMP error) is an edge on its socket; EPOLLERR and
# EPOLLHUP are always reported.
_EVENTS = select.EPOLLOUT | select.EPOLLET
_now = time.monotonic  # the schedule's clock too: probe.started is read by both


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


class _Slot(Probe):
    """A probe slot with its socket, kept across probes when they allow it."""

    __slots__ = ("family", "sock", "sockaddr")

    def __init__(self) -> None:
        super().__init__()
        self.sock: socket.socket | None = None
        self.family = 0  # the socket's (``socket.family`` is a slow property)
        self.sockaddr: tuple[Any, ...] = ()  # what the probe in flight connects to


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
        self.poller = select.epoll()
        self.by_fd: dict[int, _Slot] = {}  # the slot of every registered socket
        self.max_events = max(64, config.concurrency)
        self.own = OwnAddresses()  # ICMP senders: ours or not
        self.from_target = False  # the ICMP error ``_icmp_reason`` read came from the target
        self.events = self.loop.io(self.poller.fileno(), 1)
        self.events.start(self._drain)
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

    def _drain(self) -> None:
        """The sockets whose connect ended since the last call: report them all, then start
        the probes that may start now (one pass, not one per answer)."""
        by_fd = self.by_fd
        schedule = self.schedule
        if schedule.pumping:  # not expected: the hub calls this between callbacks
            return
        schedule.pumping = True  # an answer's pump() waits until the batch is reported
        try:
            for fd, _ in self.poller.poll(0, self.max_events):
                slot = by_fd.get(fd)
                if slot is not None and slot.job is not None:
                    self._on_writable(slot)
        finally:
            schedule.pumping = False
        schedule.pump()

    # -- one probe ---------------------------------------------------------------------------
    def _start(self, slot: _Slot) -> bool:
        """Connect; True while in flight (see ``Schedule``)."""
        job = slot.job
        assert job is not None
        sock = slot.sock
        if sock is not None and slot.family != job.family:
            self._discard(slot)
            sock = None
        if sock is None:
            try:
                sock = socket.socket(job.family, socket.SOCK_STREAM)
            except OSError as exc:
                self._local_error(slot, exc.errno or 0)
                return False
            sock.setblocking(False)
            ask_for_errors(sock, job.family)
            fd = sock.fileno()
            try:
                self.poller.register(fd, _EVENTS)
            except OSError as exc:  # ENOMEM, ENOSPC (max_user_watches): nothing was sent
                sock.close()
                self._local_error(slot, exc.errno or errno.ENOMEM)
                return False
            self.by_fd[fd] = slot
            slot.sock = sock
            slot.family = job.family
        # a zone is a scope id
        address = sockaddr(job.address, slot.port) if job.zoned else (job.address, slot.port)
        slot.sockaddr = address
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
        """The socket's connect may have ended: ask it with another connect to the same
        address, which returns the outcome and, on a failure, readies the socket for its
        next probe (one syscall for both; ``SO_ERROR`` would need another connect later)."""
        sock = slot.sock
        assert sock is not None
        err = sock.connect_ex(slot.sockaddr)
        if err == _EALREADY:
            # Still connecting, as far as connect() tells. An ICMP error that came while this
            # host's connect() held the socket (its own reject of the SYN) is a soft error:
            # the socket stays in SYN_SENT and only SO_ERROR reports it. Or Linux woke epoll
            # for an ICMP error just before it set it: the next edge tells.
            err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
            if err:
                self._finish(slot, err, reusable=False)
            return
        if err == _ECONNABORTED:
            # Closed with no error to tell: no answer, and nothing to call the port by.
            self._discard(slot)
            self.schedule.failed(slot, err)
            return
        self._finish(slot, err)

    def _finish(self, slot: _Slot, err: int, *, reusable: bool = True) -> None:
        """A connect whose SYN was sent finished with ``err`` (0 for connected). A socket
        that is not ``reusable`` (a soft error read from ``SO_ERROR``: it is still
        connecting) is closed whatever the answer."""
        sock = slot.sock
        job = slot.job
        assert sock is not None
        assert job is not None
        rtt = _now() - slot.started
        answer = classify_errno(err)
        self.from_target = False
        if err == 0:
            try:
                self_connect = sock.getsockname()[:2] == sock.getpeername()[:2]
            except OSError as exc:
                late = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
                if late in _ANSWERED_THEN_RESET:  # connected, then reset before we looked
                    self._finish(slot, late)
                    return
                # no peer and no reset: not connected, so no answer (never "open")
                self._discard(slot)
                self.schedule.failed(slot, exc.errno or errno.ENOTCONN)
                return
            self._discard(slot, reset=True)
            if self_connect:
                # The kernel picked the target port as our source port and connected the
                # socket to itself: that says nothing about the port. Probe it again.
                self.schedule.failed(slot, errno.EADDRINUSE)
                return
        else:
            try:
                reason = self._answer_reason(slot, err, answer is not None)
            except OSError as exc:  # no descriptor or memory to tell whose ICMP it was
                self._discard(slot)
                self.schedule.failed(slot, exc.errno or errno.ENOBUFS)
                return
            if err == _ECONNREFUSED:  # a RST; the socket is reused
                # ... or this host's own firewall (a REJECT's default, ICMP port-unreachable)
                if reason == _OWN_ICMP:
                    answer = None
                # a reset after a zoned connect keeps the socket bound to the zone's
                # interface (sk_bound_dev_if): the next probe would leave by it
                if answer is None or job.zoned or not reusable:
                    self._discard(slot)
            else:
                # EHOSTUNREACH, EACCES (an ICMPv6 admin-prohibited, or a local refusal), ...:
                # only an ICMP error from the network in the error queue makes it an answer.
                self._discard(slot)
                if answer is None and reason is not None and reason != _OWN_ICMP:
                    answer = (PortState.FILTERED, reason)
        if answer is None:
            self._local_error(slot, err)
            return
        self.schedule.answered(slot, answer[0], answer[1], rtt, by_target=self.from_target)

    def _answer_reason(self, slot: _Slot, err: int, known: bool) -> str | None:
        """What the error queue says about a refused connect: ``_icmp_reason``, or None
        where there is nothing to tell apart (no syscall spent): a RST to a loopback probe
        (this host is the target), an error that is an answer (``known``) of itself."""
        job = slot.job
        assert job is not None
        assert slot.sock is not None
        if err == _ECONNREFUSED:
            if job.loopback:
                return None
        elif known:
            return None
        return self._icmp_reason(slot.sock, err, job.address, slot.port)

    def _local_error(self, slot: _Slot, err: int) -> None:
        """A local failure: retried if it is a shortage, else an ``error`` at once."""
        if is_transient(err):
            self.schedule.failed(slot, err)
        else:
            self.schedule.refused(slot, local_reason(err))

    def _icmp_reason(self, sock: socket.socket, err: int, target: str, port: int) -> str | None:
        """The reason carried by the last ICMP error about this probe (a packet to
        ``target``, ``port``) that caused ``err``, from the socket's error queue: None if
        there is none, ``_OWN_ICMP`` if this host sent it. Raises ``OSError`` when this host
        cannot tell whose it is (``is_own_address``).

        An ICMP error this host generated about its own packet (a local firewall's
        ``reject``, a failed neighbour lookup) names an address of this host as its sender:
        that is not the network's answer, unless we are probing that address. (The socket
        no longer has its source address: the connect that read the error reset it.)
        """
        reason = None
        destination = packed(target)
        while True:
            try:
                _, ancdata, _, about = sock.recvmsg(0, 512, _MSG_ERRQUEUE)
            except OSError:  # empty (most calls: one syscall)
                return reason
            # A reused socket may still hold an ICMP error about an earlier probe (a
            # loopback one, whose refusal never reads the queue): the error names the
            # destination of the packet it is about.
            if about and (about[1] != port or packed(about[0]) != destination):
                continue
            for _level, _type, data in ancdata:
                if len(data) < EE_FORMAT.size:
                    continue
                ee_errno, origin, icmp_type, icmp_code, _, _, _ = EE_FORMAT.unpack_from(data)
                # a reused socket may still hold the ICMP port-unreachable (ECONNREFUSED) of
                # its previous probe
                if origin not in _EE_ORIGINS_ICMP or ee_errno != err:
                    continue
                sender = offender(data)
                if (
                    sender is not None
                    and sender != destination
                    and self.own(sender, offender_scope(data))
                ):
                    reason = _OWN_ICMP
                    continue
                # an IPv6 socket to an IPv4-mapped address gets ICMPv4 errors
                reason = classify_icmp(origin == _EE_ORIGIN_ICMP6, icmp_type, icmp_code)
                self.from_target = sender == destination

    def _settle(self, slot: _Slot) -> bool:
        """Past its deadline: True if the socket has an answer after all (reported)."""
        sock = slot.sock
        assert sock is not None
        # The loop may have stalled (a slow parent, a busy machine): look at the socket
        # itself before blaming the network.
        err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
        if err == 0:
            if _connected(sock):
                self._finish(slot, 0)
                return True
        else:
            self._finish(slot, err, reusable=False)
            return True
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
        self.by_fd.pop(sock.fileno(), None)  # closing it takes it out of the epoll set
        if reset:
            with contextlib.suppress(OSError):
                sock.setsockopt(_SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.close()
        slot.sock = None

    def close(self) -> None:
        self.schedule.report_progress()
        for slot in self.slots:
            self._discard(slot)
        self.events.stop()
        self.poller.close()
        self.own.close()


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True
