"""The UDP pacing rule: when a silence proves anything under the target's ICMP rate limit."""

from __future__ import annotations

import pytest

from nornir_portscan.engine.protocol import WorkerConfig
from nornir_portscan.engine.udp_pacing import (
    ICMP_INTERVAL,
    MIN_ROUND,
    IcmpHistory,
    clean_needed,
    icmp_gap,
    next_round,
)

GAP = 1.1


def _config(retries: int = 1) -> WorkerConfig:
    return WorkerConfig(100, None, None, 0.1, 1.0, True, retries, False)


def _history(first: float, *drew: float) -> IcmpHistory:
    history = IcmpHistory()
    history.sent(first)
    for started in drew:
        history.drew(started, started, keep=10.0)
    return history


def test_nothing_is_clean_before_a_gap_after_the_first_probe() -> None:
    # what spent the bucket before this worker's first probe is unknown
    history = _history(100.0)
    assert not history.clean(100.0, GAP, [])
    assert not history.clean(101.0, GAP, [])
    assert history.clean(101.2, GAP, [])


def test_an_icmp_error_drawn_within_a_gap_before_makes_a_silence_unclean() -> None:
    history = _history(100.0, 105.0)
    assert not history.clean(105.0, GAP, [])  # sent right after it
    assert not history.clean(106.0, GAP, [])
    assert history.clean(106.2, GAP, [])
    assert history.clean(104.9, GAP, [])  # before it: the bucket was not spent yet


def test_a_probe_still_in_flight_before_it_makes_a_silence_unclean() -> None:
    history = _history(100.0)
    assert not history.clean(105.0, GAP, [104.5])  # may still draw an ICMP error
    assert history.clean(105.0, GAP, [105.5])  # sent after it: cannot have spent its token


def test_a_host_is_quiet_a_gap_after_its_latest_icmp_error() -> None:
    assert IcmpHistory().quiet_at(GAP) == float("-inf")
    assert _history(100.0).quiet_at(GAP) == pytest.approx(101.1)
    assert _history(100.0, 103.0, 102.0).quiet_at(GAP) == pytest.approx(104.1)


def test_old_icmp_errors_are_forgotten() -> None:
    history = _history(100.0, 101.0)
    history.drew(200.0, 200.0, keep=10.0)
    assert list(history.starts) == [200.0]


@pytest.mark.parametrize(
    ("candidates", "resolved", "size"),
    [(500, None, 500), (500, 0, MIN_ROUND), (500, 1, MIN_ROUND), (500, 30, 60), (3, 1, 3)],
)
def test_round_sizes(candidates: int, resolved: int | None, size: int) -> None:
    assert next_round(candidates, resolved) == size


@pytest.mark.parametrize(("retries", "needed"), [(0, 1), (1, 2), (6, 7)])
def test_clean_silences_needed(retries: int, needed: int) -> None:
    assert clean_needed(_config(retries)) == needed


def test_the_gap_covers_the_interval_and_the_round_trip_spread() -> None:
    config = _config()
    assert icmp_gap(config, 0.02, 0.01) == pytest.approx(ICMP_INTERVAL + 0.05 + 0.06)
    assert icmp_gap(config, None, None) == pytest.approx(ICMP_INTERVAL + 0.05 + 1.0)
    assert icmp_gap(config, 5.0, 1.0) == pytest.approx(ICMP_INTERVAL + 0.05 + 1.0)  # capped
    assert icmp_gap(config, 0.0, 0.0, scale=4) == pytest.approx(4 * ICMP_INTERVAL + 0.05)
