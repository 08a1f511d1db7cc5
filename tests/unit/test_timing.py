"""The worker's timing policy: timeouts and attempts, without sockets."""

from __future__ import annotations

import dataclasses

import pytest

from nornir_portscan.engine.protocol import WorkerConfig
from nornir_portscan.engine.timing import RoundTrip, attempts_for, probe_timeout

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
    ("retries", "host", "answered_attempt", "attempts"),
    [
        (1, FAST, 1, 2),  # no sign of passing drops: 1 + retries
        (1, FAST, 2, 3),  # a port answered only its retry: one more
        (1, FAST, 3, 3),  # at most one more
        (2, FAST, 2, 3),  # answers came before the last regular attempt: nothing more
        (2, FAST, 3, 4),
        (0, FAST, 2, 1),  # no retries asked for: none
        (1, UNKNOWN, 2, 2),  # a host that answered nothing gets no more
    ],
)
def test_a_silent_port_gets_one_more_attempt_after_a_late_answer(
    retries: int, host: RoundTrip, answered_attempt: int, attempts: int
) -> None:
    assert attempts_for(config(retries=retries), host, answered_attempt) == attempts
