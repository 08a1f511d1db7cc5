"""The worker's scheduling policy, driven by a fake clock and fake outcomes (no sockets, no
gevent): which probes start when, with which timeout, and what their outcomes become."""

from __future__ import annotations

import dataclasses
import errno
import heapq
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pytest

from nornir_portscan.engine.protocol import Progressed, Unit, UnitDone, WorkerConfig
from nornir_portscan.engine.schedule import Probe, Schedule
from nornir_portscan.models import PortState

CONFIG = WorkerConfig(
    concurrency=4,
    rate=None,
    host_concurrency=None,
    min_timeout=0.1,
    max_timeout=1.0,
    adaptive=True,
    retries=1,
    include_closed=False,
)
H1, H2 = "127.0.0.1", "127.0.0.2"
# Time that passes between the loop reading its clock and a probe's connect. Without it a probe
# started by a sweep would expire exactly at a later sweep, which a real clock never does.
CONNECT = 1e-9


@dataclass(frozen=True)
class Answer:
    state: PortState
    reason: str
    after: float  # seconds after the probe started
    stalled: bool = False  # the loop never calls back: only the sweep's look at the socket sees it
    by_target: bool = False  # an ICMP error that the target address itself sent


@dataclass(frozen=True)
class Local:
    """A local failure as the connect is made (EADDRNOTAVAIL, EMFILE, ...)."""

    err: int = errno.EADDRNOTAVAIL


@dataclass(frozen=True)
class Refusal:
    """The local kernel refuses the connect (a route, a local firewall)."""

    reason: str = "local-EACCES"


Outcome = Answer | Local | Refusal | None  # None: silence, a dropped SYN


def closed(after: float = 0.001) -> Answer:
    return Answer(PortState.CLOSED, "conn-refused", after)


def opened(after: float = 0.001) -> Answer:
    return Answer(PortState.OPEN, "syn-ack", after)


SILENT = None
REFUSED = closed()  # as loopback answers


class Policer:
    """A token bucket in front of a host, as iptables' ``limit``/``hashlimit`` match: a SYN
    passes when a token is there, else it is dropped."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = float(burst), 0.0

    def admit(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Sim:
    """The socket side and the loop, faked: each port's outcome per start (the last repeats),
    a clock that jumps from event to event, sweeps every ``tick``, and a log of starts as
    ``[time, address, port, attempt, timeout]``, to the µs (no timeout for a local failure)."""

    def __init__(
        self,
        outcomes: Mapping[tuple[str, int], Outcome | Sequence[Outcome]] | None = None,
        default: Outcome = REFUSED,
        policer: Policer | None = None,
        **changes: object,
    ) -> None:
        self.t = 0.0
        self.policer = policer
        self.config = dataclasses.replace(CONFIG, **changes)
        self.outcomes = {
            key: list(value) if isinstance(value, list | tuple) else [value]
            for key, value in (outcomes or {}).items()
        }
        self.default = default
        self.tries: Counter[tuple[str, int]] = Counter()
        self.probes = [Probe() for _ in range(self.config.concurrency)]
        self.sent: list[object] = []
        self.starts: list[list[object]] = []
        self.started_now: list[tuple[list[object], Probe]] = []
        self.events: list[tuple[float, int, Probe]] = []
        self.flight: dict[Probe, tuple[int, Outcome]] = {}
        self.seq = 0
        self.inflight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.wake_at: float | None = None
        self.units = 0
        self.schedule = Schedule(
            self.config,
            self.probes,
            start=self._start,
            settle=self._settle,
            wake=self._wake,
            send=self.sent.append,
            now=lambda: self.t,
        )

    # -- driving ------------------------------------------------------------------------------
    def add(
        self,
        address: str,
        ports: Iterable[int],
        *,
        host_id: int | None = None,
        srtt: float | None = None,
        rttvar: float | None = None,
        deadline: float | None = None,
    ) -> None:
        self.units += 1
        host_id = int(address.rsplit(".", 1)[1]) if host_id is None else host_id
        unit = Unit(self.units, host_id, address, tuple(ports), srtt, rttvar, deadline)
        self._call(self.schedule.add, unit)

    def run(self, limit: float = 60.0) -> list[UnitDone]:
        """Run until every unit is done; return their results in the order they came."""
        tick = self.schedule.tick
        k = math.floor(self.t / tick) + 1  # sweeps at k * tick, as a repeating timer runs
        while len(self.done) < self.units:
            t = min(
                k * tick,
                self.events[0][0] if self.events else math.inf,
                math.inf if self.wake_at is None else self.wake_at,
            )
            assert t < limit, "the schedule stalled"
            self.t = t
            if self.events and self.events[0][0] == t:  # an answer comes before a timer
                _, seq, probe = heapq.heappop(self.events)
                self._call(self._deliver, probe, seq)
            elif self.wake_at == t:
                self.wake_at = None
                self._call(self.schedule.pump)
            else:
                k += 1
                self._call(self.schedule.sweep)
        assert all(probe.job is None for probe in self.probes)
        return self.done

    @property
    def done(self) -> list[UnitDone]:
        return [m for m in self.sent if isinstance(m, UnitDone)]

    def _call(self, method: Callable[..., None], *args: object) -> None:
        method(*args)
        # the schedule sets a probe's deadline once start() returns
        for entry, probe in self.started_now:
            entry[4] = round(probe.deadline - probe.started, 6)
        self.started_now.clear()

    # -- the socket side ------------------------------------------------------------------------
    def _start(self, probe: Probe) -> bool:
        job = probe.job
        assert job is not None
        key = (job.address, probe.port)
        outcomes = self.outcomes.get(key, [self.default])
        outcome = outcomes[min(self.tries[key], len(outcomes) - 1)]
        self.tries[key] += 1
        self.t += CONNECT
        if self.policer is not None and not self.policer.admit(self.t):
            outcome = SILENT
        probe.started = self.t
        job.probes += 1
        entry: list[object] = [round(self.t, 6), job.address, probe.port, probe.attempt, None]
        self.starts.append(entry)
        if isinstance(outcome, Local):
            self.schedule.failed(probe, outcome.err)
            return False
        if isinstance(outcome, Refusal):
            self.schedule.refused(probe, outcome.reason)
            return False
        self.inflight[job.address] += 1
        self.peak[job.address] = max(self.peak[job.address], self.inflight[job.address])
        self.seq += 1
        self.flight[probe] = (self.seq, outcome)
        if outcome is not None and not outcome.stalled:
            heapq.heappush(self.events, (self.t + outcome.after, self.seq, probe))
        self.started_now.append((entry, probe))
        return True

    def _land(self, probe: Probe) -> Outcome:
        _, outcome = self.flight.pop(probe)
        assert probe.job is not None
        self.inflight[probe.job.address] -= 1
        return outcome

    def _deliver(self, probe: Probe, seq: int) -> None:
        if self.flight.get(probe, (None,))[0] != seq:
            return  # that probe timed out before its answer came
        outcome = self._land(probe)
        assert isinstance(outcome, Answer)
        rtt = self.t - probe.started
        self.schedule.answered(
            probe, outcome.state, outcome.reason, rtt, by_target=outcome.by_target
        )

    def _settle(self, probe: Probe) -> bool:
        outcome = self._land(probe)
        rtt = self.t - probe.started
        if isinstance(outcome, Answer) and rtt >= outcome.after:
            self.schedule.answered(probe, outcome.state, outcome.reason, rtt)
            return True
        return False

    def _wake(self, delay: float) -> None:
        if self.wake_at is None:  # as the worker's one wake-up timer, which fires a hair late
            self.wake_at = self.t + delay + CONNECT


def ports_of(done: UnitDone) -> list[tuple[object, ...]]:
    return [(port, state, reason, attempts) for port, state, reason, _, attempts in done.ports]


# -- which probes start, and their timeouts ----------------------------------------------------
def test_the_first_probes_fill_every_slot_with_the_full_timeout_then_answers_shorten_it() -> None:
    sim = Sim(default=closed(0.01))
    sim.add(H1, range(1, 7))
    (done,) = sim.run()
    assert sorted(sim.starts) == [
        [0.0, H1, 1, 1, 1.0],  # no estimate yet: the full timeout, as a stopgap
        [0.0, H1, 2, 1, 1.0],
        [0.0, H1, 3, 1, 1.0],
        [0.0, H1, 4, 1, 1.0],
        [0.01, H1, 5, 1, 0.1],  # srtt + 4 rttvar = 0.03: the floor
        [0.01, H1, 6, 1, 0.1],
    ]
    assert (done.ports, done.closed_count, done.probes_sent, done.unscanned) == ([], 6, 6, [])
    assert done.srtt == pytest.approx(0.01)


def test_a_stopgap_timeout_is_shortened_at_the_next_sweep_once_the_host_answers() -> None:
    """Port 80 drops, 81-83 refuse: 80's first timeout shrinks from 5 s to 0.1 s."""
    sim = Sim({(H1, 80): SILENT}, max_timeout=5.0)
    sim.add(H1, range(80, 84))
    (done,) = sim.run()
    assert sorted(sim.starts) == [
        [0.0, H1, 80, 1, 5.0],
        [0.0, H1, 81, 1, 5.0],
        [0.0, H1, 82, 1, 5.0],
        [0.0, H1, 83, 1, 5.0],
        [0.12, H1, 80, 2, 0.1],  # timed out at the first sweep after 0.1, not 5
    ]
    assert ports_of(done) == [(80, "filtered", "no-response", 2)]
    assert (done.closed_count, done.probes_sent) == (3, 5)
    assert sim.t == pytest.approx(0.24)


def test_a_host_that_has_not_answered_gets_a_guess_then_the_full_timeout_and_no_more() -> None:
    sim = Sim({(H1, 1): closed(0.05), (H2, 1): SILENT}, concurrency=1)
    sim.add(H1, [1])
    sim.add(H2, [1])
    sim.run()
    assert sim.starts == [
        [0.0, H1, 1, 1, 1.0],
        [0.05, H2, 1, 1, 0.15],  # every host's round trips: 0.05 + 4 * 0.025
        [0.22, H2, 1, 2, 1.0],  # its last regular attempt: the full timeout, never a guess
    ]
    assert ports_of(sim.done[1]) == [(1, "filtered", "no-response", 2)]


@pytest.mark.parametrize(
    ("changes", "starts"),
    [
        ({}, [(0.0, 0.4), (0.42, 0.4)]),  # srtt + 4 rttvar, for the retry too
        ({"retries": 2}, [(0.0, 0.4), (0.42, 0.4), (0.84, 0.4)]),
        ({"adaptive": False}, [(0.0, 1.0), (1.02, 1.0)]),
    ],
)
def test_a_known_host_waits_what_its_round_trips_say(
    changes: dict[str, object], starts: list[tuple[float, float]]
) -> None:
    sim = Sim(default=SILENT, **changes)
    sim.add(H1, [1], srtt=0.2, rttvar=0.05)
    (done,) = sim.run()
    assert [(entry[0], entry[4]) for entry in sim.starts] == starts  # retried at the next sweep
    assert ports_of(done) == [(1, "filtered", "no-response", len(starts))]
    assert (done.srtt, done.rttvar) == (0.2, 0.05)  # silence does not move the estimate


# -- attempts ------------------------------------------------------------------------------------
def test_once_a_retry_answered_silent_ports_get_three_more_attempts_spread_over_a_timeout() -> None:
    """Port 80 drops its first two SYNs, 81 its first, 82 all; 83-99 answer. 81's answer to
    its retry proves drops: the silent ports get attempts 3-5, a third of the host's timeout
    apart (at the sweeps after), so that a drop lasting a moment does not meet them all; the
    first extra one waits twice the host's timeout (a slow answer), the others the host's
    timeout (what they look for is a lost packet): they end together. 80 answers its third,
    before its fourth is due: that one and the fifth are never sent. That answer came at
    attempt 3, so 82 gets a sixth, then is filtered. Three drops in 20 ports do not cut the
    host's window."""
    sim = Sim(
        {
            (H1, 80): [SILENT, SILENT, opened()],
            (H1, 81): [SILENT, closed()],
            (H1, 82): SILENT,
        },
        concurrency=30,
    )
    sim.add(H1, range(80, 100))
    (done,) = sim.run()
    assert sorted(e for e in sim.starts if e[2] < 83 and e[3] > 1) == [
        [0.12, H1, 80, 2, 0.1],
        [0.12, H1, 81, 2, 0.1],
        [0.12, H1, 82, 2, 0.1],
        [0.24, H1, 80, 3, 0.2],
        [0.24, H1, 82, 3, 0.2],
        [0.28, H1, 82, 4, 0.1],
        [0.32, H1, 82, 5, 0.1],
        [0.46, H1, 82, 6, 0.1],
    ]
    assert ports_of(done) == [(80, "open", "syn-ack", 3), (82, "filtered", "no-response", 6)]
    assert (done.closed_count, done.probes_sent) == (18, 28)
    assert sum(m.ports for m in sim.sent if isinstance(m, Progressed)) == 20
    assert sim.schedule.hosts[1].window.cuts == 0
    assert sim.t == pytest.approx(0.58)


def test_copies_not_yet_sent_when_one_answers_are_never_sent() -> None:
    """80's copy 3 goes out and answers before 4 and 5 are due: they are never sent."""
    sim = Sim({(H1, 80): [SILENT, SILENT, opened()], (H1, 81): [SILENT, closed()]}, concurrency=2)
    sim.add(H1, [80, 81])
    (done,) = sim.run()
    assert sorted(e[3] for e in sim.starts if e[2] == 80) == [1, 2, 3]
    assert ports_of(done) == [(80, "open", "syn-ack", 3)]
    assert (done.closed_count, done.probes_sent) == (1, 5)


def test_once_drops_show_a_silent_first_attempt_sends_all_the_others_in_one_timeout() -> None:
    """81 answered its retry; then 90's first attempt is silent: its retry and attempts 3-5
    go out within one timeout of the host, not one after the other's timeout. 91 answers its
    retry, before its third attempt is due. (100-119 answer at once: two drops in 23 ports do
    not cut the window.)"""
    sim = Sim(
        {(H1, 81): [SILENT, closed()], (H1, 90): SILENT, (H1, 91): [SILENT, closed()]},
        concurrency=30,
    )
    sim.add(H1, [81, *range(100, 120)], srtt=0.001, rttvar=0.0005)
    sim.run()
    sim.add(H1, [90, 91])
    (_, done) = sim.run()
    assert [e for e in sim.starts if e[2] == 90] == [
        [0.121, H1, 90, 1, 0.1],
        [0.24, H1, 90, 2, 0.1],
        [0.28, H1, 90, 3, 0.2],
        [0.3, H1, 90, 4, 0.1],
        [0.32, H1, 90, 5, 0.1],
    ]
    assert sorted(e[3] for e in sim.starts if e[2] == 91) == [1, 2]
    assert (ports_of(done), done.closed_count) == ([(90, "filtered", "no-response", 5)], 1)
    assert sim.t == pytest.approx(0.5)  # not 0.24 + 0.1 + 0.2 + 0.1 + 0.1 + sweeps
    assert sum(m.ports for m in sim.sent if isinstance(m, Progressed)) == 23
    assert sim.schedule.hosts[1].window.cuts == 0


def test_a_port_refused_locally_in_its_copies_is_one_error() -> None:
    """80's copies meet a local refusal (a firewall rule added meanwhile): one error result,
    and the port counted once."""
    sim = Sim({(H1, 80): [SILENT, SILENT, Refusal()], (H1, 81): [SILENT, closed()]}, concurrency=30)
    sim.add(H1, [80, 81, *range(100, 120)], srtt=0.001, rttvar=0.0005)
    (done,) = sim.run()
    assert ports_of(done) == [(80, "error", "local-EACCES", 5)]
    assert done.closed_count == 21
    assert sum(m.ports for m in sim.sent if isinstance(m, Progressed)) == 22


def test_answers_of_several_copies_count_the_port_once() -> None:
    """Copies 3-5 of 80 all go out before the first answer (after 0.09 s) comes."""
    sim = Sim({(H1, 80): [SILENT, SILENT, closed(0.09)], (H1, 81): [SILENT, closed()]})
    sim.add(H1, [80, 81, 82], srtt=0.001, rttvar=0.0005)
    (done,) = sim.run()
    assert sorted(e[3] for e in sim.starts if e[2] == 80) == [1, 2, 3, 4, 5]  # all answer
    assert (done.ports, done.closed_count, done.probes_sent) == ([], 3, 8)
    assert sum(m.ports for m in sim.sent if isinstance(m, Progressed)) == 3


def test_copies_pending_at_the_host_deadline_leave_their_port_unscanned_once() -> None:
    """80 is silent; 81 answers its retry, so 80 gets attempts 3-5, but 5 is not yet due at
    the deadline. 80 is not scanned (it did not get every
    attempt), not filtered, and counted once, when its last copy out is silent."""
    sim = Sim({(H1, 81): [SILENT, closed()]}, default=SILENT, concurrency=2)
    sim.add(H1, [80, 81], srtt=0.001, rttvar=0.0005, deadline=0.3)
    (done,) = sim.run()
    assert [e[:4] for e in sim.starts if e[3] > 2] == [[0.24, H1, 80, 3], [0.28, H1, 80, 4]]
    assert (done.ports, done.closed_count, done.unscanned) == ([], 1, [80])
    assert sum(m.ports for m in sim.sent if isinstance(m, Progressed)) == 2


@pytest.mark.parametrize(("rate", "burst", "ports"), [(20, 5, 100), (20, 5, 400), (100, 10, 1000)])
def test_a_policed_host_is_scanned_exactly_at_the_rate_it_allows(
    rate: float, burst: int, ports: int
) -> None:
    """A token bucket drops every SYN beyond ``rate``/s (iptables ``hashlimit``), 20 ms round
    trip, 1000 probes in flight: the first burst is dropped but for ``burst`` SYNs, the
    answers to retries cut the host's window to one probe, and it grows only as answers
    come. Every port is found closed, in at most about three times the time the rate needs."""
    sim = Sim(default=closed(0.02), policer=Policer(rate, burst), concurrency=1000)
    sim.add(H1, range(1, ports + 1))
    (done,) = sim.run(limit=120)
    assert (done.ports, done.closed_count) == ([], ports)
    assert sim.t < 3.5 * ports / rate  # the backoff of bursty drops (a starved server) costs
    assert sim.schedule.hosts[1].window.limit < 5


def test_once_a_window_was_cut_hosts_with_drops_of_their_own_get_ten_single_attempts() -> None:
    """H1 drops the first SYN of every port: its window is cut, so drops here come in bursts.
    H2's port 91 answered only its retry: H2's silent port then gets ten attempts, one at a
    time, each waiting twice the one before (sent together, bursty drops would drop them
    together). H3 never showed a drop (a host that is down, a firewall): its silent port
    gets the five attempts that drops seen elsewhere give, in one timeout, not ten."""
    h3 = "127.0.0.3"
    outcomes = {(H1, p): [SILENT, closed()] for p in range(1, 11)}
    sim = Sim(outcomes | {(H2, 90): SILENT, (H2, 91): [SILENT, closed()], (h3, 90): SILENT})
    sim.add(H1, range(1, 11), srtt=0.001, rttvar=0.0005)
    sim.run()
    assert sim.schedule.hosts[1].window.cuts > 0
    sim.add(H2, [91], srtt=0.001, rttvar=0.0005)
    sim.run()
    sim.add(H2, [90], srtt=0.001, rttvar=0.0005)
    sim.add(h3, [90], srtt=0.001, rttvar=0.0005)
    done = {m.unit_id: m for m in sim.run()}
    starts = [(e[0], e[4]) for e in sim.starts if e[1] == H2 and e[2] == 90]
    assert len(starts) == len({t for t, _ in starts}) == 10
    assert [timeout for _, timeout in starts] == [0.1, 0.1, 0.2, 0.4, 0.8] + [1.0] * 5
    assert ports_of(done[3]) == [(90, "filtered", "no-response", 10)]
    assert ports_of(done[4]) == [(90, "filtered", "no-response", 5)]
    assert [m.unit_id for m in sim.done][-1] == 3  # H3 was done long before


def test_a_worker_idle_for_five_seconds_forgets_the_drops_it_saw() -> None:
    """The scan service's workers live on between scans: drops seen in one say little about
    the next, which starts with one retry again (and the round-trip estimate of its unit)."""
    sim = Sim({(H1, 81): [SILENT, closed()], (H1, 90): SILENT, (H2, 90): SILENT})
    sim.add(H1, [81, 90], srtt=0.001, rttvar=0.0005)
    sim.run()
    assert max(e[3] for e in sim.starts if e[2] == 90) == 5
    sim.t += 4.0
    sim.add(H2, [90], srtt=0.001, rttvar=0.0005)  # the same scan, or soon after: remembered
    sim.run()
    assert max(e[3] for e in sim.starts if e[1] == H2) == 5
    sim.t += 6.0
    sim.add(H1, [90], srtt=0.001, rttvar=0.0005)
    sim.run()
    assert [e[3] for e in sim.starts if e[1] == H1 and e[0] > 10] == [1, 2]


def test_without_a_late_answer_or_without_retries_there_is_no_extra_attempt() -> None:
    sim = Sim({(H1, 80): SILENT, (H1, 81): [SILENT, closed()]}, retries=0)
    sim.add(H1, [80, 81, 82])
    (done,) = sim.run()
    assert sorted(ports_of(done)) == [
        (80, "filtered", "no-response", 1),
        (81, "filtered", "no-response", 1),
    ]
    sim = Sim({(H1, 80): SILENT})
    sim.add(H1, [80, 81, 82])
    (done,) = sim.run()
    assert ports_of(done) == [(80, "filtered", "no-response", 2)]


def test_an_answer_the_loop_missed_is_found_by_the_sweep_not_retried() -> None:
    sim = Sim({(H1, 1): Answer(PortState.OPEN, "syn-ack", 0.05, stalled=True)})
    sim.add(H1, [1], srtt=0.001, rttvar=0.0005)
    (done,) = sim.run()
    assert sim.starts == [[0.0, H1, 1, 1, 0.1]]
    assert done.ports == [(1, "open", "syn-ack", 120.0, 1)]  # the round trip as measured


# -- caps, rate, interleaving ----------------------------------------------------------------
def test_hosts_interleave_round_robin() -> None:
    sim = Sim(concurrency=1)
    sim.add(H1, [1, 2, 3])  # starts port 1 at once, before the next unit comes
    sim.add(H2, [1, 2, 3])
    sim.run()
    assert [(entry[1], entry[2]) for entry in sim.starts] == [
        (H1, 1),
        (H1, 2),
        (H2, 1),
        (H1, 3),
        (H2, 2),
        (H2, 3),
    ]


def test_ports_silent_on_other_hosts_go_first_so_their_retries_overlap_the_rest() -> None:
    sim = Sim({(H1, 3): SILENT, (H2, 3): SILENT}, concurrency=1)
    sim.add(H1, [1, 2, 3])
    sim.run()
    sim.add(H2, [1, 2, 3])
    sim.run()
    assert [e[2] for e in sim.starts if e[1] == H1] == [1, 2, 3, 3]
    assert [e[2] for e in sim.starts if e[1] == H2] == [3, 1, 2, 3]


def test_the_per_host_cap_holds_across_the_units_of_a_host() -> None:
    sim = Sim(default=closed(0.01), concurrency=8, host_concurrency=2)
    sim.add(H1, range(1, 4))
    sim.add(H1, range(4, 7))  # the same host, another unit
    sim.add(H2, range(1, 7))
    done = sim.run()
    assert sim.peak == {H1: 2, H2: 2}
    assert Counter(entry[0] for entry in sim.starts) == {0.0: 4, 0.01: 4, 0.02: 4}
    assert sorted(d.closed_count for d in done) == [3, 3, 6]


def test_the_rate_is_held_from_the_first_probe() -> None:
    sim = Sim(concurrency=8, rate=100.0)
    sim.add(H1, range(1, 11))
    sim.run()
    assert [entry[0] for entry in sim.starts] == pytest.approx(
        [i / 100 for i in range(10)], abs=1e-6
    )


def test_an_idle_worker_saves_up_at_most_a_fiftieth_of_a_second_of_its_rate() -> None:
    sim = Sim(concurrency=50, rate=1000.0)
    sim.t = 1.0
    sim.add(H1, range(1, 41))
    sim.run()
    times = [entry[0] for entry in sim.starts]
    assert times[:20] == [1.0] * 20  # the burst: rate / 50
    assert times[20:] == pytest.approx([1.0 + i / 1000 for i in range(1, 21)], abs=1e-6)


# -- host timeout, back-off, results -----------------------------------------------------------
def test_no_probe_starts_after_the_host_deadline_and_the_rest_are_unscanned() -> None:
    sim = Sim(default=closed(0.01), concurrency=2)
    sim.add(H1, range(1, 101), deadline=0.045)
    (done,) = sim.run()
    assert max(entry[0] for entry in sim.starts) == 0.04  # < 0.045
    assert (done.closed_count, done.probes_sent) == (10, 10)  # probes in flight finish
    assert done.unscanned == list(range(11, 101))
    assert sum(m.ports for m in sim.sent if isinstance(m, Progressed)) == 100
    assert isinstance(sim.sent[-2], Progressed)  # every port is reported before its unit


def test_a_local_failure_backs_the_whole_worker_off_and_retries_the_same_attempt() -> None:
    sim = Sim({(H1, 1): [Local(), Local(), closed()]}, concurrency=1)
    sim.add(H1, [1])
    sim.add(H2, [1])
    done = {d.unit_id: d for d in sim.run()}
    assert sim.starts == [
        [0.0, H1, 1, 1, None],
        [0.01, H1, 1, 1, None],  # 5 ms doubled per failure; H2 waits too
        [0.03, H2, 1, 1, 1.0],  # the round-robin goes on: H2's turn
        [0.031, H1, 1, 1, 0.1],  # the failed probe keeps its place in its own unit
    ]
    assert [(d.closed_count, d.probes_sent) for d in (done[1], done[2])] == [(1, 3), (1, 1)]


def test_a_port_that_keeps_failing_locally_is_an_error_after_eight_tries() -> None:
    sim = Sim({(H1, 1): Local(errno.EMFILE)}, concurrency=1)
    sim.add(H1, [1])
    (done,) = sim.run()
    assert [entry[0] for entry in sim.starts] == [0.0, 0.01, 0.03, 0.07, 0.15, 0.31, 0.63, 1.27]
    assert done.ports == [(1, "error", "EMFILE", None, 1)]


def test_closed_ports_are_listed_on_request_with_their_round_trip() -> None:
    sim = Sim({(H1, 22): opened(0.0123456)}, default=closed(0.002), include_closed=True)
    sim.add(H1, [21, 22])
    (done,) = sim.run()
    assert done.ports == [
        (21, "closed", "conn-refused", 2.0, 1),
        (22, "open", "syn-ack", 12.346, 1),
    ]
    assert done.closed_count == 1


def test_progress_comes_in_batches_of_a_quarter_of_the_slots_and_before_the_unit() -> None:
    sim = Sim(default=closed(0.01), concurrency=8)
    sim.add(H1, range(1, 6))
    (done,) = sim.run()
    assert sim.sent == [Progressed(2), Progressed(2), Progressed(1), done]


def test_a_unit_without_ports_is_done_at_once() -> None:
    sim = Sim()
    sim.add(H1, [])
    assert sim.sent == [UnitDone(1, [], 0, 0, None, None, [])]


def test_the_schedule_imports_neither_gevent_nor_the_worker() -> None:
    code = (
        "import sys, nornir_portscan.engine.schedule; "
        "print([m for m in sys.modules if m == 'nornir_portscan.engine.worker' "
        "or m.split('.')[0] == 'gevent'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_port_silent_before_any_drop_showed_gets_more_attempts_once_one_shows() -> None:
    """80 drops its first two SYNs before any port has answered a retry: it has had the
    attempts a network without drops gets, but is held, not filtered, while the unit runs.
    83 then answers its retry: drops show, and 80 gets attempts 3-5; it answers its third."""
    sim = Sim(
        {
            (H1, 80): [SILENT, SILENT, opened()],
            (H1, 82): closed(0.09),
            (H1, 83): [SILENT, closed(0.05)],
        },
        concurrency=2,
    )
    sim.add(H1, [80, 81, 82, 83], srtt=0.001, rttvar=0.0005)
    (done,) = sim.run()
    retry_of_83 = next(e[0] for e in sim.starts if e[2] == 83 and e[3] == 2)
    starts_of_80 = [e[:4] for e in sim.starts if e[2] == 80]
    assert [e[3] for e in starts_of_80] == [1, 2, 3]
    assert starts_of_80[1][0] + 0.1 < retry_of_83 + 0.05  # 80 was held when 83 answered
    assert starts_of_80[2][0] == pytest.approx(retry_of_83 + 0.05)  # and retried then
    assert ports_of(done) == [(80, "open", "syn-ack", 3)]
    assert done.closed_count == 3


def test_held_ports_are_filtered_when_their_unit_is_done_without_new_drops() -> None:
    """A port silent at both attempts, on a network without drops, costs nothing more."""
    sim = Sim({(H1, 80): SILENT})
    sim.add(H1, [80, 81], srtt=0.001, rttvar=0.0005)
    (done,) = sim.run()
    assert ports_of(done) == [(80, "filtered", "no-response", 2)]
    assert sim.t == pytest.approx(0.24)


def test_a_unit_whose_target_itself_sent_an_icmp_error_says_so() -> None:
    """The host status needs it: a host that rejects every port itself is up."""
    reject = Answer(PortState.FILTERED, "admin-prohibited", 0.001, by_target=True)
    router = Answer(PortState.FILTERED, "admin-prohibited", 0.001)
    sim = Sim({(H1, 80): reject, (H2, 80): router})
    sim.add(H1, [80])
    sim.add(H2, [80])
    done = {m.unit_id: m for m in sim.run()}
    assert [(d.replied, ports_of(d)) for d in (done[1], done[2])] == [
        (True, [(80, "filtered", "admin-prohibited", 1)]),
        (False, [(80, "filtered", "admin-prohibited", 1)]),
    ]
