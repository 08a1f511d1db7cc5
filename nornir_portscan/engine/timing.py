"""The worker's timing policy: round-trip estimates, each probe's timeout, and how many
attempts a silent port gets. Pure: no sockets, no clock, no gevent."""

from __future__ import annotations

from nornir_portscan.engine.protocol import WorkerConfig

DROP_MARGIN = 3  # attempts beyond the latest one that answered, once SYNs are seen to drop
MAX_ATTEMPTS = 10  # of a silent port at most, unless 1 + retries is more (nmap: 1 + 10)
CUT_SHARE = 0.25  # a host's window shrinks when more of its probes than this were dropped
CUT_DROPS = 2  # and at least this many since its last cut
MIN_WINDOW = 1.0


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


def attempts_for(
    config: WorkerConfig, host_answered: int, answered_attempt: int, *, congested: bool = False
) -> int:
    """How many probes a silent port of a host gets.

    ``host_answered`` is the latest attempt at which a port of this host answered (1 for
    none or only first attempts), ``answered_attempt`` the same over every host of the worker.
    A firewall drops a SYN every time; loss, a full accept queue or a policer only now and
    then. An answer to a retry proves such drops: then a silent port may still be open, and
    gets ``DROP_MARGIN`` attempts beyond the latest that answered (on this host, or the second
    if only other hosts showed drops), at most ``MAX_ATTEMPTS``, like nmap's cap on
    retransmissions. With 4% of round trips lost, five attempts leave one port in ten
    million unanswered. Where drops are ``congested`` (some host's ``Window`` was cut: a policer
    or a full accept queue drops in bursts, which can hit one port many times) a silent port
    gets ``MAX_ATTEMPTS``.
    A network that shows no such drop pays nothing; without retries nothing is added.
    """
    regular = config.retries + 1
    if config.retries == 0:
        return regular
    if congested:
        return max(regular, MAX_ATTEMPTS)
    evidence = host_answered if host_answered > 1 else min(answered_attempt, 2)
    if evidence <= 1:
        return regular
    return max(regular, min(evidence + DROP_MARGIN, MAX_ATTEMPTS))


def retry_timeout(
    config: WorkerConfig,
    host: RoundTrip,
    overall: RoundTrip,
    attempt: int,
    *,
    backoff: bool = False,
) -> tuple[float, bool]:
    """``probe_timeout``, but beyond the first extra attempt the first attempt's timeout.

    The extra attempts go out together (see ``Schedule``): the first one waits what
    ``probe_timeout`` says, for a slow answer; the others look for a SYN or an answer that was
    lost, and each costs a round trip, not a longer wait. With ``backoff`` (drops come in
    bursts: the attempts go one at a time) each extra attempt waits twice the one before, up to
    ``max_timeout``, as TCP backs off: a server whose accept queue stays full for seconds (a
    listener starved of CPU) is waited out, not called filtered after a second.
    """
    regular = config.retries + 1
    if backoff and attempt > regular:
        base, guessing = probe_timeout(config, host, overall, 1)
        return min(config.max_timeout, base * (1 << (attempt - regular))), guessing
    if attempt > config.retries + 2:
        return probe_timeout(config, host, overall, 1)
    return probe_timeout(config, host, overall, attempt)


class Window:
    """A host's congestion window, as nmap keeps one per host (after TCP's, RFC 5681).

    Unlimited (up to ``cap``, the host concurrency) until drops show: a retry that answered
    means the attempts before it were dropped (a policer, a full accept queue, loss). When
    ``CUT_DROPS`` or more, and more than ``CUT_SHARE``, of the host's probes since the last
    cut were dropped, the window drops to one probe, at most once per round of probes (a drop
    of a probe sent before the last cut is the same episode); answers then grow it by one
    each up to half of what was in flight, and by one per window of answers beyond. Random
    loss of a few percent does not cut it; a policer does, until the probes pass at the rate
    it allows.
    """

    __slots__ = ("answers", "cap", "cuts", "cwnd", "drops", "last_cut", "limit", "ssthresh")

    def __init__(self, cap: int | None) -> None:
        self.cap = cap if cap is not None else 1 << 30
        self.cwnd = self.ssthresh = float(self.cap)
        self.limit = self.cap  # probes in flight allowed now: int(cwnd), within the cap
        self.answers = 0  # since the last cut
        self.drops = 0
        self.last_cut = float("-inf")
        self.cuts = 0

    def answered(self, drops: int, started: float, now: float, inflight: int) -> None:
        """A probe started at ``started`` answered after ``drops`` silent attempts of its
        port; ``inflight`` others of the host are still out."""
        self.answers += 1
        if drops:
            self.drops += drops
            if (
                started > self.last_cut
                and self.drops >= CUT_DROPS
                and self.drops > CUT_SHARE * (self.answers + self.drops)
            ):
                self.ssthresh = max(2 * MIN_WINDOW, min(self.cwnd, inflight + 1) / 2)
                self.cwnd = MIN_WINDOW
                self.last_cut = now
                self.cuts += 1
                self.answers = self.drops = 0
                self.limit = int(self.cwnd)
                return
        if self.cwnd < self.cap:
            growth = 1.0 if self.cwnd < self.ssthresh else 1 / self.cwnd
            self.cwnd = min(float(self.cap), self.cwnd + growth)
            self.limit = int(self.cwnd)
