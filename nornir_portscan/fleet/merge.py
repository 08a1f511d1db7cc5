"""Many shard reports as one: a host per (target, vantage), each answer with its scanner.

The rules:

- A host's ports are the union of what its shards said; ``error`` (no answer) gives way to any
  answer. Two answers of different states for one port are a ``Conflict``, flagged, never
  hidden; the host keeps the first answer, in report order.
- With a plan (given, or remade from the reports' ``shard`` sections), every host of every
  shard is in the result: a shard with no report has its hosts' ports ``error``, reason
  ``scanner-unreachable`` (``scanner-failed`` when the caller says it failed, or when its
  report lacks a host it was given). Nothing missing is ever dropped or called closed.
- Without a plan (reports of whole scans, e.g. one per vantage), the reports are merged as they
  are; nothing can be found missing.
- UDP ports are port keys inside (``ports.UDP``), as in the models; the JSON writes them as the
  scan reports do: ``"protocol": "udp"`` on a UDP entry, ``udp_*`` lists beside the TCP ones.

``merge_reports`` is the pure core; ``load_report`` reads a file; ``missing_shards`` says what a
re-run of the same plan must scan again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nornir_portscan.audit.policy import port_text
from nornir_portscan.errors import InputError
from nornir_portscan.fleet.plan import HostKey, Plan, Shard, plan_from_dict
from nornir_portscan.inputfile import read_text, show
from nornir_portscan.models import HostStatus, PortState
from nornir_portscan.ports import UDP, format_ports, label_ports, parse_ports
from nornir_portscan.reports.data import REPORT_VERSION

if TYPE_CHECKING:
    from nornir_portscan.fleet.matrix import Matrix

__all__ = [
    "Conflict",
    "MergedHost",
    "MergedPort",
    "MergedReport",
    "ShardRun",
    "load_report",
    "merge_failure",
    "merge_reports",
    "missing_shards",
    "render_merged",
]

UNREACHABLE, FAILED = "scanner-unreachable", "scanner-failed"
_HINT = "give JSON reports written by 'portscan --json FILE ...'"
_MAX_REPORT_BYTES = 512 * 2**20

MergeKey = tuple[str, str | None, str | None]  # name, address, vantage


@dataclass(frozen=True, slots=True)
class MergedPort:
    """One port's answer, with the scanner that gave it."""

    port: int  # the number
    state: PortState
    reason: str
    rtt_ms: float | None
    attempts: int
    scanner: str
    protocol: str = "tcp"  # or "udp"

    @property
    def key(self) -> int:
        """The port key (``ports.UDP`` marks UDP)."""
        return self.port + UDP if self.protocol == "udp" else self.port


def _merged_port(key: int, state: PortState, reason: str, scanner: str) -> MergedPort:
    udp = key > UDP
    return MergedPort(key % UDP, state, reason, None, 0, scanner, "udp" if udp else "tcp")


@dataclass(frozen=True, slots=True)
class Conflict:
    """One port of one (target, vantage) answered differently by different shards."""

    name: str
    address: str | None
    vantage: str | None
    port: int  # a port key
    answers: tuple[tuple[str, str], ...]  # (scanner, state), in report order


@dataclass(frozen=True, slots=True)
class MergedHost:
    """One target seen from one vantage, from all the shards that scanned it."""

    name: str
    address: str | None
    vantage: str | None
    status: HostStatus
    scanners: tuple[str, ...]
    ports: tuple[MergedPort, ...]  # every port that is not closed, and closed ones listed
    closed_count: int
    scanned: tuple[int, ...]  # port keys, as unscanned and conflicts
    unscanned: tuple[int, ...]
    error: str | None
    conflicts: tuple[int, ...]
    passed: bool
    failure: str
    rate_limited: bool = False  # UDP: a shard said its ICMP rate limit slowed the scan

    def _with(self, state: PortState) -> list[int]:
        return [p.key for p in self.ports if p.state is state]

    @property
    def open_ports(self) -> list[int]:
        return self._with(PortState.OPEN)

    @property
    def filtered_ports(self) -> list[int]:
        return self._with(PortState.FILTERED)

    @property
    def error_ports(self) -> list[int]:
        return self._with(PortState.ERROR)

    @property
    def open_filtered_ports(self) -> list[int]:
        return self._with(PortState.OPEN_FILTERED)


@dataclass(frozen=True, slots=True)
class ShardRun:
    """How one shard went: ``ok``, ``interrupted``, ``missing`` (no report: the scanner was
    unreachable) or ``failed``; its timing and probe count from its report."""

    scanner: str
    vantage: str | None
    status: str
    reason: str | None = None
    source: str | None = None
    started: str | None = None
    finished: str | None = None
    duration: float = 0.0
    probes_sent: int = 0
    hosts: int = 0
    where: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MergedReport:
    """The merge: the plan's hash (None without a plan), every shard, host and conflict."""

    plan: str | None
    shards: tuple[ShardRun, ...]
    hosts: tuple[MergedHost, ...]
    conflicts: tuple[Conflict, ...] = ()

    @property
    def complete(self) -> bool:
        """Every shard reported in full and every port has an answer."""
        return all(s.status == "ok" for s in self.shards) and not any(
            h.error_ports or h.unscanned for h in self.hosts
        )

    def to_dict(self, *, matrix: Matrix | None = None) -> dict[str, Any]:
        """JSON-ready data, in a stable order; ``matrix`` is its reachability matrix (default:
        every target ``ungrouped``, no expectations)."""
        # imported here: a scan (the CLI imports this module) need not hold the matrix code
        from nornir_portscan.fleet.matrix import reachability_matrix

        hosts = self.hosts
        silent = sum(len(h.open_filtered_ports) for h in hosts)
        matrix = matrix if matrix is not None else reachability_matrix(self)
        return {
            "version": REPORT_VERSION,
            "plan": self.plan,
            "complete": self.complete,
            "summary": {
                "hosts": len(hosts),
                "shards": len(self.shards),
                "shards_ok": sum(1 for s in self.shards if s.status == "ok"),
                "open_ports": sum(len(h.open_ports) for h in hosts),
                "filtered_ports": sum(len(h.filtered_ports) for h in hosts),
                "closed_ports": sum(h.closed_count for h in hosts),
                "error_ports": sum(len(h.error_ports) for h in hosts),
                **({"open_filtered_ports": silent} if silent else {}),
                "conflicts": len(self.conflicts),
                "probes_sent": sum(s.probes_sent for s in self.shards),
            },
            "shards": [_shard_dict(s) for s in self.shards],
            "conflicts": [
                {
                    "name": c.name,
                    "address": c.address,
                    "vantage": c.vantage,
                    **_port_fields(c.port),
                    "answers": [{"scanner": s, "state": st} for s, st in c.answers],
                }
                for c in self.conflicts
            ],
            "matrix": matrix.to_dict(),
            "hosts": [_host_dict(h) for h in hosts],
        }


def _shard_dict(shard: ShardRun) -> dict[str, Any]:
    return {
        "scanner": shard.scanner,
        "vantage": shard.vantage,
        "status": shard.status,
        "reason": shard.reason,
        "source": shard.source,
        "started": shard.started,
        "finished": shard.finished,
        "duration": shard.duration,
        "probes_sent": shard.probes_sent,
        "hosts": shard.hosts,
        "where": None if shard.where is None else dict(shard.where),
    }


def _port_fields(key: int) -> dict[str, Any]:
    return {"port": key} if key < UDP else {"port": key - UDP, "protocol": "udp"}


def _has_udp(host: MergedHost) -> bool:
    return any(k > UDP for keys in (host.scanned, host.unscanned) for k in keys) or any(
        p.protocol == "udp" for p in host.ports
    )


def _tcp(keys: Sequence[int]) -> list[int]:
    return [k for k in keys if k < UDP]


def _udp(keys: Sequence[int]) -> list[int]:
    return [k - UDP for k in keys if k > UDP]


def _host_dict(host: MergedHost) -> dict[str, Any]:
    data = {
        "name": host.name,
        "address": host.address,
        "vantage": host.vantage,
        "scanners": list(host.scanners),
        "status": host.status.value,
        "up": any(p.state is PortState.OPEN for p in host.ports) or bool(host.closed_count),
        "open_ports": _tcp(host.open_ports),
        "filtered_ports": _tcp(host.filtered_ports),
        "closed_count": host.closed_count,
        "error_ports": _tcp(host.error_ports),
        "error": host.error,
        "scanned_ports": format_ports(host.scanned),
        "unscanned_ports": format_ports(host.unscanned),
        "conflicts": _tcp(host.conflicts),
        "passed": host.passed,
        "failure": host.failure,
        "ports": [
            {
                **_port_fields(p.key),
                "state": p.state.value,
                "reason": p.reason,
                "rtt_ms": p.rtt_ms,
                "attempts": p.attempts,
                "scanner": p.scanner,
            }
            for p in host.ports
        ],
    }
    if _has_udp(host):
        udp_closed = sum(1 for k in host.scanned if k > UDP) - sum(
            1 for p in host.ports if p.protocol == "udp" and p.state is not PortState.CLOSED
        )
        data.update(
            closed_count=host.closed_count - udp_closed,
            udp_open_ports=_udp(host.open_ports),
            udp_open_filtered_ports=_udp(host.open_filtered_ports),
            udp_filtered_ports=_udp(host.filtered_ports),
            udp_closed_count=udp_closed,
            udp_error_ports=_udp(host.error_ports),
            udp_conflicts=_udp(host.conflicts),
        )
    if host.rate_limited:
        data["rate_limited"] = True
    return data


# -- reading reports ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Piece:
    """What one report says about one host."""

    key: MergeKey
    scanner: str
    status: str
    error: str | None
    ports: Mapping[int, MergedPort]  # listed entries, by port key
    scanned: tuple[int, ...]
    unscanned: tuple[int, ...]
    passed: bool = True
    failure: str = ""
    rate_limited: bool = False

    def states(self) -> dict[int, PortState]:
        """Every port's state: the listed ones, and closed for a scanned port not listed."""
        found = {port: p.state for port, p in self.ports.items()}
        for port in self.scanned:
            found.setdefault(port, PortState.CLOSED)
        return found


@dataclass(frozen=True, slots=True)
class _Report:
    source: str
    scanner: str
    vantage: str | None
    plan: Mapping[str, Any] | None
    interrupted: bool
    started: str | None
    finished: str | None
    duration: float
    probes_sent: int
    where: Mapping[str, Any] | None
    pieces: tuple[_Piece, ...] = field(repr=False)


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON report in ``path``; raises ``InputError`` (one line) when it is not one."""
    text = read_text(path, "report", limit=_MAX_REPORT_BYTES, hint=_HINT)
    where = f"report {str(path)!r}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{where} is not JSON ({exc}); {_HINT}") from None
    except RecursionError:
        raise InputError(f"{where}: its JSON nests too deeply to be a report; {_HINT}") from None
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), list):
        raise InputError(f"{where} is not a portscan JSON report; {_HINT}")
    return data


def _spec(value: Any) -> tuple[int, ...]:
    if not isinstance(value, str):
        raise TypeError(f"a port spec, not {show(value)}")
    return parse_ports(value) if value else ()


def _text(value: Any, what: str, *, none: bool = False) -> Any:
    if (value is None and none) or (isinstance(value, str) and value):
        return value
    raise TypeError(f"{what} must be a string, not {show(value)}")


def _port(entry: Any, scanner: str) -> MergedPort:
    state = PortState(entry["state"])
    port = entry["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise TypeError(f"port must be 1-65535, not {show(port)}")
    protocol = entry.get("protocol", "tcp")
    if protocol not in ("tcp", "udp"):
        raise TypeError(f"protocol must be tcp or udp, not {show(protocol)}")
    rtt = entry.get("rtt_ms")
    if isinstance(rtt, bool) or not isinstance(rtt, int | float):
        rtt = None
    attempts = entry.get("attempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise TypeError(f"attempts must be a count, not {show(attempts)}")
    reason = str(entry.get("reason", ""))
    return MergedPort(port, state, reason, rtt, attempts, scanner, protocol)


def _stamp(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any, kind: type[float] | type[int]) -> float:
    """A duration or a probe count; 0 for anything else (they are only shown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return kind(value) if 0 <= value < 2**63 else 0  # not NaN, not Infinity


def _why(exc: Exception) -> str:
    return f"{exc} is missing" if isinstance(exc, KeyError) else str(exc)


def _parse(data: Mapping[str, Any], source: str, vantage_of_scan: str | None = None) -> _Report:
    where = f"report {source!r}"
    version = data.get("version")
    if not isinstance(version, str) or not version.startswith("1."):
        raise InputError(f"{where}: version {show(version)} is not a 1.x report; {_HINT}")
    shard = data.get("shard")
    if shard is not None and not isinstance(shard, Mapping):
        raise InputError(f"{where}: 'shard' is {show(shard)}, not a shard section; {_HINT}")
    try:
        scanner = _text(shard["scanner"], "scanner") if shard else source
        vantage = _text(shard.get("vantage"), "vantage", none=True) if shard else vantage_of_scan
        plan = shard["plan"] if shard else None
        if plan is not None and not isinstance(plan, Mapping):
            raise TypeError(f"plan must be a mapping, not {show(plan)}")
    except (KeyError, TypeError) as exc:
        raise InputError(f"{where}: its 'shard' section is broken ({_why(exc)}); {_HINT}") from None
    pieces = []
    seen: set[MergeKey] = set()
    for number, entry in enumerate(data["hosts"], start=1):
        try:
            name = _text(entry["name"], "name")
            address = _text(entry["address"], "address", none=True)
            own = _text(entry.get("vantage"), "vantage", none=True) or vantage_of_scan
            key = (name, address, vantage if shard else own)  # a shard's vantage is its own
            status = HostStatus(entry["status"]).value
            ports = {}
            for item in entry["ports"]:
                port = _port(item, scanner)
                ports[port.key] = port
            piece = _Piece(
                key,
                scanner,
                status,
                _text(entry.get("error"), "error", none=True),
                ports,
                _spec(entry["scanned_ports"]),
                _spec(entry.get("unscanned_ports", "")),
                entry.get("passed", True) is not False,
                str(entry.get("failure") or ""),
                entry.get("rate_limited") is True,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"{where}: host {number} is not a host entry ({_why(exc)}); {_HINT}"
            ) from None
        if key in seen:
            raise InputError(f"{where}: host {number} ({name!r}) is listed twice; {_HINT}")
        seen.add(key)
        pieces.append(piece)
    where_ran = shard.get("where") if shard else None
    return _Report(
        source,
        scanner,
        vantage,
        plan,
        data.get("interrupted") is True,
        _stamp(data.get("started")),
        _stamp(data.get("finished")),
        _count(data.get("duration"), float),
        int(_count(data.get("probes_sent"), int)),
        where_ran if isinstance(where_ran, Mapping) else None,
        tuple(pieces),
    )


# -- merging -----------------------------------------------------------------------------------


def merge_reports(
    reports: Sequence[Mapping[str, Any]],
    *,
    plan: Plan | None = None,
    failed: Mapping[str, str] | None = None,
    sources: Sequence[str] | None = None,
    vantage: str | None = None,
) -> MergedReport:
    """Merge JSON reports (``report_to_dict`` data, or ``load_report``'s) into one.

    Args:
        reports: The reports of the shards that ran; a shard may have several (a re-run).
        plan: The plan they belong to; by default, the one their ``shard`` sections describe
            (None for reports of unsharded scans).
        failed: Scanners known to have failed, with why (``scanner-failed``); a scanner with
            no report and not in ``failed`` was ``scanner-unreachable``.
        sources: A name for each report in messages (default: ``report 1`` ...).
        vantage: Where the whole scans among ``reports`` ran: the vantage of their hosts that
            name none (a single scan, to compare with its vantage in a merged baseline).

    Raises:
        InputError: A report is not one, belongs to another plan, or is a shard given a
            ``vantage`` (a shard's is its plan's).
    """
    names = list(sources) if sources is not None else []
    names += [f"report {i}" for i in range(len(names) + 1, len(reports) + 1)]
    parsed: list[_Report] = []
    seen: set[str] = set()
    if vantage is not None and (not isinstance(vantage, str) or not vantage.strip()):
        raise InputError(f"invalid vantage {vantage!r}: give a label, e.g. 'users'")
    for data, name in zip(reports, names, strict=False):
        if vantage is not None and data.get("shard") is not None:
            raise InputError(
                f"report {name!r} is a shard: its vantage is its plan's; give a vantage to "
                "whole scans only, e.g. 'portscan merge --vantage users scan.json'"
            )
        report = _parse(data, name, vantage)
        digest = _digest(data)
        if digest not in seen:  # a file given twice counts once
            parsed.append(report)
            seen.add(digest)
    plan = _plan_of(parsed, plan)
    failed = dict(failed or {})
    if plan is None:
        runs = [_run(r, "interrupted" if r.interrupted else "ok", None, [r]) for r in parsed]
        pieces = [p for r in parsed for p in r.pieces]
        return _merged(None, runs, pieces)
    runs, pieces = [], []
    for shard in plan.shards:
        mine = [r for r in parsed if r.scanner == shard.scanner]
        if not mine and not shard.targets:  # nothing to scan, nothing to report
            runs.append(ShardRun(shard.scanner, shard.vantage, "ok", "no hosts to scan"))
            continue
        if not mine:
            reason = FAILED if shard.scanner in failed else UNREACHABLE
            why = failed.get(shard.scanner)
            runs.append(ShardRun(shard.scanner, shard.vantage, _STATUS[reason], why or reason))
            error = f"{reason}: {why}" if why else reason
            pieces += [
                _lost(a.key, shard.vantage, shard.scanner, a.ports, error) for a in shard.targets
            ]
            continue
        got = [p for r in mine for p in r.pieces]
        lost = _not_reported(shard, got)
        whole = [r for r in mine if not r.interrupted]
        status = "failed" if lost else "ok" if whole else "interrupted"
        gap = f"{FAILED}: its report lacks {len(lost)} hosts, or some of their ports"
        runs.append(_run(mine[-1], status, gap if lost else None, mine))
        pieces += got + lost
    return _merged(plan.hash, runs, pieces)


_STATUS = {UNREACHABLE: "missing", FAILED: "failed"}


def _digest(data: Mapping[str, Any]) -> str:
    """A hash of a report's canonical JSON: two reports of the same content have the same
    one (a file given twice), found in one pass rather than by comparing every pair."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _not_reported(shard: Shard, got: Sequence[_Piece]) -> list[_Piece]:
    """An error piece for each host of ``shard`` whose report lacks it, or some of its ports
    (neither answered, nor error, nor unscanned); a name that did not resolve is answered.
    A target without an address literal is found by its name: the scanner resolved it."""
    by_key: dict[HostKey, list[_Piece]] = {}
    by_name: dict[str, list[_Piece]] = {}
    for piece in got:
        by_key.setdefault((piece.key[0], piece.key[1]), []).append(piece)
        by_name.setdefault(piece.key[0], []).append(piece)
    lost = []
    for target in shard.targets:
        mine = by_key.get(target.key) if _is_address(target.address) else by_name.get(target.name)
        if any(p.status == HostStatus.UNRESOLVED.value for p in mine or ()):
            continue
        seen = {port for p in mine or () for port in (*p.states(), *p.unscanned)}
        missing = [port for port in target.ports if port not in seen]
        if missing:
            what = "ports missing from" if mine else "not in"
            error = f"{FAILED}: {what} the report of scanner {shard.scanner!r}"
            lost.append(_lost(target.key, shard.vantage, shard.scanner, missing, error))
    return lost


def _is_address(text: str | None) -> bool:
    try:
        ipaddress.ip_address(text or "")
    except ValueError:
        return False
    return True


def _plan_of(parsed: Sequence[_Report], plan: Plan | None) -> Plan | None:
    """The plan of the reports (``plan``, or the one the first shard describes), each checked
    to be a shard of it; None when none is a shard."""
    described = [r for r in parsed if r.plan is not None]
    if plan is None and not described:
        return None
    if plan is None:
        first = f"the plan of report {described[0].source!r}"
        plan = plan_from_dict(described[0].plan, f"the plan in report {described[0].source!r}")
    else:
        first = "the plan given"
    for report in parsed:
        if report.plan is None:
            raise InputError(
                f"report {report.source!r} is a whole scan, not a shard of {first}: merge the "
                "shards of one plan, or whole scans"
            )
        other = report.plan.get("hash")
        if other != plan.hash:
            raise InputError(
                f"report {report.source!r} is not a shard of {first} ({str(other)[:12]} vs "
                f"{plan.hash[:12]}): merge shards scanned with the same targets, ports, options "
                "and shard count"
            )
        if report.scanner not in {s.name for s in plan.scanners}:
            raise InputError(
                f"report {report.source!r}: scanner {report.scanner!r} is not in its plan"
            )
    return plan


def _run(last: _Report, status: str, reason: str | None, all_of: Sequence[_Report]) -> ShardRun:
    return ShardRun(
        last.scanner,
        last.vantage,
        status,
        reason,
        ", ".join(r.source for r in all_of),
        last.started,
        last.finished,
        round(sum(r.duration for r in all_of), 3),
        sum(r.probes_sent for r in all_of),
        len({p.key for r in all_of for p in r.pieces}),
        last.where,
    )


def _lost(
    key: HostKey, vantage: str | None, scanner: str, ports: Sequence[int], error: str
) -> _Piece:
    reason = error.split(":", 1)[0]
    entries = {p: _merged_port(p, PortState.ERROR, reason, scanner) for p in ports}
    return _Piece(
        (key[0], key[1], vantage),
        scanner,
        HostStatus.ERROR.value,
        error,
        entries,
        (),
        (),
        passed=False,  # nothing is known of it: never a pass
        failure=f"host error: {error}",
    )


def _merged(plan: str | None, runs: list[ShardRun], pieces: Sequence[_Piece]) -> MergedReport:
    grouped: dict[MergeKey, list[_Piece]] = {}
    for piece in pieces:
        grouped.setdefault(piece.key, []).append(piece)
    hosts, conflicts = [], []
    order = sorted(grouped, key=lambda k: (k[0], k[1] or "", k[2] is not None, k[2] or ""))
    for key in order:
        host, found = _merge_host(key, grouped[key])
        hosts.append(host)
        conflicts += found
    return MergedReport(plan, tuple(runs), tuple(hosts), tuple(conflicts))


def _merge_host(key: MergeKey, pieces: Sequence[_Piece]) -> tuple[MergedHost, list[Conflict]]:
    chosen: dict[int, MergedPort | None] = {}  # None: closed, not listed
    states: dict[int, PortState] = {}
    answers: dict[int, list[tuple[str, str]]] = {}
    for piece in pieces:
        for port, state in piece.states().items():
            if state is not PortState.ERROR:
                answers.setdefault(port, []).append((piece.scanner, state.value))
            if port not in states or (
                states[port] is PortState.ERROR and state is not PortState.ERROR
            ):
                states[port] = state
                chosen[port] = piece.ports.get(port)
    conflicts = [
        Conflict(key[0], key[1], key[2], port, tuple(said))
        for port, said in sorted(answers.items())
        if len({state for _, state in said}) > 1
    ]
    scanned = sorted({p for piece in pieces for p in piece.scanned})
    answered = {p for p, s in states.items() if s is not PortState.ERROR}
    unscanned = sorted({p for piece in pieces for p in piece.unscanned} - answered)
    errors = list(dict.fromkeys(p.error for p in pieces if p.error))
    failures = list(dict.fromkeys(p.failure for p in pieces if p.failure))
    host = MergedHost(
        name=key[0],
        address=key[1],
        vantage=key[2],
        status=_status([p.status for p in pieces], states),
        scanners=tuple(dict.fromkeys(p.scanner for p in pieces)),
        ports=tuple(entry for _, entry in sorted(chosen.items()) if entry is not None),
        closed_count=sum(1 for s in states.values() if s is PortState.CLOSED),
        scanned=tuple(scanned),
        unscanned=tuple(unscanned),
        error="; ".join(errors) or None,
        conflicts=tuple(c.port for c in conflicts),
        passed=all(p.passed for p in pieces)
        and not conflicts
        and all(state is not PortState.ERROR for state in states.values()),
        failure="; ".join(failures) or ("answers conflict" if conflicts else ""),
        rate_limited=any(p.rate_limited for p in pieces),
    )
    return host, conflicts


_PARTIAL = (HostStatus.INTERRUPTED, HostStatus.TIMED_OUT, HostStatus.NOT_SCANNED)


def _status(statuses: Sequence[str], states: Mapping[int, PortState]) -> HostStatus:
    """One status for the pieces of a host: a partial one wins (part of it is unscanned), then
    up (some port answered), then what the pieces agree on."""
    if len(set(statuses)) == 1:
        return HostStatus(statuses[0])
    answered = HostStatus.UP.value in statuses or any(
        s in (PortState.OPEN, PortState.CLOSED) for s in states.values()
    )
    partial = next((s for s in _PARTIAL if s.value in statuses), None)
    if partial is HostStatus.NOT_SCANNED and answered:
        partial = HostStatus.INTERRUPTED  # some of it was scanned
    if partial is not None:
        return partial
    if answered:
        return HostStatus.UP
    for status in (HostStatus.UNRESOLVED, HostStatus.NO_RESPONSE):
        if status.value in statuses:
            return status
    return HostStatus.ERROR


# -- resuming ----------------------------------------------------------------------------------


def missing_shards(
    plan: Plan,
    reports: Sequence[Mapping[str, Any]],
    *,
    failed: Mapping[str, str] | None = None,
) -> tuple[Shard, ...]:
    """The shards of ``plan`` to scan again: those with no report, a failed one or only
    interrupted ones among ``reports``. A re-run of the same plan (same hash) scans only
    these; ``merge_reports`` of the old reports and the new ones completes the picture."""
    merged = merge_reports(reports, plan=plan, failed=failed)
    again = {s.scanner for s in merged.shards if s.status != "ok"}
    return tuple(s for s in plan.shards if s.scanner in again)


# -- showing -----------------------------------------------------------------------------------


def render_merged(merged: MergedReport) -> str:
    """A readable table: a line per (target, vantage), then each shard and each conflict."""
    rows = [("HOST", "ADDRESS", "VANTAGE", "STATUS", "OPEN", "FILTERED", "CLOSED", "SCANNERS")]
    for h in merged.hosts:
        errors = f" errors:{label_ports(h.error_ports)}" if h.error_ports else ""
        if h.open_filtered_ports:
            errors = f" open|filtered:{label_ports(h.open_filtered_ports)}" + errors
        rows.append(
            (
                h.name,
                h.address or "-",
                h.vantage or "-",
                h.status.value + (f" ({h.error})" if h.error else ""),
                label_ports(h.open_ports) or "-",
                (label_ports(h.filtered_ports) or "-") + errors,
                str(h.closed_count),
                ",".join(h.scanners),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    data = merged.to_dict()["summary"]
    silent = data.get("open_filtered_ports")
    silent = "" if silent is None else f"{silent} open|filtered, "
    lines += [
        "",
        f"{data['hosts']} hosts, {data['shards_ok']} of {data['shards']} shards ok, "
        f"{data['open_ports']} open, {data['filtered_ports']} filtered, "
        + silent
        + f"{data['closed_ports']} closed, {data['error_ports']} errors, "
        f"{data['conflicts']} conflicts; {data['probes_sent']} probes"
        + (f"; plan {merged.plan[:12]}" if merged.plan else ""),
    ]
    for s in merged.shards:
        where = s.where or {}
        lines.append(
            f"shard {s.scanner} ({s.vantage or 'default vantage'}): {s.status}"
            + (f" ({s.reason})" if s.reason else "")
            + (
                f", {s.hosts} hosts, {s.probes_sent} probes in {s.duration:.2f} s"
                if s.source
                else ""
            )
            + (f", on {where['host']}" if where.get("host") else "")
        )
    for c in merged.conflicts:
        said = ", ".join(f"{state} by {scanner}" for scanner, state in c.answers)
        lines.append(f"conflict: {c.name} port {port_text(c.port)} from {c.vantage or '-'}: {said}")
    return "".join(line.rstrip() + "\n" for line in lines)


def merge_failure(merged: MergedReport) -> str | None:
    """The one line that says why the merge is not complete, or None when it is."""
    if merged.complete:
        return None
    bad = [s for s in merged.shards if s.status != "ok"]
    errors = sum(len(h.error_ports) + len(h.unscanned) for h in merged.hosts)
    shards = ", ".join(f"{s.scanner} {s.status}" for s in bad)
    return (
        f"{len(bad)} of {len(merged.shards)} shards did not report in full"
        + (f" ({shards})" if bad else "")
        + f"; {errors} ports have no answer, listed as error_ports or unscanned_ports"
    )
