"""run_audit with a fake network and a fake clock: policies, waiting, drift, and their report."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace

import jsonschema
import pytest

from nornir_portscan import (
    HostResult,
    HostStatus,
    OptionError,
    PortResult,
    PortState,
    ScanOptions,
    ScanReport,
    ScanRequest,
    Target,
)
from nornir_portscan.audit import drift as drift_module
from nornir_portscan.audit import gates as gating
from nornir_portscan.audit.drift import Drift, HostDrift
from nornir_portscan.audit.gates import Audit, Unmet, WaitResult, apply_policies, run_audit
from nornir_portscan.audit.policy import HostVerdict, Policy, Violation, parse_policy
from nornir_portscan.reports.data import render_table, report_schema, report_to_dict, report_to_json

OPEN, CLOSED, FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED
REASONS = {OPEN: "syn-ack", FILTERED: "no-response"}
WEB1 = Target("web1", "127.0.0.11")
WEB2 = Target("web2", "127.0.0.12")
GHOST = Target("ghost.invalid", None, error="Name not known")


class Clock:
    """Stands in for ``time`` in gating and drift: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(gating, "time", fake)
    monkeypatch.setattr(drift_module, "time", SimpleNamespace(sleep=fake.sleep))
    return fake


class FakeNet:
    """A fake ``scanner``: ports are closed unless ``states`` says otherwise; ``changes[n]``
    runs just before the n-th scan (0-based), e.g. to open a port mid-wait. Like the real
    scanner it counts and lists every port of a target's port tuple as given."""

    def __init__(
        self,
        states: dict[tuple[str, int], PortState] | None = None,
        changes: dict[int, Callable[[FakeNet], None]] | None = None,
        scan_seconds: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self.states = dict(states or {})
        self.changes = changes or {}
        self.scan_seconds = scan_seconds
        self.clock = clock
        self.requests: list[ScanRequest] = []
        self.progress: list[object] = []

    def __call__(self, request: ScanRequest, *, progress: object = None) -> ScanReport:
        if change := self.changes.get(len(self.requests)):
            change(self)
        self.requests.append(request)
        self.progress.append(progress)
        if self.clock:
            self.clock.now += self.scan_seconds
        hosts = []
        for target in request.targets:
            if target.address is None:
                hosts.append(
                    HostResult(target.name, None, HostStatus.UNRESOLVED, error=target.error)
                )
                continue
            ports = request.ports_for(target)
            states = [(p, self.states.get((target.address, p), CLOSED)) for p in ports]
            results = tuple(
                PortResult(p, s, REASONS[s], 0.1, 1)
                for p, s in sorted(set(states))
                if s is not CLOSED
            )
            closed = sum(1 for _, s in states if s is CLOSED)
            hosts.append(
                HostResult(target.name, target.address, HostStatus.UP, results, closed, None, ports)
            )
        return ScanReport(tuple(hosts), request.options, 0.0, 1.0, len(hosts))


def becomes(address: str, port: int, state: PortState) -> Callable[[FakeNet], None]:
    """A change for ``FakeNet(changes=...)``."""

    def change(net: FakeNet) -> None:
        net.states[address, port] = state

    return change


def request(*targets: Target, ports: tuple[int, ...] = (22, 80)) -> ScanRequest:
    return ScanRequest(targets, ports, ScanOptions(timeout=0.5, min_timeout=0.1))


def plain(targets):
    """Targets without their policies, to compare what is scanned."""
    return [(t.name, t.address, t.ports, t.error) for t in targets]


# -- apply_policies -------------------------------------------------------------------------


def test_policy_ports_are_added_to_what_each_target_scans():
    own = Target("web2", "127.0.0.12", (443,))
    req = request(WEB1, own, Target("web3", "127.0.0.13"))
    policies = [
        parse_policy({"expect_closed": "23", "expect_open": "22", "allowed_open": "22"}),
        parse_policy({"expect_open": "8443", "allowed_open": "8443,9999"}),
        parse_policy({"expect_open": "80", "allowed_open": "80"}),  # already scanned
    ]
    done = apply_policies(req, policies)
    assert [t.policy for t in done.targets] == policies
    assert plain(done.targets) == plain(
        [
            Target("web1", "127.0.0.11", (22, 23, 80)),
            Target("web2", "127.0.0.12", (443, 8443)),
            Target("web3", "127.0.0.13"),
        ]
    )
    assert (done.ports, done.options) == (req.ports, req.options)


def test_allow_lists_alone_add_nothing():
    req = request(WEB1, WEB2)
    done = apply_policies(req, [parse_policy({"allowed_open": "1-1000"}), Policy()])
    assert plain(done.targets) == plain(req.targets)


# -- run_audit without waiting --------------------------------------------------------------


def test_no_policies_is_a_plain_scan():
    net = FakeNet({("127.0.0.11", 22): OPEN})
    req = request(WEB1)
    progress = print
    audit = run_audit(req, scanner=net, progress=progress)
    assert audit == Audit(audit.report, (), None, None)
    assert audit.report.hosts[0].open_ports == [22]
    assert net.requests == [req]
    assert net.progress == [progress]
    assert audit.verdict(0) is None
    assert not audit.violated


def test_verdicts_align_with_hosts():
    net = FakeNet({("127.0.0.11", 22): OPEN, ("127.0.0.12", 22): OPEN, ("127.0.0.12", 3306): OPEN})
    web = parse_policy({"expect_open": "22", "expect_closed": "23", "allowed_open": "22"})
    audit = run_audit(request(WEB1, WEB2, GHOST, WEB1), [web, web, web, Policy()], scanner=net)
    (scanned,) = net.requests
    assert [t.ports for t in scanned.targets] == [(22, 23, 80)] * 3 + [()]
    assert audit.verdicts == (
        HostVerdict("web1", True, (), None, web),
        HostVerdict("web2", True, (), None, web),
        HostVerdict("ghost.invalid", None, (), "Name not known", web),
        None,
    )
    assert not audit.violated  # a host that cannot be judged is an error, not a violation
    net.states["127.0.0.12", 80] = OPEN
    audit = run_audit(request(WEB1, WEB2), [web, web], scanner=net)
    assert audit.verdict(1) == HostVerdict(
        "web2", False, (Violation(80, "not open", "open", "syn-ack"),), None, web
    )
    assert audit.verdict(2) is None
    assert audit.violated


@pytest.mark.parametrize("policies", [None, [], [Policy(), Policy()]])
def test_wait_needs_expectations(policies):
    net = FakeNet()
    with pytest.raises(OptionError) as raised:
        run_audit(request(WEB1, WEB2), policies, wait=True, scanner=net)
    assert str(raised.value) == (
        "nothing to wait for: give expectations, e.g. expect_open='8080' or a policy file"
    )
    assert net.requests == []


@pytest.mark.parametrize(
    ("wait_timeout", "interval", "message"),
    [
        (0, 2.0, "invalid wait_timeout 0: use a number of seconds > 0, e.g. wait_timeout=60"),
        (60, -1, "invalid interval -1: use a number of seconds > 0, e.g. interval=2"),
        (float("nan"), 2.0, "invalid wait_timeout nan: use a number of seconds > 0, "
                            "e.g. wait_timeout=60"),
        (float("inf"), 2.0, "invalid wait_timeout inf: use a number of seconds > 0, "
                            "e.g. wait_timeout=60"),
        (60, "soon", "invalid interval 'soon': use a number of seconds > 0, e.g. interval=2"),
    ],
)  # fmt: skip
def test_bad_wait_times(wait_timeout, interval, message):
    net = FakeNet()
    with pytest.raises(OptionError) as raised:
        run_audit(
            request(WEB1),
            [parse_policy({"expect_open": "8080"})],
            wait=True,
            wait_timeout=wait_timeout,
            interval=interval,
            scanner=net,
        )
    assert str(raised.value) == message
    assert net.requests == []


# -- waiting --------------------------------------------------------------------------------


def test_wait_rescans_only_unmet_ports_until_they_converge(clock):
    net = FakeNet(
        {("127.0.0.11", 22): OPEN, ("127.0.0.12", 22): OPEN, ("127.0.0.12", 25): OPEN},
        changes={3: becomes("127.0.0.11", 8080, OPEN)},
        scan_seconds=0.25,
        clock=clock,
    )
    policies = [
        parse_policy({"expect_open": "22,8080", "expect_closed": "23"}),
        parse_policy({"expect_open": "22"}),
    ]
    audit = run_audit(
        request(WEB1, WEB2),
        policies,
        wait=True,
        wait_timeout=30,
        interval=1.0,
        scanner=net,
        progress=print,
    )
    assert audit.wait == WaitResult(converged=True, elapsed=4.0, rounds=4, unmet=(), timeout=30)
    assert clock.slept == [1.0, 1.0, 1.0]
    assert [plain(r.targets) for r in net.requests[1:]] == [
        plain([Target("web1", "127.0.0.11", (8080,))])
    ] * 3
    assert net.progress == [print, None, None, None]
    web1, web2 = audit.report.hosts
    assert (web1.open_ports, web1.closed_count, web1.scanned) == ([22, 8080], 2, (22, 23, 80, 8080))
    assert (web2.open_ports, web2.closed_count) == ([22], 1)  # 25 is not its to scan
    assert [v.compliant for v in audit.verdicts if v] == [True, True]
    assert not audit.violated


def test_wait_that_never_converges_names_every_unmet_pair(clock):
    net = FakeNet({("127.0.0.11", 23): OPEN}, scan_seconds=0.25, clock=clock)
    policy = parse_policy({"expect_open": "8080", "expect_closed": "23"})
    audit = run_audit(
        request(WEB1, GHOST, WEB2),
        [policy, policy, Policy()],
        wait=True,
        wait_timeout=3.0,
        interval=1.0,
        scanner=net,
    )
    # scans start at 0, 1.25 and 2.5 s; a fourth would start after the timeout
    assert audit.wait == WaitResult(
        converged=False,
        elapsed=2.75,
        rounds=3,
        unmet=(
            Unmet("web1", 23, "closed", "open"),
            Unmet("web1", 8080, "open", "closed"),
            Unmet("ghost.invalid", None, "judged", "Name not known"),
        ),
        timeout=3.0,
    )
    assert plain(net.requests[1].targets) == plain(
        [
            Target("web1", "127.0.0.11", (23, 8080)),
            Target("ghost.invalid", None, (22, 23, 80, 8080), "Name not known"),  # all its ports
        ]
    )
    assert audit.violated


def test_the_unmet_expectations_of_each_address_of_one_name(clock):
    """With both address families one name is two hosts: each has its own unmet list."""
    net = FakeNet({("::1", 8080): OPEN})
    policy = parse_policy({"expect_open": "8080"})
    audit = run_audit(
        request(Target("dual", "127.0.0.1"), Target("dual", "::1")),
        [policy, policy],
        wait=True,
        wait_timeout=1.5,
        interval=1.0,
        scanner=net,
    )
    assert audit.wait is not None
    assert audit.wait.unmet == (Unmet("dual", 8080, "open", "closed"),)
    assert (audit.unmet(0), audit.unmet(1)) == ((Unmet("dual", 8080, "open", "closed"),), ())
    assert (audit.failed(0), audit.failed(1)) == (True, False)


def test_no_unmet_expectations_without_a_wait():
    audit = run_audit(request(WEB1), [parse_policy({"expect_open": "8080"})], scanner=FakeNet())
    assert audit.unmet(0) == ()


def test_wait_never_sleeps_past_its_timeout(clock):
    net = FakeNet(clock=clock)
    audit = run_audit(
        request(WEB1),
        [parse_policy({"expect_open": "8080"})],
        wait=True,
        wait_timeout=1.0,
        interval=5.0,
        scanner=net,
    )
    assert audit.wait == WaitResult(False, 0.0, 1, (Unmet("web1", 8080, "open", "closed"),))
    assert clock.slept == []
    assert len(net.requests) == 1


def test_a_port_that_breaks_two_rules_is_probed_once(clock):
    net = FakeNet(
        {("127.0.0.11", 23): OPEN},
        changes={2: becomes("127.0.0.11", 23, CLOSED)},
    )
    audit = run_audit(
        request(WEB1, ports=(23,)),
        [parse_policy({"expect_closed": "23", "allowed_open": "22"})],
        wait=True,
        wait_timeout=10,
        interval=1,
        scanner=net,
    )
    # the first verdict has two violations for port 23 (closed expected; not allowed open)
    assert [r.ports_for(r.targets[0]) for r in net.requests] == [(23,), (23,), (23,)]
    assert audit.wait == WaitResult(True, 2.0, 3, ())
    (host,) = audit.report.hosts
    assert (host.open_ports, host.closed_count, host.scanned) == ([], 1, (23,))


def test_a_timed_out_host_converges_once_its_ports_are_scanned(clock):
    calls: list[ScanRequest] = []

    def scanner(req: ScanRequest, *, progress: object = None) -> ScanReport:
        calls.append(req)
        (target,) = req.targets
        if len(calls) == 1:  # the host timeout hit after port 22
            host = HostResult(
                "web1",
                "127.0.0.11",
                HostStatus.TIMED_OUT,
                (PortResult(22, OPEN, "syn-ack", 0.1, 1),),
                0,
                "host timeout: 2 ports not scanned",
                (22,),
            )
        else:
            closed = len(target.ports)
            host = HostResult("web1", "127.0.0.11", HostStatus.UP, (), closed, None, target.ports)
        return ScanReport((host,), req.options, 0.0, 1.0, 1)

    policy = parse_policy({"expect_open": "22", "expect_closed": "23,25"})
    audit = run_audit(
        request(WEB1), [policy], wait=True, wait_timeout=10, interval=1, scanner=scanner
    )
    assert [c.targets[0].ports for c in calls] == [(22, 23, 25, 80), (23, 25)]
    assert audit.wait == WaitResult(True, 1.0, 2, ())
    (host,) = audit.report.hosts
    assert (host.status, host.open_ports, host.closed_count, host.scanned) == (
        HostStatus.UP,
        [22],
        2,
        (22, 23, 25),
    )
    assert audit.verdict(0) == HostVerdict("web1", True, (), None, policy)


def test_a_host_not_judged_is_scanned_whole_again(clock):
    calls: list[ScanRequest] = []

    def scanner(req: ScanRequest, *, progress: object = None) -> ScanReport:
        calls.append(req)
        (target,) = req.targets
        status = HostStatus.TIMED_OUT if len(calls) == 1 else HostStatus.UP
        ports = req.ports_for(target)
        host = HostResult(
            "web1",
            "127.0.0.11",
            status,
            (PortResult(22, OPEN, "syn-ack", 0.1, 1),),
            len(ports) - 1,
            "host timeout" if len(calls) == 1 else None,
            ports,
        )
        return ScanReport((host,), req.options, 0.0, 1.0, 1)

    policy = parse_policy({"expect_open": "22"})
    audit = run_audit(
        request(WEB1), [policy], wait=True, wait_timeout=10, interval=1, scanner=scanner
    )
    assert [c.ports_for(c.targets[0]) for c in calls] == [(22, 80), (22, 80)]
    assert audit.wait == WaitResult(True, 1.0, 2, ())
    assert audit.report.hosts[0].status is HostStatus.UP


# -- baselines ------------------------------------------------------------------------------


def baseline_of(net: FakeNet, *targets: Target) -> dict[str, object]:
    """A saved report of ``targets`` as ``net`` is now; the call is not recorded."""
    saved = report_to_dict(net(request(*targets)))
    net.requests.clear()
    net.progress.clear()
    return saved


def test_drift_is_rechecked_and_confirmed(clock):
    net = FakeNet()
    baseline = baseline_of(net, WEB1, WEB2)
    net.states["127.0.0.11", 80] = OPEN
    audit = run_audit(
        request(WEB1, WEB2), baseline=baseline, recheck=2, scanner=net, progress=print
    )
    assert audit.drift == Drift(
        (HostDrift("web1", "127.0.0.11", opened=(80,)),), rechecked=1, confirmed=1
    )
    assert audit.verdicts == ()
    assert audit.violated
    assert [r.targets for r in net.requests[1:]] == [(Target("web1", "127.0.0.11", (80,)),)] * 2
    assert net.requests[1].options.processes == 1
    assert net.progress == [print, None, None]
    assert clock.slept == [0.5]


def test_a_blip_is_not_drift(clock):
    net = FakeNet()
    baseline = baseline_of(net, WEB1)
    net.states["127.0.0.11", 80] = OPEN
    net.changes = {1: becomes("127.0.0.11", 80, CLOSED)}
    audit = run_audit(request(WEB1), baseline=baseline, scanner=net)
    assert audit.drift == Drift((), rechecked=1, confirmed=0)
    assert audit.report.hosts[0].open_ports == [80]  # what the scan saw stays in the report
    assert len(net.requests) == 4  # the scan and three re-checks
    assert not audit.violated


def test_without_recheck_every_difference_counts(clock):
    net = FakeNet()
    baseline = baseline_of(net, WEB1)
    net.states["127.0.0.11", 80] = OPEN
    audit = run_audit(request(WEB1), baseline=baseline, recheck=0, scanner=net)
    assert audit.drift == Drift((HostDrift("web1", "127.0.0.11", opened=(80,)),))
    assert len(net.requests) == 1
    assert audit.violated


def test_drift_after_a_wait_compares_the_converged_report(clock):
    net = FakeNet()
    baseline = baseline_of(net, WEB1)
    net.changes = {2: becomes("127.0.0.11", 8080, OPEN)}
    policy = parse_policy({"expect_open": "8080"})
    audit = run_audit(
        request(WEB1), [policy], baseline=baseline, wait=True, interval=1, scanner=net
    )
    assert audit.wait == WaitResult(True, 2.0, 3, ())
    # 8080 was not in the baseline's scan: not a difference; the others did not change
    assert audit.drift == Drift(())
    assert not audit.violated


# -- the report of an audit -----------------------------------------------------------------


def test_audit_report_json_and_table(clock):
    net = FakeNet(
        {("127.0.0.11", 22): OPEN, ("127.0.0.12", 22): OPEN},
        scan_seconds=0.5,
        clock=clock,
    )
    baseline = baseline_of(net, WEB1, WEB2)
    net.states["127.0.0.12", 80] = OPEN
    policy = parse_policy({"expect_open": "22,8080", "allowed_open": "22,8080"})
    audit = run_audit(
        request(WEB1, WEB2, GHOST),
        [policy, policy, policy],
        baseline=baseline,
        wait=True,
        wait_timeout=1.4,
        interval=0.5,
        recheck=1,
        scanner=net,
    )
    data = json.loads(report_to_json(audit))
    jsonschema.validate(data, report_schema())
    assert data["compliance"] == {"compliant": 0, "non_compliant": 2, "error": 1, "violations": 3}
    assert data["wait"] == {
        "converged": False,
        "elapsed": 1.5,
        "rounds": 2,
        "unmet": [
            {"host": "web1", "port": 8080, "expected": "open", "actual": "closed"},
            {"host": "web2", "port": 80, "expected": "not open", "actual": "open"},
            {"host": "web2", "port": 8080, "expected": "open", "actual": "closed"},
            {
                "host": "ghost.invalid",
                "port": None,
                "expected": "judged",
                "actual": "Name not known",
            },
        ],
    }
    assert data["drift"] == {
        "drifted": True,
        "hosts_changed": 1,
        "appeared": [],
        "disappeared": [],
        "rechecked": 1,
        "confirmed": 1,
    }
    web1, web2, ghost = data["hosts"]
    assert web2["compliant"] is False
    assert web2["violations"] == [
        {"port": 80, "expected": "not open", "actual": "open", "reason": "syn-ack"},
        {"port": 8080, "expected": "open", "actual": "closed", "reason": "conn-refused"},
    ]
    assert web2["policy"] == {
        "expect_open": "22,8080",
        "expect_closed": "",
        "expect_filtered": "",
        "allowed_open": "22,8080",
    }
    # 80 opened and is not allowed open: an unexpected change
    assert web2["drift"] == {
        "opened": [80],
        "closed": [],
        "changed": [],
        "unexpected": [80],
        "in_baseline": True,
    }
    assert web1["drift"] == {
        "opened": [],
        "closed": [],
        "changed": [],
        "unexpected": [],
        "in_baseline": True,
    }
    assert (ghost["compliant"], ghost["violations"]) == (None, [])
    assert render_table(audit).splitlines()[-8:] == [
        "policy: 0 compliant, 2 non-compliant, 1 not judged",
        "drift: 1 hosts changed (1 of 1 differences confirmed on re-check), 0 appeared, "
        "0 disappeared",
        "  web2 port 80 not open -> open",
        "wait: did NOT converge after 1.5 s, 2 rounds",
        "failed: 3 of 3 hosts",
        "  web1 (127.0.0.11): did not converge within 1.4 s: port 8080 closed (expected open)",
        "  web2 (127.0.0.12): did not converge within 1.4 s: port 80 open (not in allowed_open), "
        "port 8080 closed (expected open); unexpected drift since the baseline: "
        "port 80 not open -> open",
        "  ghost.invalid: host unresolved: Name not known; did not converge within 1.4 s",
    ]


def test_a_plain_scan_report_has_no_audit_keys():
    net = FakeNet()
    data = report_to_dict(run_audit(request(WEB1), scanner=net))
    assert {"compliance", "drift", "wait"} & set(data) == set()
    assert {"compliant", "violations", "policy", "drift"} & set(data["hosts"][0]) == set()


def test_a_port_without_state_fails_its_host_in_every_door():
    """An up host with ports that ended ``error``: the CLI exits 3 for them, so the audit
    (which Nornir and Ansible report) fails the host too, and says which ports."""
    ports = (
        PortResult(22, PortState.OPEN, "syn-ack", 0.1, 1),
        PortResult(23, PortState.ERROR, "worker-died", None, 0),
        PortResult(24, PortState.ERROR, "worker-died", None, 0),
    )
    host = HostResult("web", "127.0.0.1", HostStatus.UP, ports, scanned=(22, 23, 24))
    audit = Audit(ScanReport((host,), ScanOptions(), 0.0, 1.0, 1))
    assert audit.failed(0)
    assert audit.failure(0) == "web (127.0.0.1): no state for ports 23-24 (worker-died)"
    clean = Audit(ScanReport((HostResult("web", "127.0.0.1", HostStatus.UP, ports[:1]),),
                             ScanOptions(), 0.0, 1.0, 1))  # fmt: skip
    assert not clean.failed(0)
