# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What the ``portscan`` module does, shared by the module and its action plugin.

The module runs it in the interpreter that runs modules; the action plugin runs it in the
controller process when the module would run there anyway (see ``plugins/action/portscan.py``).
Both fail the task with the message of ``TaskError``.
"""

from __future__ import annotations

import traceback
from pathlib import Path

try:
    from nornir_portscan import (InputError, PortscanError, ScanInterrupted, build_request,
                                 parse_ports, scan)
    from nornir_portscan.report import host_to_dict, render_table, report_to_json, summary
    from nornir_portscan.scanner import TargetSpec
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
    "concurrency": {"type": "int", "default": 500},
    "host_concurrency": {"type": "int"},
    "processes": {"type": "int"},
    "host_timeout": {"type": "float"},
    "include_closed": {"type": "bool", "default": False},
    "address_family": {"type": "str", "choices": ["ipv4", "ipv6", "both"], "default": "ipv4"},
    "max_hosts": {"type": "int", "default": 65536},
    "report": {"type": "path"},
    "report_table": {"type": "path"},
}

ENGINE_OPTIONS = ("timeout", "min_timeout", "adaptive", "retries", "rate", "concurrency",
                  "host_concurrency", "processes", "host_timeout", "include_closed")
TARGET_KEYS = frozenset(("name", "address", "ports"))
TARGET_EXAMPLE = "e.g. '127.0.0.1' or {name: web1, address: 127.0.0.2, ports: '22,80'}"


class TaskError(Exception):
    """The task fails with this one-line message."""


def run(params, check_mode=False):
    """Scan as ``params`` (validated against ARGUMENT_SPEC) say; return the task result.

    The result holds ``hosts``, ``summary`` and ``warnings`` (to show, not to return).
    Raises TaskError for bad input, a scan that cannot run or a report that cannot be written.
    """
    try:
        request = build(params)
    except ValueError as exc:  # InputError is a ValueError
        raise TaskError(str(exc)) from None
    try:
        report = scan(request)
    except ScanInterrupted:
        raise TaskError("scan interrupted") from None
    except PortscanError as exc:
        raise TaskError(str(exc)) from None
    if not check_mode:
        try:
            write_reports(params, report)
        except OSError as exc:
            raise TaskError(f"cannot write the report to {exc.filename!r}: "
                              f"{exc.strerror or exc}") from None
    return {"hosts": hosts_by_name(report), "summary": summary(report),
            "warnings": list(report.warnings)}


def port_spec(value):
    """YAML gives ``22`` as an int; the engine takes a string or a list."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def to_target(item):
    """A ``targets`` item as the engine wants it; raises ValueError with a one-line message."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        raise ValueError(f"invalid target {item!r}: use a string or a dict, {TARGET_EXAMPLE}")
    unknown = sorted(set(item) - TARGET_KEYS)
    if unknown:
        raise ValueError(f"invalid target {item!r}: unknown key {unknown[0]!r}, use name, "
                         f"address and ports, {TARGET_EXAMPLE}")
    name = item.get("name") or item.get("address")
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid target {item!r}: give a name (a string), {TARGET_EXAMPLE}")
    address = item.get("address")
    if address is not None and not isinstance(address, str):
        raise ValueError(f"invalid address {address!r} of target {name!r}: use a string, "
                         f"{TARGET_EXAMPLE}")
    ports = item.get("ports")
    return TargetSpec(name, address, port_spec(ports) if ports not in (None, "", []) else None)


def build(params):
    """The engine's ScanRequest for the parameters; raises ValueError (InputError included)."""
    targets = [to_target(item) for item in params["targets"] or ()]
    if not targets:
        raise ValueError("no targets given: list at least one, e.g. targets: ['127.0.0.1'], "
                         "or omit targets to scan the play's hosts")
    for target in targets:
        if isinstance(target, TargetSpec) and target.ports is not None:
            try:  # the engine's message does not say whose ports they are
                parse_ports(target.ports)
            except InputError as exc:
                raise ValueError(f"ports of target {target.name!r}: {exc}") from None
    return build_request(
        targets,
        port_spec(params["ports"]),
        exclude=params["exclude"],
        exclude_ports=port_spec(params["exclude_ports"]),
        family=params["address_family"],
        max_hosts=params["max_hosts"],
        **{name: params[name] for name in ENGINE_OPTIONS},
    )


def host_entry(host):
    """``host_to_dict`` plus the booleans that read well in ``when:``."""
    entry = host_to_dict(host)
    scanned = sum(1 for p in entry["ports"] if p["state"] != "closed") + entry["closed_count"]
    entry.update(
        resolved=entry["address"] is not None,
        timed_out=entry["status"] == "timed_out",
        any_open=bool(entry["open_ports"]),
        all_open=entry["up"] and scanned > 0 and len(entry["open_ports"]) == scanned,
    )
    return entry


def hosts_by_name(report):
    """Results keyed by target name; a repeated name (two address families) gets ``@address``."""
    hosts = {}
    for host in report.hosts:
        key = host.name if host.name not in hosts else f"{host.name}@{host.address}"
        hosts[key] = host_entry(host)
    return hosts


def write_reports(params, report):
    """Write the report files asked for; raises OSError."""
    if params["report"]:
        Path(params["report"]).write_text(report_to_json(report), encoding="utf-8")
    if params["report_table"]:
        Path(params["report_table"]).write_text(render_table(report), encoding="utf-8")
