"""The scenarios of the conformance suite: settings in the words of ``build_job``, the outcome
the contract asks for, and the doors that cannot express a scenario (with the reason).

Every door is given the same settings; ``conformance_doors`` translates them into its idiom
(argparse flags, task keywords, module arguments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ABSENT = "<absent>"
"""A key the host entry does not have (``compliant`` without expectations, ...)."""

DOORS = ("cli", "python", "nornir", "nornir_inventory", "ansible", "ansible_module")
"""``nornir``: ``nr.run(task=portscan)``, one call per host; ``nornir_inventory``:
``scan_inventory(nr)``; ``ansible``: the action plugin scanning in the controller process;
``ansible_module``: the module itself, run by a Python the action plugin does not share."""

COMMON: dict[str, Any] = {"timeout": 0.5, "processes": 1}
"""Engine options of every scan, through every door: fast, one worker process."""

NAMES = (
    "plain",
    "ports_list",
    "exclude_ports",
    "exclude",
    "exclude_range",
    "max_hosts",
    "expect_open",
    "allowed_open",
    "allowed_open_empty",
    "expectation_adds_ports",
    "policy_file",
    "drift",
    "drift_explained",
    "wait_never_converges",
    "report_written",
    "bad_baseline",
    "bad_policy_file",
    "policy_file_missing",
    "report_unwritable",
    "report_not_written",
    "recheck_negative",
    "wait_timeout_word",
    "wait_timeout_nan",
    "interval_zero",
    # issue #12: other spellings of an address, zones, infinite times
    "exclude_mapped",
    "exclude_unknown_zone",
    "wait_timeout_inf",
    # issue #15: --shard I/N; the shards of 2 merge into the plain scan (test_conformance)
    "shard_0_of_2",
    "shard_1_of_2",
    "shard_0_of_4",
    "shard_empty",
    "shard_expect_open",
    "shard_index_too_big",
    "shard_word",
    "shard_count_zero",
    "shard_negative",
    # issue #16: UDP ports through every door (T:/U:, protocol=)
    "udp_mixed",
    "udp_protocol",
    "udp_bad_qualifier",
    "udp_bad_top",
)


@dataclass(frozen=True)
class World:
    """The hosts, ports and files every scenario uses (made once per session)."""

    root: Path
    hosts: tuple[str, str, str]
    open_port: int  # open on hosts[0] and hosts[1]; UDP: echoes on hosts[0], mute on hosts[1]
    extra_port: int  # open on hosts[0] only
    closed_port: int  # closed everywhere
    drift_port: int  # closed everywhere when the baseline was saved; since opened on hosts[1]
    baseline: Path
    policy: Path
    bad_baseline: Path
    bad_policy: Path
    missing_report: Path  # in a directory that does not exist
    directory: Path  # a directory: no report file can be written there


@dataclass(frozen=True)
class Scenario:
    """``expect`` is the whole outcome (hosts, sorted by name) or None; ``error_has`` the
    phrases an error outcome must contain (its exact text is the doors' to agree on), and
    ``error_kind`` which error: ``error`` (bad input, nothing sent) or ``report_error`` (the
    scan ran, its report could not be written)."""

    name: str
    settings: dict[str, Any]
    expect: list[dict[str, Any]] | None = None
    error_has: tuple[str, ...] = ()
    error_kind: str = "error"
    cli_exit: int | None = None  # None: 0 when every host passed, else 1
    skip: dict[str, str] = field(default_factory=dict)
    report_file: bool = False  # each door writes a JSON report; its hosts are the outcome


def host(
    name: str,
    *,
    open_ports: tuple[int, ...] = (),
    closed: int,
    failure: str = "",
    compliant: Any = ABSENT,
    violations: Any = ABSENT,
    drift: dict[str, Any] | None = None,
    wait: dict[str, Any] | None = None,
    udp: list[list[Any]] | None = None,
) -> dict[str, Any]:
    """A host entry as the normalizer gives it: host names are their addresses."""
    entry: dict[str, Any] = {
        "name": name,
        "address": name,
        "status": "up",
        "open_ports": list(open_ports),
        "filtered_ports": [],
        "closed_count": closed,
        "passed": not failure,
        "failure": failure,
        "compliant": compliant,
        "violations": violations,
    }
    if drift is not None:
        entry["drift"] = drift
    if wait is not None:
        entry["wait"] = wait
    if udp is not None:
        entry["udp"] = udp
    return entry


def violation(port: int, expected: str, actual: str, reason: str) -> dict[str, Any]:
    return {"port": port, "expected": expected, "actual": actual, "reason": reason}


def drift(opened: tuple[int, ...] = (), unexpected: tuple[int, ...] = ()) -> dict[str, Any]:
    return {
        "opened": list(opened),
        "closed": [],
        "changed": [],
        "unexpected": list(unexpected),
        "in_baseline": True,
    }


PER_HOST_MAX = (
    "the per-host task scans one host per call, so max_hosts counts that call's host; the "
    "run-wide limit is scan_inventory's (door nornir_inventory)"
)
MODULE_SCENARIOS = frozenset(
    (
        "plain",
        "expect_open",
        "wait_never_converges",
        "max_hosts",
        "bad_baseline",
        "bad_policy_file",
        "policy_file_missing",
        "report_unwritable",
        "report_not_written",
        "recheck_negative",
        "wait_timeout_word",
        "wait_timeout_nan",
        "interval_zero",
        "udp_mixed",
        "udp_protocol",  # a new option with choices: the module's argument handling
        "udp_bad_qualifier",
    )
)
"""What the ``ansible_module`` door runs: a scan, a verdict, a wait, and every input and report
error (AnsibleModule's argument handling is where the module differs from the in-process door)."""
MODULE_SUBSET = (
    "each module run costs seconds; the module and the in-process door run the same "
    "module_utils code, so the module door runs the scenarios where argument handling and the "
    "JSON transport matter (MODULE_SCENARIOS)"
)
PER_HOST_REPORT = (
    "the per-host task has no report files by design (report= answers 'use scan_inventory'); "
    "the run's report is scan_inventory's (door nornir_inventory)"
)


SILENT = ("open|filtered", "no-response")  # a bound UDP socket that never answers
PER_HOST_PORTS = (
    "the per-host task names the host whose call got bad ports ('ports of target ...'), by "
    "design (tests/nornir/test_tasks.py); scan_inventory (door nornir_inventory) gives the "
    "run's one line"
)
PER_HOST_SHARD = (
    "the per-host task scans one host per call; a shard of a run is a filter of the inventory "
    "(fleet.shard_hosts) for scan_inventory (door nornir_inventory)"
)
MODULE_SHARD = "portscan_shard is a module in both Ansible doors: door ansible runs it"
SHARD_VERDICTS = (
    "portscan_shard scans a plan's shard; the expectations are the inventory's, judged by "
    "portscan_merge (docs/distributed.md)"
)
SHARD_SKIP = {"nornir": PER_HOST_SHARD, "ansible_module": MODULE_SHARD}


def _in_shard(hosts: tuple[str, ...], shard: str) -> set[str]:
    """The hosts of ``shard`` (``I/N``) of ``hosts`` named by their addresses."""
    from nornir_portscan.fleet import parse_shard, shard_hosts

    return {name for name, _ in shard_hosts([(h, h) for h in hosts], *parse_shard(shard))}


def _bad_shard(name: str, text: str, *phrases: str) -> Scenario:
    return Scenario(
        name,
        {"ports": "22", "shard": text},
        error_has=(f"invalid shard {text!r}", *phrases),
        cli_exit=2,
        skip=dict(SHARD_SKIP),
    )


def scenarios(w: World) -> dict[str, Scenario]:
    """Every scenario, by name (the order of ``NAMES``)."""
    a, b, c = w.hosts
    o, q, x, d = w.open_port, w.extra_port, w.closed_port, w.drift_port
    expect_o = {"expect_open": str(o)}
    plain = {
        a: host(a, open_ports=(o,), closed=1),
        b: host(b, open_ports=(o,), closed=1),
        c: host(c, closed=2),
    }
    halves = [_in_shard(w.hosts, f"{i}/2") for i in range(2)]
    assert all(halves), halves  # each shard of 2 has a host: the merge means something
    quarters = [_in_shard(w.hosts, f"{i}/4") for i in range(4)]
    empty = next(i for i, hosts in enumerate(quarters) if not hosts)
    judged = next(i for i, hosts in enumerate(halves) if c in hosts)  # c fails expect_open

    def shard(name: str, text: str, hosts: set[str]) -> Scenario:
        assert hosts
        expect = [plain[h] for h in sorted(hosts)]
        return Scenario(name, {"ports": f"{o},{x}", "shard": text}, expect, skip=dict(SHARD_SKIP))

    found = [
        Scenario(
            "plain",
            {"ports": f"{o},{x}"},
            [
                host(a, open_ports=(o,), closed=1),
                host(b, open_ports=(o,), closed=1),
                host(c, closed=2),
            ],
        ),
        Scenario(
            "ports_list",
            {"ports": [o, q, x]},
            [
                host(a, open_ports=tuple(sorted((o, q))), closed=1),
                host(b, open_ports=(o,), closed=2),
                host(c, closed=3),
            ],
        ),
        Scenario(
            "exclude_ports",
            {"ports": f"{o},{q},{x}", "exclude_ports": str(q)},
            [
                host(a, open_ports=(o,), closed=1),
                host(b, open_ports=(o,), closed=1),
                host(c, closed=2),
            ],
        ),
        Scenario(
            # the per-host Nornir task answers an excluded host with a non-failed Result that
            # says so; the normalizer counts that as absent, as the other doors leave it out
            "exclude",
            {"ports": f"{o},{x}", "exclude": [c]},
            [host(a, open_ports=(o,), closed=1), host(b, open_ports=(o,), closed=1)],
        ),
        Scenario(
            "exclude_range",
            {"ports": f"{o},{x}", "exclude": [f"{b}-{c.rsplit('.', 1)[1]}"]},
            [host(a, open_ports=(o,), closed=1)],
        ),
        Scenario(
            "max_hosts",
            {"ports": f"{o},{x}", "max_hosts": 2},
            error_has=("3 hosts", "limit of 2", "max_hosts"),
            cli_exit=2,
            skip={"nornir": PER_HOST_MAX},
        ),
        Scenario(
            "expect_open",
            {"ports": f"{o},{x}", **expect_o},
            [
                host(a, open_ports=(o,), closed=1, compliant=True, violations=[]),
                host(b, open_ports=(o,), closed=1, compliant=True, violations=[]),
                host(
                    c,
                    closed=2,
                    compliant=False,
                    violations=[violation(o, "open", "closed", "conn-refused")],
                    failure=f"{c}: port {o} closed (expected open)",
                ),
            ],
        ),
        Scenario(
            "allowed_open",
            {"ports": f"{o},{q},{x}", "allowed_open": str(o)},
            [
                host(
                    a,
                    open_ports=tuple(sorted((o, q))),
                    closed=1,
                    compliant=False,
                    violations=[violation(q, "not open", "open", "syn-ack")],
                    failure=f"{a}: port {q} open (not in allowed_open)",
                ),
                host(b, open_ports=(o,), closed=2, compliant=True, violations=[]),
                host(c, closed=3, compliant=True, violations=[]),
            ],
        ),
        Scenario(
            # an empty allow-list: no port may be open
            "allowed_open_empty",
            {"ports": f"{o},{q},{x}", "allowed_open": ""},
            [
                host(
                    a,
                    open_ports=tuple(sorted((o, q))),
                    closed=1,
                    compliant=False,
                    violations=[
                        violation(p, "not open", "open", "syn-ack") for p in sorted((o, q))
                    ],
                    failure=f"{a}: "
                    + ", ".join(f"port {p} open (not in allowed_open)" for p in sorted((o, q))),
                ),
                host(
                    b,
                    open_ports=(o,),
                    closed=2,
                    compliant=False,
                    violations=[violation(o, "not open", "open", "syn-ack")],
                    failure=f"{b}: port {o} open (not in allowed_open)",
                ),
                host(c, closed=3, compliant=True, violations=[]),
            ],
        ),
        Scenario(
            # the ports of the expectations are scanned even if ports does not list them
            "expectation_adds_ports",
            {"ports": str(o), "expect_closed": str(x)},
            [
                host(a, open_ports=(o,), closed=1, compliant=True, violations=[]),
                host(b, open_ports=(o,), closed=1, compliant=True, violations=[]),
                host(c, closed=2, compliant=True, violations=[]),
            ],
        ),
        Scenario(
            "policy_file",
            {"ports": f"{o},{q},{x}", "policy_file": str(w.policy)},
            [
                host(
                    a,
                    open_ports=tuple(sorted((o, q))),
                    closed=1,
                    compliant=False,
                    violations=[violation(q, "not open", "open", "syn-ack")],
                    failure=f"{a}: port {q} open (not in allowed_open)",
                ),
                host(b, open_ports=(o,), closed=2, compliant=True, violations=[]),
                host(
                    c,
                    closed=3,
                    compliant=False,
                    violations=[violation(x, "filtered", "closed", "conn-refused")],
                    failure=f"{c}: port {x} closed (expected filtered)",
                ),
            ],
        ),
        Scenario(
            "drift",
            {"ports": f"{o},{q},{d}", "baseline": str(w.baseline), "recheck": 1},
            [
                host(a, open_ports=tuple(sorted((o, q))), closed=1, drift=drift()),
                host(
                    b,
                    open_ports=tuple(sorted((o, d))),
                    closed=1,
                    drift=drift(opened=(d,), unexpected=(d,)),
                    failure=f"{b}: unexpected drift since the baseline: port {d} not open -> open",
                ),
                host(c, closed=3, drift=drift()),
            ],
        ),
        Scenario(
            # the port that opened since the baseline is expected open: drift, but explained
            "drift_explained",
            {
                "ports": f"{o},{q},{d}",
                "baseline": str(w.baseline),
                "recheck": 1,
                "expect_open": str(d),
            },
            [
                host(
                    a,
                    open_ports=tuple(sorted((o, q))),
                    closed=1,
                    drift=drift(),
                    compliant=False,
                    violations=[violation(d, "open", "closed", "conn-refused")],
                    failure=f"{a}: port {d} closed (expected open)",
                ),
                host(
                    b,
                    open_ports=tuple(sorted((o, d))),
                    closed=1,
                    drift=drift(opened=(d,)),
                    compliant=True,
                    violations=[],
                ),
                host(
                    c,
                    closed=3,
                    drift=drift(),
                    compliant=False,
                    violations=[violation(d, "open", "closed", "conn-refused")],
                    failure=f"{c}: port {d} closed (expected open)",
                ),
            ],
        ),
        Scenario(
            "wait_never_converges",
            {"ports": f"{o},{x}", **expect_o, "wait": True, "wait_timeout": 1, "interval": 0.2},
            [
                host(
                    a,
                    open_ports=(o,),
                    closed=1,
                    compliant=True,
                    violations=[],
                    wait={"converged": True, "unmet": []},
                ),
                host(
                    b,
                    open_ports=(o,),
                    closed=1,
                    compliant=True,
                    violations=[],
                    wait={"converged": True, "unmet": []},
                ),
                host(
                    c,
                    closed=2,
                    compliant=False,
                    violations=[violation(o, "open", "closed", "conn-refused")],
                    wait={
                        "converged": False,
                        "unmet": [{"port": o, "expected": "open", "actual": "closed"}],
                    },
                    failure=f"{c}: did not converge within 1 s: port {o} closed (expected open)",
                ),
            ],
        ),
        Scenario(
            "report_written",
            {"ports": f"{o},{x}", **expect_o},
            [
                host(a, open_ports=(o,), closed=1, compliant=True, violations=[]),
                host(b, open_ports=(o,), closed=1, compliant=True, violations=[]),
                host(
                    c,
                    closed=2,
                    compliant=False,
                    violations=[violation(o, "open", "closed", "conn-refused")],
                    failure=f"{c}: port {o} closed (expected open)",
                ),
            ],
            skip={"nornir": PER_HOST_REPORT},
            report_file=True,
        ),
        Scenario(
            "bad_baseline",
            {"ports": f"{o},{x}", "baseline": str(w.bad_baseline)},
            error_has=(repr(str(w.bad_baseline)), "not JSON"),
            cli_exit=2,
        ),
        Scenario(
            # YAML reads '0' as the number 0: not a mapping of defaults, groups and hosts
            "bad_policy_file",
            {"ports": f"{o},{x}", "policy_file": str(w.bad_policy)},
            error_has=(repr(str(w.bad_policy)),),
            cli_exit=2,
        ),
        Scenario(
            # a relative name that names no file, whatever the door's working directory
            "policy_file_missing",
            {"ports": f"{o},{x}", "policy_file": "0"},
            error_has=("'0'",),
            cli_exit=2,
        ),
        Scenario(
            # the destination is checked before the scan: an input error, nothing sent
            "report_unwritable",
            {"ports": f"{o},{x}", "reports": {"json": str(w.missing_report)}},
            error_has=(repr(str(w.missing_report)), "no such directory"),
            cli_exit=2,
            skip={"nornir": PER_HOST_REPORT},
        ),
        Scenario(
            # a directory as the destination: refused before the scan too, nothing sent
            # (a write that fails after the scan, a full disk: tests/integration/test_cli_stages)
            "report_not_written",
            {"ports": f"{o},{x}", "reports": {"json": str(w.directory)}},
            error_has=(repr(str(w.directory)), "it is a directory"),
            cli_exit=2,
            skip={"nornir": PER_HOST_REPORT},
        ),
        Scenario(
            "recheck_negative",
            {"ports": f"{o},{x}", "recheck": -1},
            error_has=("recheck", "-1"),
            cli_exit=2,
        ),
        Scenario(
            "wait_timeout_word",
            {"ports": f"{o},{x}", "wait_timeout": "soon"},
            error_has=("wait_timeout", "soon"),
            cli_exit=2,
        ),
        Scenario(
            "wait_timeout_nan",
            {"ports": f"{o},{x}", "wait_timeout": float("nan")},
            error_has=("wait_timeout", "nan"),
            cli_exit=2,
        ),
        Scenario(
            "interval_zero",
            {"ports": f"{o},{x}", "interval": 0},
            error_has=("interval", "0"),
            cli_exit=2,
        ),
        # issue #12: an exclusion holds for every spelling of the address (IPv4-mapped, with
        # a zone the kernel ignores off link-local); an unknown zone is bad input
        Scenario(
            "exclude_mapped",
            {"ports": f"{o},{x}", "exclude": [f"::ffff:{c}%lo"]},
            [host(a, open_ports=(o,), closed=1), host(b, open_ports=(o,), closed=1)],
        ),
        Scenario(
            "exclude_unknown_zone",
            {"ports": f"{o},{x}", "exclude": ["::1%nosuch0"]},
            error_has=("'::1%nosuch0'", "no interface 'nosuch0'", "e.g. 'fe80::1%eth0'"),
            cli_exit=2,
        ),
        Scenario(
            "wait_timeout_inf",
            {"ports": f"{o},{x}", "wait_timeout": float("inf")},
            error_has=("wait_timeout", "inf"),
            cli_exit=2,
        ),
        shard("shard_0_of_2", "0/2", halves[0]),
        shard("shard_1_of_2", "1/2", halves[1]),
        shard("shard_0_of_4", "0/4", quarters[0]),
        Scenario(  # a shard with no host: nothing to scan, and no error
            "shard_empty",
            {"ports": f"{o},{x}", "shard": f"{empty}/4"},
            [],
            skip=dict(SHARD_SKIP),
        ),
        Scenario(
            "shard_expect_open",
            {"ports": f"{o},{x}", "shard": f"{judged}/2", **expect_o},
            [
                host(h, open_ports=(o,), closed=1, compliant=True, violations=[])
                if h != c
                else host(
                    c,
                    closed=2,
                    compliant=False,
                    violations=[violation(o, "open", "closed", "conn-refused")],
                    failure=f"{c}: port {o} closed (expected open)",
                )
                for h in sorted(halves[judged])
            ],
            skip={**SHARD_SKIP, "ansible": SHARD_VERDICTS},
        ),
        _bad_shard("shard_index_too_big", "3/2", "below the count 2", "e.g. '1/2'"),
        _bad_shard("shard_word", "a/b", "use INDEX/COUNT", "e.g. '0/2'"),
        _bad_shard("shard_count_zero", "0/0", "the count must be 1 to 4096"),
        _bad_shard("shard_negative", "-1/2", "use INDEX/COUNT"),
        Scenario(
            # UDP o: an echo on a, a bound socket that never answers on b, nothing on c
            "udp_mixed",
            {"ports": f"T:{o},U:{o},{x}"},
            [
                host(a, open_ports=(o,), closed=1, udp=[[o, "open", "udp-response"]]),
                host(b, open_ports=(o,), closed=1, udp=[[o, *SILENT]]),
                host(c, closed=3, udp=[]),
            ],
        ),
        Scenario(
            # protocol holds for the expectations too: expect_closed x is UDP x
            "udp_protocol",
            {"ports": str(o), "protocol": "udp", "expect_closed": str(x)},
            [
                host(a, closed=1, compliant=True, violations=[], udp=[[o, "open", "udp-response"]]),
                host(b, closed=1, compliant=True, violations=[], udp=[[o, *SILENT]]),
                host(c, closed=2, compliant=True, violations=[], udp=[]),
            ],
        ),
        Scenario(
            "udp_bad_qualifier",
            {"ports": f"{o},U:"},
            error_has=("no port after 'U:'", "e.g. 'U:53,161'"),
            cli_exit=2,
            skip={"nornir": PER_HOST_PORTS},
        ),
        Scenario(
            "udp_bad_top",
            {"ports": "U:top5000"},
            error_has=("invalid port set 'U:top5000'", "U:top1 to U:top1000"),
            cli_exit=2,
            skip={"nornir": PER_HOST_PORTS},
        ),
    ]
    assert tuple(s.name for s in found) == NAMES
    for scenario in found:
        if scenario.name not in MODULE_SCENARIOS:
            scenario.skip.setdefault("ansible_module", MODULE_SUBSET)
    return {s.name: s for s in found}
