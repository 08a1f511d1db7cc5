"""Drift: a baseline (a saved JSON report) compared with a scan, and re-checks before reporting."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from nornir_portscan import (
    HostResult,
    HostStatus,
    InputError,
    PortResult,
    PortState,
    ScanOptions,
    ScanReport,
    ScanRequest,
    Target,
)
from nornir_portscan.audit.drift import (
    Drift,
    HostDrift,
    PortChange,
    compare,
    confirm,
    load_baseline,
)
from nornir_portscan.reports.data import report_to_dict

OPTIONS = ScanOptions(timeout=2.0, min_timeout=0.2, retries=0, rate=5000, concurrency=800)
REASONS = {PortState.OPEN: "syn-ack", PortState.FILTERED: "no-response", PortState.ERROR: "EMFILE"}


def host(
    name: str,
    address: str | None,
    states: dict[int, PortState],
    scanned: tuple[int, ...] = (),
) -> HostResult:
    """A host that scanned ``scanned`` (and every port in ``states``); unlisted ports closed."""
    if address is None:
        return HostResult(name, None, HostStatus.UNRESOLVED, error="Name not known")
    scanned = tuple(sorted({*scanned, *states}))
    ports = tuple(
        PortResult(p, s, REASONS[s], 0.1, 1)
        for p, s in sorted(states.items())
        if s is not PortState.CLOSED
    )
    closed = sum(1 for p in scanned if states.get(p, PortState.CLOSED) is PortState.CLOSED)
    return HostResult(name, address, HostStatus.UP, ports, closed, None, scanned)


def report(*hosts: HostResult) -> ScanReport:
    return ScanReport(tuple(hosts), OPTIONS, 1_700_000_000.0, 1_700_000_001.0, 10)


OPEN, CLOSED, FILTERED, ERROR = (
    PortState.OPEN,
    PortState.CLOSED,
    PortState.FILTERED,
    PortState.ERROR,
)

# -- load_baseline --------------------------------------------------------------------------


def test_load_baseline_reads_a_saved_report(tmp_path):
    saved = report_to_dict(report(host("web1", "127.0.0.11", {22: OPEN}, (22, 23))))
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(saved))
    assert load_baseline(path) == saved
    assert load_baseline(str(path)) == saved


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read baseline '{path}': No such file or directory"),
        (
            "{not json",
            "baseline '{path}' is not JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (
            '{"hosts": {"web1": {}}}',
            "baseline '{path}' is not a portscan JSON report: save one with "
            "'portscan --json baseline.json ...'",
        ),
        (
            '[{"name": "web1"}]',
            "baseline '{path}' is not a portscan JSON report: save one with "
            "'portscan --json baseline.json ...'",
        ),
        (
            '{"version": "1.0"}',
            "baseline '{path}' is not a portscan JSON report: save one with "
            "'portscan --json baseline.json ...'",
        ),
    ],
)
def test_bad_baselines_name_the_file(tmp_path, text, message):
    path = tmp_path / "baseline.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError) as raised:
        load_baseline(path)
    assert str(raised.value) == message.format(path=path)


# -- compare --------------------------------------------------------------------------------


def test_compare_sorts_changes_into_opened_closed_and_changed():
    before = report(
        host(
            "web1",
            "127.0.0.11",
            {22: OPEN, 80: OPEN, 443: FILTERED, 8080: CLOSED, 9000: FILTERED, 9001: OPEN},
            (25,),
        ),
    )
    after = report(
        host(
            "web1",
            "127.0.0.11",
            {22: OPEN, 80: CLOSED, 443: OPEN, 8080: FILTERED, 9000: CLOSED, 9001: FILTERED},
            (25,),
        ),
    )
    drift = compare(report_to_dict(before), after)
    changed = HostDrift(
        "web1",
        "127.0.0.11",
        opened=(443,),
        closed=(80, 9001),
        changed=(PortChange(8080, "closed", "filtered"), PortChange(9000, "filtered", "closed")),
    )
    assert drift == Drift((changed,))
    assert bool(drift)
    assert (drift.rechecked, drift.confirmed) == (0, 0)
    assert changed.changes == (
        PortChange(80, "open", "not open"),
        PortChange(443, "not open", "open"),
        PortChange(8080, "closed", "filtered"),
        PortChange(9000, "filtered", "closed"),
        PortChange(9001, "open", "not open"),
    )
    assert drift.for_host("web1", "127.0.0.11") == changed
    assert drift.for_host("web1", "127.0.0.12") is None


def test_closed_ports_known_from_scanned_ports_and_from_a_closed_listing():
    """A baseline lists closed ports only in ``scanned_ports``, unless it was saved with
    ``--closed``; both say closed."""
    baseline = report_to_dict(report(host("web1", "127.0.0.11", {}, (22, 23))))
    assert baseline["hosts"][0]["scanned_ports"] == "22-23"
    listed = {**baseline["hosts"][0]}
    listed["ports"] = [
        {"port": 22, "state": "closed", "reason": "conn-refused", "rtt_ms": 0.1, "attempts": 1}
    ]
    listed["scanned_ports"] = ""
    after = report(host("web1", "127.0.0.11", {22: OPEN, 23: OPEN}))
    assert compare(baseline, after).hosts == (HostDrift("web1", "127.0.0.11", (22, 23)),)
    assert compare({"hosts": [listed]}, after).hosts == (HostDrift("web1", "127.0.0.11", (22,)),)


def test_ports_scanned_only_once_and_errors_are_not_drift():
    before = report(host("web1", "127.0.0.11", {22: OPEN, 23: ERROR, 25: CLOSED}, (80,)))
    after = report(host("web1", "127.0.0.11", {22: ERROR, 23: OPEN, 443: OPEN}, (25, 8080)))
    drift = compare(report_to_dict(before), after)
    assert drift == Drift(())
    assert not drift


def test_hosts_that_appeared_and_disappeared():
    before = report(
        host("web1", "127.0.0.11", {22: OPEN}),
        host("127.0.0.12", "127.0.0.12", {22: OPEN}),
        host("ghost.invalid", None, {}),
    )
    after = report(
        host("web1", "127.0.0.11", {22: OPEN}),
        host("web1", "127.0.0.21", {22: OPEN}),  # same name, new address
        host("127.0.0.13", "127.0.0.13", {}),
        host("ghost.invalid", None, {}),
    )
    drift = compare(report_to_dict(before), after)
    assert drift == Drift(
        (), appeared=("web1 (127.0.0.21)", "127.0.0.13"), disappeared=("127.0.0.12",)
    )
    assert bool(drift)  # a host that came or went is drift by itself
    assert drift.hosts == ()


# -- confirm --------------------------------------------------------------------------------


class Rescans:
    """A fake ``rescan``: one report per call, from a list of host-state tables."""

    def __init__(self, *rounds: dict[tuple[str, str], dict[int, PortState]]) -> None:
        self.rounds = list(rounds)
        self.requests: list[ScanRequest] = []

    def __call__(self, request: ScanRequest) -> ScanReport:
        states = self.rounds[len(self.requests)]
        self.requests.append(request)
        return report(
            *(
                host(t.name, t.address, states[t.name, t.address or ""], t.ports)
                for t in request.targets
            )
        )


WEB1, WEB2 = ("web1", "127.0.0.11"), ("web2", "127.0.0.12")
DRIFT = Drift(
    (
        HostDrift("web1", "127.0.0.11", opened=(443,), closed=(80,)),
        HostDrift("web2", "127.0.0.12", changed=(PortChange(8080, "closed", "filtered"),)),
    ),
    appeared=("127.0.0.13",),
    disappeared=("127.0.0.14",),
)


def test_confirm_keeps_only_changes_seen_every_time():
    rescan = Rescans(
        {WEB1: {443: OPEN, 80: CLOSED}, WEB2: {8080: FILTERED}},
        {
            WEB1: {443: OPEN, 80: FILTERED},
            WEB2: {8080: FILTERED},
        },  # filtered is "not open": still closed
        {WEB1: {443: CLOSED, 80: CLOSED}, WEB2: {8080: FILTERED}},  # 443 was a blip
    )
    confirmed = confirm(DRIFT, OPTIONS, rescan, times=3, interval=0)
    assert confirmed == Drift(
        (
            HostDrift("web1", "127.0.0.11", closed=(80,)),
            HostDrift("web2", "127.0.0.12", changed=(PortChange(8080, "closed", "filtered"),)),
        ),
        appeared=("127.0.0.13",),
        disappeared=("127.0.0.14",),
        rechecked=3,
        confirmed=2,
    )


def test_confirm_probes_only_the_differing_ports_gently():
    rescan = Rescans({WEB1: {443: OPEN, 80: CLOSED}, WEB2: {8080: FILTERED}})
    confirm(DRIFT, OPTIONS, rescan, times=1, interval=0)
    (request,) = rescan.requests
    assert request.targets == (
        Target("web1", "127.0.0.11", (80, 443)),
        Target("web2", "127.0.0.12", (8080,)),
    )
    assert request.ports == ()
    assert request.options == ScanOptions(
        timeout=2.0, min_timeout=0.2, retries=2, rate=100.0, concurrency=50, processes=1
    )
    gentle = ScanOptions(retries=5, rate=20, concurrency=10)
    rescan = Rescans({WEB1: {443: OPEN, 80: CLOSED}, WEB2: {8080: FILTERED}})
    confirm(DRIFT, gentle, rescan, times=1, interval=0)
    options = rescan.requests[0].options
    assert (options.retries, options.rate, options.concurrency, options.processes) == (5, 20, 10, 1)


def test_a_drift_gone_on_the_first_recheck_is_dropped():
    rescan = Rescans(
        {WEB1: {443: CLOSED, 80: OPEN}, WEB2: {8080: CLOSED}},
        {WEB1: {443: OPEN, 80: CLOSED}, WEB2: {8080: FILTERED}},
    )
    confirmed = confirm(DRIFT, OPTIONS, rescan, times=2, interval=0)
    assert confirmed.hosts == ()
    assert (confirmed.rechecked, confirmed.confirmed) == (3, 0)
    assert confirmed.appeared == ("127.0.0.13",)
    assert bool(confirmed)  # the appeared and disappeared hosts remain


def test_a_port_the_recheck_could_not_scan_is_not_confirmed():
    rescan = Rescans({WEB1: {443: OPEN, 80: CLOSED}, WEB2: {8080: FILTERED}})
    drift = Drift((HostDrift("web1", "127.0.0.11", opened=(443,), closed=(80,)),))

    def partial(request: ScanRequest) -> ScanReport:
        full = rescan(request).hosts[0]
        return report(
            HostResult(
                full.name, full.address, HostStatus.TIMED_OUT, full.ports, 0, "host timeout", (443,)
            )
        )

    confirmed = confirm(drift, OPTIONS, partial, times=1, interval=0)
    assert confirmed == Drift(
        (HostDrift("web1", "127.0.0.11", opened=(443,)),), rechecked=2, confirmed=1
    )


def test_nothing_to_confirm_sends_nothing():
    def rescan(request: ScanRequest) -> ScanReport:
        raise AssertionError("no rescan expected")

    drift = Drift((), appeared=("127.0.0.13",))
    assert confirm(drift, OPTIONS, rescan) is drift


def test_confirm_waits_between_rechecks(monkeypatch):
    from nornir_portscan.audit import drift as drift_module

    slept: list[float] = []
    monkeypatch.setattr(drift_module, "time", SimpleNamespace(sleep=slept.append))
    rescan = Rescans(*[{WEB1: {443: OPEN, 80: CLOSED}, WEB2: {8080: FILTERED}}] * 4)
    confirm(DRIFT, OPTIONS, rescan, times=4, interval=0.75)
    assert slept == [0.75, 0.75, 0.75]
    assert len(rescan.requests) == 4


# -- address matching and expected changes ----------------------------------------------------


def test_a_baseline_saved_under_an_address_pairs_with_the_named_host():
    saved = report_to_dict(report(host("127.0.0.11", "127.0.0.11", {22: OPEN}, (22, 80))))
    drift = compare(saved, report(host("web1", "127.0.0.11", {22: OPEN, 80: OPEN})))
    assert drift.hosts == (HostDrift("web1", "127.0.0.11", opened=(80,)),)
    assert (drift.appeared, drift.disappeared) == ((), ())
    assert drift.in_baseline("web1", "127.0.0.11")


def test_address_pairing_needs_one_host_on_each_side():
    saved = report_to_dict(
        report(host("a", "127.0.0.11", {22: OPEN}), host("b", "127.0.0.11", {22: OPEN}))
    )
    drift = compare(saved, report(host("web1", "127.0.0.11", {22: CLOSED})))
    assert drift.hosts == ()
    assert drift.appeared == ("web1 (127.0.0.11)",)
    assert not drift.in_baseline("web1", "127.0.0.11")


@pytest.mark.parametrize(
    ("policy", "unexpected"),
    [
        (None, (80, 443, 8080)),
        ({"expect_open": "80"}, (443, 8080)),
        ({"expect_closed": "443", "expect_filtered": "8080"}, (80,)),
        ({"expect_filtered": "443"}, (80, 8080)),  # closing is foreseen; the verdict judges it
    ],
)
def test_changes_the_policy_explains_are_expected(policy, unexpected):
    from nornir_portscan.audit.drift import unexpected_changes
    from nornir_portscan.audit.policy import parse_policy

    changed = HostDrift(
        "web1", "127.0.0.11", opened=(80,), closed=(443,),
        changed=(PortChange(8080, "closed", "filtered"),),
    )  # fmt: skip
    assert unexpected_changes(changed, parse_policy(policy) if policy else None) == unexpected


def test_a_baseline_address_in_another_spelling_is_the_same_host(tmp_path):
    """A hand-made or converted baseline may spell an address as a mapped, upper-case or
    uncompressed one: the host is the one scanned now, not one gone and one new."""
    saved = report_to_dict(
        report(host("web1", "127.0.0.11", {22: OPEN}), host("::1", "::1", {22: OPEN}))
    )
    saved["hosts"][0]["address"] = "::ffff:127.0.0.11"
    saved["hosts"][1]["address"] = "0:0:0:0:0:0:0:1"
    saved["hosts"][1]["name"] = "0:0:0:0:0:0:0:1"
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(saved))
    now = report(host("web1", "127.0.0.11", {22: CLOSED}), host("::1", "::1", {22: OPEN}))
    drift = compare(load_baseline(path), now)
    assert drift.appeared == ()
    assert drift.disappeared == ()
    assert drift.hosts == (HostDrift("web1", "127.0.0.11", closed=(22,)),)
