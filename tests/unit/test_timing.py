"""The worker's timing policy: timeouts and attempts, without sockets."""

from __future__ import annotations

import dataclasses

import pytest

from nornir_portscan.engine.protocol import WorkerConfig
from nornir_portscan.engine.timing import (
    RoundTrip,
    Window,
    attempts_for,
    probe_timeout,
    retry_timeout,
)

CONFIG = WorkerConfig(
    concurrency=100,
    rate=None,
    host_concurrency=None,
    min_timeout=0.1,
    max_timeout=1.0,
    adaptive=True,
    retries=1,
    include_closed=False,
)
UNKNOWN = RoundTrip()
FAST = RoundTrip(0.001, 0.0005)  # loopback: the floor decides
SLOW = RoundTrip(0.2, 0.05)  # srtt + 4 rttvar = 0.4 s


def config(**changes: object) -> WorkerConfig:
    return dataclasses.replace(CONFIG, **changes)


def test_the_first_sample_sets_the_estimate_and_later_ones_smooth_it() -> None:
    estimate = RoundTrip()
    estimate.sample(0.02)
    assert (estimate.srtt, estimate.rttvar) == (0.02, 0.01)
    estimate.sample(0.04)
    assert estimate.srtt == pytest.approx(0.0225)
    assert estimate.rttvar == pytest.approx(0.0125)


@pytest.mark.parametrize(
    ("host", "attempt", "timeout"),
    [
        (FAST, 1, 0.1),  # the floor
        (FAST, 2, 0.1),  # the retry waits as long: an answer to either attempt would do
        (SLOW, 1, 0.4),
        (SLOW, 2, 0.4),
        (SLOW, 3, 0.8),  # beyond 1 + retries: after a drop that passed, doubled
        (RoundTrip(0.3, 0.1), 3, 1.0),  # the ceiling
    ],
)
def test_a_known_host_waits_what_its_round_trips_say(
    host: RoundTrip, attempt: int, timeout: float
) -> None:
    assert probe_timeout(CONFIG, host, UNKNOWN, attempt) == (pytest.approx(timeout), False)


def test_an_unknown_host_first_gets_a_guess_then_the_full_timeout() -> None:
    assert probe_timeout(CONFIG, UNKNOWN, SLOW, 1) == (pytest.approx(0.4), False)
    assert probe_timeout(CONFIG, UNKNOWN, SLOW, 2) == (1.0, False)  # its last regular attempt


def test_with_no_estimate_at_all_the_full_timeout_is_a_stopgap() -> None:
    assert probe_timeout(CONFIG, UNKNOWN, UNKNOWN, 1) == (1.0, True)
    # but the last attempt always gets the full timeout, for good
    assert probe_timeout(config(retries=0), UNKNOWN, UNKNOWN, 1) == (1.0, False)


def test_without_adaptive_timing_every_probe_waits_the_full_timeout() -> None:
    assert probe_timeout(config(adaptive=False), FAST, FAST, 1) == (1.0, False)


@pytest.mark.parametrize(
    ("retries", "host_answered", "answered_attempt", "attempts"),
    [
        (1, 1, 1, 2),  # no sign of passing drops: 1 + retries
        (1, 2, 2, 5),  # a port of the host answered only its retry: three more
        (1, 1, 2, 5),  # a port of another host did: the same
        (1, 1, 4, 5),  # another host's drops count as a retry's answer, no more
        (1, 4, 4, 7),  # three beyond the latest attempt that answered
        (1, 9, 9, 10),  # at most ten
        (2, 2, 2, 5),
        (10, 3, 3, 11),  # unless 1 + retries is more
        (0, 2, 2, 1),  # no retries asked for: none
    ],
)
def test_a_silent_port_gets_more_attempts_once_drops_show(
    retries: int, host_answered: int, answered_attempt: int, attempts: int
) -> None:
    assert attempts_for(config(retries=retries), host_answered, answered_attempt) == attempts


def test_a_congested_host_gets_the_most_attempts() -> None:
    assert attempts_for(CONFIG, 1, 1, congested=True) == 10
    assert attempts_for(config(retries=0), 2, 2, congested=True) == 1


def test_extra_attempts_but_the_first_wait_the_first_attempts_timeout() -> None:
    assert retry_timeout(CONFIG, SLOW, UNKNOWN, 2) == probe_timeout(CONFIG, SLOW, UNKNOWN, 2)
    assert retry_timeout(CONFIG, SLOW, UNKNOWN, 3) == probe_timeout(CONFIG, SLOW, UNKNOWN, 3)
    assert retry_timeout(CONFIG, SLOW, UNKNOWN, 4) == (pytest.approx(0.4), False)
    assert retry_timeout(CONFIG, FAST, UNKNOWN, 7) == (pytest.approx(0.1), False)
    assert retry_timeout(CONFIG, UNKNOWN, SLOW, 4) == (pytest.approx(0.4), False)  # a guess


def test_a_window_is_the_host_cap_until_a_quarter_of_the_probes_were_dropped() -> None:
    window = Window(None)
    for _ in range(8):
        window.answered(0, 0.0, 0.0, 50)
    for drops in (1, 1, 1):  # 3 dropped of 14: fewer than CUT_DROPS
        window.answered(drops, 0.0, 0.0, 50)
    assert window.limit == 1 << 30
    window.answered(2, 0.1, 0.2, 39)  # 5 dropped of 17 (29%): one probe at a time
    assert (window.cwnd, window.ssthresh, window.limit) == (1.0, 20.0, 1)
    for _ in range(4):  # probes sent before the cut were the same episode
        window.answered(3, 0.15, 0.3, 30)
    assert window.limit == 5  # the answers grow it again, one probe per answer
    window.answered(4, 0.25, 0.4, 5)
    assert (window.cwnd, window.ssthresh, window.limit) == (1.0, 2.5, 1)


def test_a_cut_window_grows_fast_to_half_of_what_was_in_flight_then_slowly() -> None:
    window = Window(6)
    assert window.limit == 6
    window.answered(5, 1.0, 1.0, 5)
    assert (window.cwnd, window.ssthresh, window.limit) == (1.0, 3.0, 1)
    window.answered(0, 1.0, 1.0, 0)
    window.answered(0, 1.0, 1.0, 0)
    assert (window.cwnd, window.limit) == (3.0, 3)
    window.answered(0, 1.0, 1.0, 0)
    assert window.cwnd == pytest.approx(3 + 1 / 3)
    for _ in range(20):
        window.answered(0, 1.0, 1.0, 0)
    assert (window.cwnd, window.limit) == (6.0, 6)  # never beyond the host cap
