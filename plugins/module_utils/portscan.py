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
import sys
import traceback

# The engine series this collection drives: module_utils imports engine internals (pipeline,
# reports.data), which may change between minor versions. Keep in step with
# meta/ee-requirements.txt and pyproject.toml (a test compares them).
ENGINE_REQUIRES = ((0, 1, 0), (0, 2, 0))  # at least, below
ENGINE_REQUIREMENT = "nornir-portscan>=0.1.0,<0.2.0"
ENGINE_PYTHON = (3, 11)


def version_tuple(text):
    """``(0, 1, 0)`` from ``'0.1.0'`` or ``'0.1.0.dev1'``; None for what does not read as one."""
    parts = []
    for part in str(text).split(".")[:3]:
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts + [0] * (3 - len(parts))) if parts else None


def engine_problem(found, location="", python=None):
    """Why the engine ``found`` (its ``__version__``; None: not installed) cannot serve this
    collection, in one line that says what to install for which Python; None when it can."""
    python = python or sys.executable
    install = f"install it with: {python} -m pip install '{ENGINE_REQUIREMENT}'"
    where = (f"on the host that runs the scan (Python {python}; without delegate_to that is "
             "each managed host, see 'Where the scan runs' in docs/ansible.md)")
    if found is None:
        if sys.version_info[:2] < ENGINE_PYTHON:
            return (f"the nornir-portscan engine needs Python 3.11 or newer {where}, found "
                    f"{sys.version_info[0]}.{sys.version_info[1]}: set ansible_python_interpreter"
                    f" to a Python 3.11+ and {install}, or scan from the controller with "
                    "delegate_to: localhost")
        return (f"the nornir-portscan engine ({ENGINE_REQUIREMENT}) is not installed {where}: "
                f"{install}, or scan from the controller with delegate_to: localhost")
    version = version_tuple(found)
    low, below = ENGINE_REQUIRES
    if version is not None and low <= version < below:
        return None
    at = f" at {location}" if location else ""
    return (f"this collection needs {ENGINE_REQUIREMENT}, found nornir-portscan {found}{at} "
            f"{where}: {install}")


ENGINE_TRACEBACK = None
try:
    import nornir_portscan
except ImportError:
    ENGINE_TRACEBACK = traceback.format_exc()
    ENGINE_ERROR = engine_problem(None)
else:
    ENGINE_ERROR = engine_problem(getattr(nornir_portscan, "__version__", "unknown"),
                                  getattr(nornir_portscan, "__file__", ""))
if ENGINE_ERROR is None:
    try:
        from nornir_portscan import PortscanError, ReportError, ScanInterrupted, TargetSpec, scan
        from nornir_portscan import WorkerPool  # noqa: F401  # pylint: disable=unused-import
        from nornir_portscan.pipeline import build_job, number, run_job, write_reports
        from nornir_portscan.reports.data import host_entry, report_to_dict
    except ImportError as exc:  # the right version, but broken
        ENGINE_TRACEBACK = traceback.format_exc()
        ENGINE_ERROR = f"the nornir-portscan engine cannot be imported: {exc}"

# The module's DOCUMENTATION describes exactly these options (a test compares them).
ARGUMENT_SPEC = {
    "targets": {"type": "list", "elements": "raw"},
    "ports": {"type": "raw", "default": "top1000"},
    "exclude": {"type": "list", "elements": "str", "default": []},
    "exclude_ports": {"type": "raw"},
    "protocol": {"type": "str", "choices": ["tcp", "udp", "both"], "default": "tcp"},
    "timeout": {"type": "raw", "default": 1.0},
    "min_timeout": {"type": "raw", "default": 0.1},
    "adaptive": {"type": "bool", "default": True},
    "retries": {"type": "raw", "default": 1},
    "rate": {"type": "raw"},
    "concurrency": {"type": "raw", "default": 1000},
    "host_concurrency": {"type": "raw"},
    "processes": {"type": "raw"},
    "host_timeout": {"type": "raw"},
    "include_closed": {"type": "bool", "default": False},
    "address_family": {"type": "str", "choices": ["ipv4", "ipv6", "both"], "default": "ipv4"},
    "max_hosts": {"type": "raw", "default": 65536},
    "expect_open": {"type": "raw"},
    "expect_closed": {"type": "raw"},
    "expect_filtered": {"type": "raw"},
    "allowed_open": {"type": "raw"},
    "inventory_policy": {"type": "bool", "default": True},
    "fail_on_violation": {"type": "bool", "default": False},
    "baseline": {"type": "path"},
    "recheck": {"type": "raw", "default": 3},
    "wait": {"type": "bool", "default": False},
    "wait_timeout": {"type": "raw", "default": 300.0},
    "interval": {"type": "raw", "default": 2.0},
    "report": {"type": "path"},
    "report_table": {"type": "path"},
    "report_xml": {"type": "path"},
    "report_markdown": {"type": "path"},
    "report_html": {"type": "path"},
    "policy_file": {"type": "path"},
}

# Numbers are checked by the engine, so that a bad one reads as through every other front door.
NUMBERS = ("timeout", "min_timeout", "retries", "rate", "concurrency", "host_concurrency",
           "processes", "host_timeout", "max_hosts", "recheck", "wait_timeout", "interval")
ENGINE_OPTIONS = ("timeout", "min_timeout", "adaptive", "retries", "rate", "concurrency",
                  "host_concurrency", "processes", "host_timeout", "include_closed")
# The expectations: module options (for every target) and keys of a dict target (its own).
# Kept literal, not POLICY_KEYS, so that the action plugin can use it without the engine.
EXPECTATIONS = ("expect_open", "expect_closed", "expect_filtered", "allowed_open")
TARGET_KEYS = frozenset(("name", "address", "ports", *EXPECTATIONS))
TARGET_EXAMPLE = "e.g. '127.0.0.1' or {name: web1, address: 127.0.0.2, ports: '22,80'}"
REPORTS = ("report", "report_table", "report_xml", "report_markdown", "report_html")


class TaskError(Exception):
    """The task fails with this one-line message; ``result``, when set, is what was found."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


class ViolationError(TaskError):
    """With ``fail_on_violation``: hosts did not pass. ``result`` is the whole task result."""


def run(params, check_mode=False, workers=None):
    """Scan (and audit) as ``params`` (validated against ARGUMENT_SPEC) say; return the result.

    ``workers``: a ``WorkerPool`` started ahead, for the scan to take its processes from.

    The result holds ``hosts``, ``summary``, ``failed_hosts``, with an audit ``compliance``,
    ``drift`` and ``wait``, ``reports`` (the files written) and ``warnings`` (to show, not to
    return). Raises TaskError for bad input, a scan that cannot run or a report that cannot be
    written (then with the result); with ``fail_on_violation``, ViolationError when a host did
    not pass.
    """
    try:
        job = build(params, check_mode)
    except ValueError as exc:  # InputError is a ValueError
        raise TaskError(str(exc)) from None
    try:
        audit = run_job(job, scanner=functools.partial(scan, workers=workers))
    except ScanInterrupted:
        raise TaskError("scan interrupted") from None
    except PortscanError as exc:
        raise TaskError(str(exc)) from None
    result = task_result(audit)
    result["warnings"] = list(audit.report.warnings)
    result["reports"] = []
    if check_mode:
        asked = [str(params[name]) for name in REPORTS if params[name]]
        if asked:
            result["warnings"].append(
                "check mode: the scan ran (its probes change nothing), but "
                f"{', '.join(asked)} were not written; the task reports changed as they would be")
            result["would_write"] = asked
    else:
        try:
            result["reports"] = list(write_reports(job.reports, audit))
        except ReportError as exc:
            raise TaskError(str(exc), result) from None
    if params["fail_on_violation"] and result["failed_hosts"]:
        raise ViolationError(violation_message(result), result)
    result["msg"] = summary_message(result)
    return result


def changed(result):
    """A scan changes nothing on its targets: the task changed when it wrote report files (in
    check mode: would have)."""
    return bool(result.get("reports") or result.get("would_write"))


def summary_message(result):
    """One line for the task's ``msg``: what was scanned and who did not pass."""
    summary = result["summary"]
    hosts = summary["hosts"]
    line = (f"scanned {hosts} host{'' if hosts == 1 else 's'} ({summary['up']} up): "
            f"{summary['open_ports']} open, {summary['filtered_ports']} filtered, "
            f"{summary['closed_ports']} closed ports")
    failed = result["failed_hosts"]
    if failed:
        shown = ", ".join(failed[:5]) + (", ..." if len(failed) > 5 else "")
        line += f"; {len(failed)} did not pass: {shown}"
    return line


def port_spec(value):
    """YAML gives ``22`` as an int; the engine takes a string or a list."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def to_target(item):
    """A ``targets`` item as the engine wants it: a string, or a TargetSpec with the
    expectations it sets; raises ValueError with a one-line message."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        raise ValueError(f"invalid target {item!r}: use a string or a dict, {TARGET_EXAMPLE}")
    unknown = sorted(set(item) - TARGET_KEYS)
    if unknown:
        raise ValueError(f"invalid target {item!r}: unknown key {unknown[0]!r}, use name, "
                         f"address, ports, {', '.join(EXPECTATIONS)}, {TARGET_EXAMPLE}")
    own = {key: port_spec(item[key]) for key in EXPECTATIONS if key in item}
    return TargetSpec(item.get("name") or item.get("address"), item.get("address"),
                      port_spec(item.get("ports")), own or None)


def build(params, check_mode=False):
    """The engine's Job for the parameters; raises ValueError (InputError included). In check
    mode no report file is asked for."""
    items = params["targets"] or ()
    if not items:
        raise ValueError("no targets given: list at least one, e.g. targets: ['127.0.0.1'], "
                         "or omit targets to scan the play's hosts")
    reports = {} if check_mode else {
        "json": params["report"], "table": params["report_table"], "xml": params["report_xml"],
        "markdown": params["report_markdown"], "html": params["report_html"]}
    params = {**params, **{name: number(params[name]) for name in NUMBERS}}
    return build_job(
        [to_target(item) for item in items],
        port_spec(params["ports"]),
        exclude=params["exclude"],
        exclude_ports=port_spec(params["exclude_ports"]),
        family=params["address_family"],
        protocol=params["protocol"],
        max_hosts=params["max_hosts"],
        policy_file=params["policy_file"],
        baseline=params["baseline"],
        recheck=params["recheck"],
        wait=params["wait"],
        wait_timeout=params["wait_timeout"],
        interval=params["interval"],
        reports=reports,
        # an inventory host left out by exclude is not scanned, which is no error
        allow_empty=all(isinstance(item, dict) for item in items),
        **{key: port_spec(params[key]) for key in EXPECTATIONS},
        **{name: params[name] for name in ENGINE_OPTIONS},
    )


def host_result(audit, index):
    """``host_entry`` plus the booleans that read well in ``when:``."""
    entry = host_entry(audit, index)
    # TCP and UDP alike: every port not closed is in ``ports``
    opened = sum(1 for p in entry["ports"] if p["state"] == "open")
    closed = entry["closed_count"] + entry.get("udp_closed_count", 0)
    scanned = sum(1 for p in entry["ports"] if p["state"] != "closed") + closed
    entry.update(
        resolved=entry["address"] is not None,
        timed_out=entry["status"] == "timed_out",
        any_open=opened > 0,
        all_open=bool(
            entry["up"] and scanned > 0 and not entry["unscanned_ports"] and opened == scanned
        ),
    )
    return entry


def task_result(audit):
    """The task's result: hosts by name (a repeated name, two address families, gets
    ``@address``), summary, failed_hosts and, for an audit, its totals."""
    hosts = {}
    for index, host in enumerate(audit.report.hosts):
        key = host.name if host.name not in hosts else f"{host.name}@{host.address}"
        hosts[key] = host_result(audit, index)
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
