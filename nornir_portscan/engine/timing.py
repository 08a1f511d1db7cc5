"""The worker's timing policy: round-trip estimates, each probe's timeout, and how many
attempts a silent port gets. Pure: no sockets, no clock, no gevent."""

from __future__ import annotations

from nornir_portscan.engine.protocol import WorkerConfig

EXTRA_ATTEMPTS = 1  # beyond 1 + retries, once some host answered a port only at its last try


class RoundTrip:
    """A round-trip estimator: Jacobson/Karels smoothing, as TCP (RFC 6298) does."""

    __slots__ = ("rttvar", "srtt")

    def __init__(self, srtt: float | None = None, rttvar: float | None = None) -> None:
        self.srtt = srtt
        self.rttvar = rttvar

    def sample(self, rtt: float) -> None:
        if self.srtt is None or self.rttvar is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt


def probe_timeout(
    config: WorkerConfig, host: RoundTrip, overall: RoundTrip, attempt: int
) -> tuple[float, bool]:
    """The timeout of a probe's ``attempt`` (1 for the first) and whether it is a stopgap.

    srtt + 4 rttvar of the host, between ``min_timeout`` and ``max_timeout``: the same for
    every regular attempt, as nmap's retransmissions, and doubled for an attempt beyond
    1 + ``retries`` (see ``attempts_for``: sent only once some port answered just its last
    try, so the network has shown that it drops or delays SYNs for a while). A host that has
    not answered yet gets a first guess from ``overall`` (every host the worker has heard), and
    the full timeout on its last regular attempt, so that a slow host is never called filtered
    on a guess. With no estimate at all (the first probes of a scan) the timeout is the full
    one, as a stopgap: the caller shortens it once one comes.
    """
    if not config.adaptive:
        return config.max_timeout, False
    if host.srtt is not None and host.rttvar is not None:
        base = max(config.min_timeout, host.srtt + 4 * host.rttvar)
        extra = attempt > config.retries + 1
        return min(config.max_timeout, base * 2 if extra else base), False
    if attempt > config.retries:
        return config.max_timeout, False
    if overall.srtt is not None and overall.rttvar is not None:
        guess = max(config.min_timeout, overall.srtt + 4 * overall.rttvar)
        return min(config.max_timeout, guess), False
    return config.max_timeout, True


def attempts_for(config: WorkerConfig, host: RoundTrip, answered_attempt: int) -> int:
    """How many probes a silent port of ``host`` gets.

    1 + ``retries``; and, like nmap's cap on retransmissions, one more than the latest attempt
    at which any host answered (``answered_attempt``), at most EXTRA_ATTEMPTS more. A firewall
    drops a SYN every time, a full accept queue or a policer only for a while: once a port
    answered only its last regular attempt, a silent port may still be open, and gets one more
    try, later (its timeout doubles). A host that has answered nothing (down, most likely) and
    a scan without retries get no more.
    """
    regular = config.retries + 1
    if config.retries == 0 or host.srtt is None:
        return regular
    return max(regular, min(answered_attempt + 1, regular + EXTRA_ATTEMPTS))
