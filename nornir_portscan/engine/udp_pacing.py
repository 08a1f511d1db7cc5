"""When a silent UDP probe proves anything: the target's ICMP rate limit. Pure: no sockets, no
clock, no gevent.

A closed UDP port answers with ICMP port-unreachable, but a host sends few ICMP errors to one
destination: Linux keeps a token bucket per destination (``net.ipv4.icmp_ratelimit``, 1000 ms
by default: one token per second, ``XRLIM_BURST_FACTOR`` 6 of them at most; IPv6's
``icmp/ratelimit`` is faster, 1000 ms shifted right by the route's prefix length), on top of a
host-wide bucket (``icmp_msgs_per_sec`` 1000, ``icmp_msgs_burst`` 50). A probe that finds the
bucket empty gets no answer, so its silence says nothing: a closed port would read
``open|filtered``. nmap meets this by raising a host's send delay, up to one probe a second,
when retransmissions draw answers (``boostScanDelay`` in its ``scan_engine.cc``); it cannot
tell which silences were rate-limited.

Here a silence counts only if the bucket had a token when the probe arrived. A token is spent
only by an ICMP error that was sent (a silent or an answered-with-data probe spends none), and
the bucket refills at least one token per ``ICMP_INTERVAL``. So a probe is **clean** when:

- it started at least ``gap`` after the first probe this worker sent the host (what happened
  before, another scan's probes included, is not known), and
- no other probe of the host that drew an ICMP error, or whose outcome is still unknown,
  started within ``gap`` before it.

``gap`` is ``ICMP_INTERVAL`` plus a margin for the difference in one-way delays. A port is
``open|filtered`` only after ``clean_needed`` clean silent attempts; an unclean silence is sent
again. A port that answers with an ICMP error after a clean silence proves the rule wrong for
its host: its bucket is slower, or shared (several addresses of one machine spend one bucket,
as they all answer the same destination), or someone else spends it. Then the host's gap
doubles (``MAX_SCALE`` times at most) and its clean silences so far no longer count.

To make clean probes, the silent ports of a host go out in rounds, each when the host is quiet
(nothing in flight, no ICMP error drawn for ``gap``): the first probe of a round is clean
whatever it meets, and the probes before the first one to draw an ICMP error are clean too.
Each round costs one ``gap`` if it drew an ICMP error, else one timeout: a host whose closed
ports are rate-limited is scanned at its ICMP rate, one closed port a second, and hosts run in
parallel. A host rate-limited below one error per ``ICMP_INTERVAL`` (a raised
``icmp_ratelimit``), or whose bucket someone else empties meanwhile, is outside this rule.
"""

from __future__ import annotations

from collections import deque

from nornir_portscan.engine.protocol import WorkerConfig

ICMP_INTERVAL = 1.0  # seconds per ICMP error: Linux's default per destination, the slowest
GAP_MARGIN = 0.05  # seconds: scheduling jitter on either side
MIN_ROUND = 8  # probes in a round once a host has shown its rate limit
MAX_SCALE = 32  # the slowest gap: 32 ICMP intervals, for 32 addresses sharing one bucket


def clean_needed(config: WorkerConfig) -> int:
    """Clean silent attempts before a port is ``open|filtered``: ``1 + retries``, as a TCP
    port's attempts. The first attempt is rarely clean (see the module docstring); with two
    or more clean ones, a wrong rule shows (a clean silence and then an ICMP error)."""
    return 1 + config.retries


def icmp_gap(
    config: WorkerConfig, srtt: float | None, rttvar: float | None, scale: int = 1
) -> float:
    """How far apart two probes of a host must start so that the second finds a token: the
    interval (``scale`` of them), a margin, and the host's round-trip spread (one-way delays
    differ by at most it).

    >>> from nornir_portscan.engine.protocol import WorkerConfig
    >>> config = WorkerConfig(100, None, None, 0.1, 1.0, True, 1, False)
    >>> round(icmp_gap(config, 0.01, 0.005), 3)
    1.08
    """
    spread = srtt + 4 * rttvar if srtt is not None and rttvar is not None else config.max_timeout
    return scale * ICMP_INTERVAL + GAP_MARGIN + min(spread, config.max_timeout)


def next_round(candidates: int, resolved_last: int | None) -> int:
    """How many silent ports the next round sends: all of them at first (a host that only
    drops costs one round), then twice what the last round resolved, at least ``MIN_ROUND``:
    a rate-limited host resolves a port or two a round, and the rest of a big round would be
    sent for nothing.

    >>> next_round(990, None), next_round(990, 1), next_round(990, 40), next_round(3, 1)
    (990, 8, 80, 3)
    """
    if resolved_last is None:
        return candidates
    return min(candidates, max(MIN_ROUND, 2 * resolved_last))


class IcmpHistory:
    """When a host's probes that drew an ICMP error started, over the last few gaps."""

    __slots__ = ("first_sent", "starts")

    def __init__(self) -> None:
        self.first_sent: float | None = None
        self.starts: deque[float] = deque()

    def sent(self, started: float) -> None:
        if self.first_sent is None:
            self.first_sent = started

    def drew(self, started: float, now: float, keep: float) -> None:
        """A probe started at ``started`` drew an ICMP error; forget what is ``keep`` old."""
        starts = self.starts
        starts.append(started)
        while starts and starts[0] < now - keep:
            starts.popleft()

    def quiet_at(self, gap: float) -> float:
        """From when a new probe finds a token (the caller also waits for the host's probes in
        flight)."""
        if self.first_sent is None:
            return float("-inf")
        latest = max(self.starts) if self.starts else self.first_sent - gap
        return max(self.first_sent, latest) + gap

    def clean(self, started: float, gap: float, unresolved: list[float]) -> bool:
        """Whether a silent probe that started at ``started`` found a token; ``unresolved``:
        when the host's other probes still in flight started."""
        if self.first_sent is None or started < self.first_sent + gap:
            return False
        low = started - gap
        if any(low <= t <= started for t in self.starts):
            return False
        return not any(low <= t <= started for t in unresolved)
