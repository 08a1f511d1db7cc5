# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What the ``portscan`` module does, shared by the module and its action plugin.

The module runs it in the interpreter that runs modules; the action plugin runs it in the
controller process when the module would run there anyway (see ``plugins/action/portscan.py``).
Both fail the task with the message of ``TaskError``, and with ``fail_on_violation`` with the
message of ``ViolationError``.

A scan with expectations, a baseline or a wait is an audit (``gating.run_audit``). Every host
entry says whether it ``passed`` (``Audit.failed``: it did not if it could not be scanned, broke
an expectation, after waiting with ``wait``, or drifted from the baseline in a way its
expectations do not explain) and, if not, why in one line (``failure``).
"""

from __future__ import annotations

import functools
import traceback
from pathlib import Path

try:
    from nornir_portscan import (InputError, PortscanError, ScanInterrupted, build_request,
                                 parse_ports, scan)
    from nornir_portscan import WorkerPool  # noqa: F401 - for the action plugin
    from nornir_portscan.reports.pages import audit_to_html, audit_to_markdown
    from nornir_portscan.audit.drift import load_baseline
    from nornir_portscan.audit.gates import Audit, run_audit
    from nornir_portscan.audit.policy import parse_policy
    from nornir_portscan.reports.data import (host_to_dict, render_table, report_to_dict,
                                              report_to_json)
    from nornir_portscan.engine.executor import TargetSpec
    from nornir_portscan.reports.nmap_xml import report_to_xml
except ImportError:
    ENGINE_IMPORT_ERROR = traceback.format_exc()
else:
    ENGINE_IMPORT_ERROR = None

INSTALL_HINT = "to scan ports (pip install nornir-portscan)"

# The module's DOCUMENTATION describes exactly these options (a test compares them).
ARGUMENT_SPEC = {
    "targets": {"type": "list", "elements": "raw"},
    "ports": {"type": "raw", "default": "top1000"},
    "exclude": {"type": "list", "elements": "str", "default": []},
    "exclude_ports": {"type": "raw"},
    "timeout": {"type": "float", "default": 1.0},
    "min_timeout": {"type": "float", "default": 0.1},
    "adaptive": {"type": "bool", "default": True},
    "retries": {"type": "int", "default": 1},
    "rate": {"type": "float"},
    "concurrency": {"type": "int", "default": 1000},
    "host_concurrency": {"type": "int"},
    "processes": {"type": "int"},
    "host_timeout": {"type": "float"},
    "include_closed": {"type": "bool", "default": False},
    "address_family": {"type": "str", "choices": ["ipv4", "ipv6", "both"], "default": "ipv4"},
    "max_hosts": {"type": "int", "default": 65536},
    "expect_open": {"type": "raw"},
    "expect_closed": {"type": "raw"},
    "expect_filtered": {"type": "raw"},
    "allowed_open": {"type": "raw"},
    "inventory_policy": {"type": "bool", "default": True},
    "fail_on_violation": {"type": "bool", "default": False},
    "baseline": {"type": "path"},
    "recheck": {"type": "int", "default": 3},
    "wait": {"type": "bool", "default": False},
    "wait_timeout": {"type": "float", "default": 300.0},
    "interval": {"type": "float", "default": 2.0},
    "report": {"type": "path"},
    "report_table": {"type": "path"},
    "report_xml": {"type": "path"},
    "report_markdown": {"type": "path"},
    "report_html": {"type": "path"},
}

ENGINE_OPTIONS = ("timeout", "min_timeout", "adaptive", "retries", "rate", "concurrency",
                  "host_concurrency", "processes", "host_timeout", "include_closed")
# The expectations: module options (for every target) and keys of a dict target (its own).
# Kept literal, not POLICY_KEYS, so that the action plugin can use it without the engine.
EXPECTATIONS = ("expect_open", "expect_closed", "expect_filtered", "allowed_open")
TARGET_KEYS = frozenset(("name", "address", "ports", *EXPECTATIONS))
TARGET_EXAMPLE = "e.g. '127.0.0.1' or {name: web1, address: 127.0.0.2, ports: '22,80'}"
HOST_ERRORS = ("unresolved", "timed_out", "error")  # statuses that fail a host
REPORTS = ("report", "report_table", "report_xml", "report_markdown", "report_html")


class TaskError(Exception):
    """The task fails with this one-line message."""


class ViolationError(Exception):
    """With ``fail_on_violation``: hosts did not pass. ``result`` is the whole task result."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def run(params, check_mode=False, workers=None):
    """Scan (and audit) as ``params`` (validated against ARGUMENT_SPEC) say; return the result.

    ``workers``: a ``WorkerPool`` started ahead, for the scan to take its processes from.

    The result holds ``hosts``, ``summary``, ``failed_hosts``, with an audit ``compliance``,
    ``drift`` and ``wait``, and ``warnings`` (to show, not to return). Raises TaskError for bad
    input, a scan that cannot run or a report that cannot be written; with
    ``fail_on_violation``, ViolationError when a host did not pass.
    """
    try:
        request, policies = build(params)
        baseline = load_baseline(params["baseline"]) if params["baseline"] else None
        check_gate(params, policies)
    except ValueError as exc:  # InputError is a ValueError
        raise TaskError(str(exc)) from None
    if not check_mode:  # before a scan (or a wait) that may take long
        for option in REPORTS:
            path = params[option]
            if path and not Path(path).parent.is_dir():
                raise TaskError(f"cannot write the report to {path!r}: No such directory")
    try:
        audit = run_audit(request, policies if any(policies) else None, baseline=baseline,
                          wait=params["wait"], wait_timeout=params["wait_timeout"],
                          interval=params["interval"], recheck=params["recheck"],
                          scanner=functools.partial(scan, workers=workers))
    except ScanInterrupted:
        raise TaskError("scan interrupted") from None
    except PortscanError as exc:
        raise TaskError(str(exc)) from None
    if not check_mode:
        try:
            write_reports(params, audit)
        except OSError as exc:
            raise TaskError(f"cannot write the report to {exc.filename!r}: "
                              f"{exc.strerror or exc}") from None
    result = task_result(audit, params["wait_timeout"])
    result["warnings"] = list(audit.report.warnings)
    if params["fail_on_violation"] and result["failed_hosts"]:
        raise ViolationError(violation_message(result), result)
    return result


def check_gate(params, policies):
    """Check the audit options; raises ValueError with a one-line message."""
    if params["recheck"] < 0:
        raise ValueError(f"invalid recheck {params['recheck']}: use how many times to re-probe "
                         "a difference from the baseline, 0 or more, e.g. recheck: 3")
    for name in ("wait_timeout", "interval"):
        if params[name] <= 0:
            raise ValueError(f"invalid {name} {params[name]:g}: use a number of seconds > 0, "
                             "e.g. wait_timeout: 60, interval: 2")
    if params["wait"] and not any(policies):
        raise ValueError("nothing to wait for: wait needs expectations, e.g. expect_open: 8080 "
                         "or the host variable portscan_expect_open")


def port_spec(value):
    """YAML gives ``22`` as an int; the engine takes a string or a list."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def to_target(item):
    """A ``targets`` item as the engine wants it, and its own expectations (the keys it sets);
    raises ValueError with a one-line message."""
    if isinstance(item, str):
        return item, {}
    if not isinstance(item, dict):
        raise ValueError(f"invalid target {item!r}: use a string or a dict, {TARGET_EXAMPLE}")
    unknown = sorted(set(item) - TARGET_KEYS)
    if unknown:
        raise ValueError(f"invalid target {item!r}: unknown key {unknown[0]!r}, use name, "
                         f"address, ports, {', '.join(EXPECTATIONS)}, {TARGET_EXAMPLE}")
    name = item.get("name") or item.get("address")
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid target {item!r}: give a name (a string), {TARGET_EXAMPLE}")
    address = item.get("address")
    if address is not None and not isinstance(address, str):
        raise ValueError(f"invalid address {address!r} of target {name!r}: use a string, "
                         f"{TARGET_EXAMPLE}")
    ports = item.get("ports")
    own = {key: port_spec(item[key]) for key in EXPECTATIONS if key in item}
    return TargetSpec(name, address, port_spec(ports) if ports not in (None, "", []) else None), own


def build(params):
    """The engine's ScanRequest for the parameters and the policies aligned with its targets;
    raises ValueError (InputError included)."""
    items = [to_target(item) for item in params["targets"] or ()]
    if not items:
        raise ValueError("no targets given: list at least one, e.g. targets: ['127.0.0.1'], "
                         "or omit targets to scan the play's hosts")
    defaults = {key: port_spec(params[key]) for key in EXPECTATIONS if params[key] is not None}
    default = parse_policy(defaults, where="task options")
    named, named_policies, cache = [], [], {}
    for target, own in items:
        if not isinstance(target, TargetSpec):
            continue
        if target.ports is not None:
            try:  # the engine's message does not say whose ports they are
                parse_ports(target.ports)
            except InputError as exc:
                raise ValueError(f"ports of target {target.name!r}: {exc}") from None
        named.append(target)
        named_policies.append(policy_of(target.name, defaults, own, default, cache))
    request = build_request(
        [target for target, _ in items],
        port_spec(params["ports"]),
        exclude=params["exclude"],
        exclude_ports=port_spec(params["exclude_ports"]),
        family=params["address_family"],
        max_hosts=params["max_hosts"],
        **{name: params[name] for name in ENGINE_OPTIONS},
    )
    return request, align(request.targets, named, named_policies, default,
                          params["address_family"])


def policy_of(name, defaults, own, default, cache):
    """A dict target's policy: each key it sets replaces the task's (null included: for
    ``allowed_open`` that means no allow-list). Hosts with the same settings share one."""
    if not own:
        return default
    raw = dict(defaults, **own)
    key = repr(sorted(raw.items()))
    if key not in cache:
        cache[key] = parse_policy(raw, where=f"policy of {name!r}")
    return cache[key]


def align(targets, named, named_policies, default, family):
    """One policy per engine target. The engine lists string targets first, then each dict
    target's one address (two with ``address_family: both``), in order."""
    policies = [default] * len(targets)
    end = len(targets)
    most = 2 if family == "both" else 1
    for spec, policy in zip(reversed(named), reversed(named_policies), strict=True):
        taken = 0
        while end > 0 and taken < most and targets[end - 1].name == spec.name:
            end -= 1
            taken += 1
            policies[end] = policy
    return policies


def host_entry(host, verdict=None, drift=None):
    """``host_to_dict`` plus the booleans that read well in ``when:``."""
    entry = host_to_dict(host, verdict, drift)
    scanned = sum(1 for p in entry["ports"] if p["state"] != "closed") + entry["closed_count"]
    entry.update(
        resolved=entry["address"] is not None,
        timed_out=entry["status"] == "timed_out",
        any_open=bool(entry["open_ports"]),
        all_open=entry["up"] and scanned > 0 and len(entry["open_ports"]) == scanned,
    )
    return entry


def hosts_by_name(audit, wait_timeout=None):
    """Entries keyed by target name; a repeated name (two address families) gets ``@address``.

    With an audit, each entry also has its ``compliant``/``violations``/``policy``, its
    ``drift`` and its ``wait``; every entry says whether it ``passed`` and, if not, why.
    """
    if not isinstance(audit, Audit):
        audit = Audit(audit)
    hosts = {}
    for index, host in enumerate(audit.report.hosts):
        key = host.name if host.name not in hosts else f"{host.name}@{host.address}"
        verdict = audit.verdict(index)
        entry = host_entry(host, verdict, audit.drift)
        if audit.wait is not None and verdict is not None:
            unmet = audit.unmet(index)
            entry["wait"] = {
                "converged": not unmet,
                "unmet": [{"port": u.port, "expected": u.expected, "actual": u.actual}
                          for u in unmet if u.port is not None],
            }
        unexpected = set(audit.unexpected_drift(index))
        changes = audit.drift.for_host(host.name, host.address) if unexpected else None
        problems = host_problems(
            entry, [c for c in changes.changes if c.port in unexpected] if changes else [],
            wait_timeout)
        entry["passed"] = not audit.failed(index)
        # a string either way: assert's fail_msg rejects null, even when the host passed
        entry["failure"] = (f"{label(entry)}: {'; '.join(problems or ['failed'])}"
                            if not entry["passed"] else "")
        hosts[key] = entry
    return hosts


def host_problems(entry, unexpected, wait_timeout):
    """Why a host did not pass, one phrase per kind of problem."""
    problems = []
    if entry["status"] in HOST_ERRORS:
        status = entry["status"].replace("_", " ")
        problems.append(f"host {status}: {entry['error']}" if entry["error"] else f"host {status}")
    wait = entry.get("wait")
    if wait is not None and not wait["converged"]:
        unmet = ", ".join(violation_text(u) for u in wait["unmet"])
        problems.append(f"did not converge within {wait_timeout:g} s" + (f": {unmet}" if unmet
                                                                          else ""))
    elif entry.get("violations"):
        problems.append(", ".join(violation_text(v) for v in entry["violations"]))
    if unexpected:
        problems.append("unexpected drift since the baseline: " + ", ".join(
            f"port {c.port} {c.before} -> {c.after}" for c in unexpected))
    return problems


def violation_text(violation):
    """``port 8443 open (not in allowed_open)`` or ``port 8080 closed (expected open)``."""
    if violation["expected"] == "not open":
        return f"port {violation['port']} open (not in allowed_open)"
    return f"port {violation['port']} {violation['actual']} (expected {violation['expected']})"


def label(entry):
    address = entry["address"]
    return entry["name"] if address in (None, entry["name"]) else f"{entry['name']} ({address})"


def task_result(audit, wait_timeout):
    """The task's result: hosts, summary, failed_hosts and, for an audit, its totals."""
    hosts = hosts_by_name(audit, wait_timeout)
    data = report_to_dict(audit, hosts=False)
    result = {"hosts": hosts, "summary": data["summary"],
              "failed_hosts": [name for name, entry in hosts.items() if not entry["passed"]]}
    for key in ("compliance", "drift", "wait"):
        if key in data:
            result[key] = data[key]
    return result


def violation_message(result):
    """The task's message when ``fail_on_violation`` fails it."""
    failures = [result["hosts"][name]["failure"] for name in result["failed_hosts"]]
    if len(result["hosts"]) == 1:
        return failures[0]
    return (f"{len(failures)} of {len(result['hosts'])} hosts did not pass: "
            + " | ".join(failures))


def write_reports(params, audit):
    """Write the report files asked for; raises OSError."""
    writers = {"report": report_to_json, "report_table": render_table,
               "report_xml": report_to_xml, "report_markdown": audit_to_markdown,
               "report_html": audit_to_html}
    for option in REPORTS:
        render = writers[option]
        if params[option]:
            Path(params[option]).write_text(render(audit), encoding="utf-8")
