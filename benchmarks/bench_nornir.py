"""Nornir benchmark on the lab (issue 11): ``nr.run(task=portscan)`` against nornir_utils'
``tcp_ping``, a grouped change task, one own port per host and ``scan_inventory``, in one run.

The lab of ``tests/lab`` (brought up here, taken down after): 1,000 IPv4 hosts (``--hosts``),
20 ms round trip, real listeners, dropped and rejected ports, a ground truth. The script runs
itself again inside the lab's client namespace, so every probe, the ScanService's workers and
``tcp_ping``'s sockets included, stays in the lab. Each inventory host's ``hostname`` is a lab
target address. Scenarios, each under ``ThreadedRunner(num_workers=20)`` and ``(100)``:

  plain     ``nr.run(task=portscan, ports=PORTS)``: 10 ports per host, the same on every host
            (see PORTS: open, closed, dropped, admin-prohibited and host-unreachable ports, a
            mix that rotates with the host). Reference: ``nr.run(task=tcp_ping, ports=PORTS)``
            at its default timeout of 2 s, goal: >= 10x faster. Its connect waits 2 s, so the
            kernel sends a silent port a second SYN at 1 s: two SYNs, as portscan's one retry.
            For reference also ``timeout=1`` (``tcp_ping:1s``): one SYN per silent port.
  grouped   a grouped task per host: pre-check (portscan), a no-op change, post-check
            (portscan). Reference: plain, goal: <= 2.5x its wall time.
  own port  one port per host, from the host's inventory data ``portscan: {ports: ...}``, a
            different one on each host (see own_port). Reference: plain, goal: <= 2x.
  scan_inventory (no runner): ``scan_inventory(nr, ports=PORTS)``, for reference.

Every portscan result is compared with the ground truth, port by port (state and reason, the
scanned ports exactly the host's own, ``closed_count``, no errors); ``tcp_ping`` answers only
True or False, so it is compared on open against not open. Wall times are medians of
``--runs`` (``--tcp-ping-runs`` for ``tcp_ping``); forms take turns so machine noise hits all
alike. CPU is user + system of this process and its children (``getrusage`` RUSAGE_SELF +
RUSAGE_CHILDREN), measured after the ScanService's idle workers exited and were reaped. Every
run starts from an idle service: a run's wall time includes starting its workers.
``--tcp-ping-hosts N`` runs ``tcp_ping`` on the first N hosts only and extrapolates its wall
time linearly to all hosts (said so in the table). Needs root, iproute2, nftables, iptables.

    python benchmarks/bench_nornir.py [--runs 3] [--tcp-ping-runs 1] [--hosts 1000]
        [--tcp-ping-hosts N] [--keep]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nornir.core import Nornir  # noqa: E402
from nornir.core.inventory import Defaults, Groups, Host, Hosts, Inventory  # noqa: E402
from nornir.core.task import AggregatedResult, Result, Task  # noqa: E402
from nornir.plugins.runners import ThreadedRunner  # noqa: E402
from nornir_utils.plugins.tasks.networking import tcp_ping  # noqa: E402

import nornir_portscan  # noqa: E402
from nornir_portscan.nornir.tasks import portscan, scan_inventory  # noqa: E402
from nornir_portscan.ports import parse_ports  # noqa: E402
from tests.lab.exact import expected, report_mismatches  # noqa: E402
from tests.lab.lab import Lab, LabError, down, up  # noqa: E402
from tests.lab.truth import UNIQUE_OPEN_BASE, V4_LAB_NET, LabConfig  # noqa: E402

# Host i: 22, 80, 443 open; 8080 open if i % 8 == 7; 445 dropped; 3389 dropped if i % 4 == 2;
# 113 admin-prohibited; 5060 host-unreachable; 1433 host-unreachable if i % 2 == 0; 8000
# closed; every rotating port closed where it does not apply (tests/lab/truth.py).
PORTS = [22, 80, 443, 8080, 445, 3389, 113, 5060, 1433, 8000]
WORKERS = (20, 100)
TCP_PING_TIMEOUTS = (2, 1)  # its default (the goal's reference), and 1 s
INSIDE = "PORTSCAN_BENCH_NORNIR_TRUTH"  # set in the re-run inside the client namespace
IDLE_WAIT = 30.0  # at most, for the service's idle workers to exit (its idle timeout is 5 s)
CHILD_TIMEOUT = 3 * 3600


def lab_config(hosts: int) -> LabConfig:
    return LabConfig(prefix="npnorn", hosts=hosts, hosts6=0, latency_ms=20)


def own_port(index: int) -> int:
    """The one port of host ``index`` in the own-port scenario, rotating over five verdicts:
    its own open port (open on no other host, so a probe of the wrong host would say closed),
    dropped, admin-prohibited, host-unreachable, and the next host's own port (closed here)."""
    return (
        UNIQUE_OPEN_BASE + index,
        445,
        113,
        5060,
        UNIQUE_OPEN_BASE + index + 1,
    )[index % 5]


# -- the inventory and the tasks ------------------------------------------------------------------
def inventory(addresses: list[str]) -> Nornir:
    defaults = Defaults()
    hosts = Hosts()
    for i, address in enumerate(addresses):
        port = own_port(i)
        hosts[f"h{i:04}"] = Host(
            f"h{i:04}",
            hostname=address,
            defaults=defaults,
            data={"port": port, "portscan": {"ports": str(port)}},
        )
    return Nornir(inventory=Inventory(hosts, Groups(), defaults), runner=ThreadedRunner())


def noop_change(task: Task) -> Result:
    """The change of the window: nothing, as fast as a task can be."""
    return Result(host=task.host, result="no-op", changed=True)


def change_window(task: Task) -> Result:
    """A grouped task: pre-check, the change, post-check."""
    task.run(task=portscan, name="pre-check", ports=PORTS)
    task.run(task=noop_change)
    task.run(task=portscan, name="post-check", ports=PORTS)
    return Result(host=task.host, result="done")


# -- checking against the ground truth ------------------------------------------------------------
def portscan_mismatches(
    truth: dict[str, Any], result: AggregatedResult, names: tuple[str, ...], own: bool = False
) -> list[str]:
    """Differences from the truth in every host's Results named ``names``; empty when exact.
    ``own``: each host's ports are its own port only, else PORTS."""
    problems: list[str] = []
    for multi in result.values():
        host = multi[0].host
        ports = str(host.data["port"]) if own else ",".join(map(str, PORTS))
        for name in names:
            found = [r for r in multi if r.name == name]
            if len(found) != 1 or not isinstance(found[0].result, dict):
                problems.append(f"{host.name}: no {name} result: {found[:1]}")
                continue
            entry = found[0].result
            problems += [
                p
                for p in report_mismatches(truth, {"hosts": [entry]}, [host.hostname], ports)
                if not (p.endswith("expected up") and _all_filtered(truth, entry))
            ]
    return problems


def _all_filtered(truth: dict[str, Any], entry: dict[str, Any]) -> bool:
    """A host whose scanned ports are all filtered is ``no-response`` (``HostStatus``), where
    the truth says every lab host is up."""
    ports = parse_ports(entry["scanned_ports"]) if entry["scanned_ports"] else []
    return entry["status"] == "no-response" and all(
        expected(truth, entry["address"], p)[0] == "filtered" for p in ports
    )


def tcp_ping_mismatches(truth: dict[str, Any], result: AggregatedResult) -> list[str]:
    problems: list[str] = []
    for multi in result.values():
        address = multi[0].host.hostname
        answers = multi[0].result
        if not isinstance(answers, dict) or sorted(answers) != sorted(PORTS):
            problems.append(f"{address}: {answers!r}")
            continue
        for port, up_ in answers.items():
            if up_ != (expected(truth, address, port)[0] == "open"):
                problems.append(
                    f"{address}:{port} {up_}, expected {expected(truth, address, port)}"
                )
    return problems


# -- measuring ----------------------------------------------------------------------------------
def _children() -> list[str]:
    kids: list[str] = []
    for task_dir in Path("/proc/self/task").iterdir():
        try:
            kids += (task_dir / "children").read_text().split()
        except OSError:
            continue
    return kids


def wait_idle() -> None:
    """Until the ScanService's workers (and its watcher) exited and were reaped, at most
    IDLE_WAIT seconds: only then RUSAGE_CHILDREN holds their CPU time."""
    deadline = time.monotonic() + IDLE_WAIT
    while _children() and time.monotonic() < deadline:
        time.sleep(0.2)
    if _children():
        print(f"warning: child processes still alive: {_children()}", file=sys.stderr)


def _cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    exact: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, wall: float, cpu: float, problems: list[str]) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.exact += not problems
        if problems:
            self.notes.append(f"{len(problems)} differences, e.g. {problems[:3]}")

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def exact_text(self) -> str:
        return f"{self.exact}/{len(self.wall)}"


def measure(
    runs: Runs, label: str, work: Callable[[], AggregatedResult], check: Callable[[Any], list[str]]
) -> None:
    wait_idle()
    cpu = _cpu()
    start = time.perf_counter()
    result = work()
    wall = time.perf_counter() - start
    wait_idle()
    cpu = _cpu() - cpu
    problems = check(result)
    runs.add(wall, cpu, problems)
    print(
        f"  {label}: {wall:.2f} s, CPU {cpu:.2f} s, {'exact' if not problems else 'NOT EXACT'}",
        file=sys.stderr,
        flush=True,
    )


def machine() -> str:
    fields: dict[str, str] = {}
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    cores = int(fields.get("Core(s) per socket", "0") or 0) * int(fields.get("Socket(s)", "1") or 1)
    return (
        f"machine: {fields.get('Model name', '?')}, {cores or '?'} cores, "
        f"{fields.get('CPU(s)', '?')} CPUs (lscpu); Python {sys.version.split()[0]}"
    )


# -- the run inside the client namespace ----------------------------------------------------------
def inside(args: argparse.Namespace, lab: Lab) -> int:
    addresses = lab.hosts4[: args.hosts]
    lab_net = ipaddress.ip_network(V4_LAB_NET)
    if not all(ipaddress.ip_address(a) in lab_net for a in addresses):
        raise SystemExit(f"refusing: an inventory address is outside {V4_LAB_NET}")
    nr = inventory(addresses)
    truth = lab.truth
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    states: dict[str, int] = {}
    for a in addresses:
        for p in PORTS:
            state, reason = expected(truth, a, p)
            states[f"{state}/{reason}"] = states.get(f"{state}/{reason}", 0) + 1
    own_states: dict[str, int] = {}
    for i, a in enumerate(addresses):
        state = expected(truth, a, own_port(i))[0]
        own_states[state] = own_states.get(state, 0) + 1
    ping_hosts = min(args.tcp_ping_hosts or len(addresses), len(addresses))
    ping_nr = nr.filter(filter_func=lambda h: int(h.name[1:]) < ping_hosts)
    scale = len(addresses) / ping_hosts

    def run(workers: int, **kwargs: Any) -> Callable[[], AggregatedResult]:
        def go() -> AggregatedResult:
            nr.data.reset_failed_hosts()
            return nr.with_runner(ThreadedRunner(num_workers=workers)).run(**kwargs)

        return go

    def ping(workers: int, timeout: int) -> AggregatedResult:
        ping_nr.data.reset_failed_hosts()
        return ping_nr.with_runner(ThreadedRunner(num_workers=workers)).run(
            task=tcp_ping, ports=PORTS, timeout=timeout
        )

    results: dict[tuple[str, int], Runs] = {}
    pings = [f"tcp_ping:{t}s" for t in TCP_PING_TIMEOUTS]
    for key in [(s, w) for w in WORKERS for s in ("plain", "grouped", "own", *pings)]:
        results[key] = Runs()
    results["scan_inventory", 0] = Runs()
    exact_plain = lambda r: portscan_mismatches(truth, r, ("portscan",))  # noqa: E731
    exact_grouped = lambda r: portscan_mismatches(truth, r, ("pre-check", "post-check"))  # noqa: E731
    exact_own = lambda r: portscan_mismatches(truth, r, ("portscan",), own=True)  # noqa: E731
    exact_inv = lambda r: portscan_mismatches(truth, r, ("scan_inventory",))  # noqa: E731
    exact_ping = lambda r: tcp_ping_mismatches(truth, r)  # noqa: E731
    started = time.perf_counter()
    for number in range(max(args.runs, args.tcp_ping_runs)):  # taking turns
        print(f"run {number + 1}", file=sys.stderr, flush=True)
        for w in WORKERS:
            if number < args.runs:
                measure(results["plain", w], f"plain nw={w}", run(w, task=portscan, ports=PORTS),
                        exact_plain)  # fmt: skip
                measure(results["grouped", w], f"grouped nw={w}", run(w, task=change_window),
                        exact_grouped)  # fmt: skip
                measure(results["own", w], f"own port nw={w}", run(w, task=portscan), exact_own)
            for t, name in zip(TCP_PING_TIMEOUTS, pings, strict=True):
                if number < args.tcp_ping_runs:
                    measure(results[name, w], f"{name} nw={w} ({ping_hosts} hosts)",
                            lambda w=w, t=t: ping(w, t), exact_ping)  # fmt: skip
        if number < args.runs:
            measure(results["scan_inventory", 0], "scan_inventory",
                    lambda: scan_inventory(nr, ports=PORTS), exact_inv)  # fmt: skip
    total = time.perf_counter() - started

    # -- the table ---------------------------------------------------------------------------
    mix = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
    print(
        f"{len(addresses)} hosts x {len(PORTS)} ports {','.join(map(str, PORTS))} on the lab "
        f"(20 ms round trip, client namespace {lab.client_ns}): {mix}"
    )
    print(
        "own port: 1 per host from inventory data, "
        + ", ".join(f"{k} {v}" for k, v in sorted(own_states.items()))
    )
    print(
        f"portscan {getattr(nornir_portscan, '__version__', '')} from "
        f"{Path(nornir_portscan.__file__).parent}, default options; tcp_ping timeouts "
        f"{', '.join(f'{t} s' for t in TCP_PING_TIMEOUTS)} (the first: its default); "
        f"runs: portscan {args.runs}, tcp_ping {args.tcp_ping_runs}"
        + (
            f"; tcp_ping on the first {ping_hosts} hosts, wall x {scale:.2f} (extrapolated)"
            if ping_hosts < len(addresses)
            else ""
        )
    )
    print(machine())
    header = (
        f"{'scenario':<16}{'nw':>4}{'portscan s':>12}{'reference':>21}{'ref s':>9}"
        f"{'ratio':>22}{'goal':>8}{'exact':>7}{'ref exact':>11}{'CPU s':>8}{'ref CPU s':>10}"
    )
    print(header)
    print("-" * len(header))
    for w in WORKERS:
        plain = results["plain", w]
        ext = "*" if ping_hosts < len(addresses) else ""
        for name in pings:
            ping_runs = results[name, w]
            ping_wall = ping_runs.median * scale
            speed = ping_wall / plain.median
            goal = ">=10x" if name == pings[0] else "-"
            print(
                f"{'plain':<16}{w:>4}{plain.median:>12.2f}{name + ext:>21}{ping_wall:>9.2f}"
                f"{f'{speed:.1f}x faster':>22}{goal:>8}{plain.exact_text:>7}"
                f"{ping_runs.exact_text + ' o/¬o':>11}{plain.cpu_median:>8.2f}"
                f"{ping_runs.cpu_median * scale:>10.2f}"
            )
        for key, goal in (("grouped", "<=2.5x"), ("own", "<=2x")):
            r = results[key, w]
            label = "grouped pre/post" if key == "grouped" else "own port"
            slow = r.median / plain.median
            print(
                f"{label:<16}{w:>4}{r.median:>12.2f}{'plain portscan':>21}{plain.median:>9.2f}"
                f"{f'{slow:.2f}x of plain':>22}{goal:>8}{r.exact_text:>7}{plain.exact_text:>11}"
                f"{r.cpu_median:>8.2f}{plain.cpu_median:>10.2f}"
            )
    inv = results["scan_inventory", 0]
    for w in WORKERS:
        ref = results[pings[0], w]
        ping_wall = ref.median * scale
        plain = results["plain", w]
        print(
            f"{'scan_inventory':<16}{'-':>4}{inv.median:>12.2f}"
            f"{f'{pings[0]} nw={w}':>21}{ping_wall:>9.2f}"
            f"{f'{ping_wall / inv.median:.1f}x faster':>22}{'-':>8}{inv.exact_text:>7}"
            f"{ref.exact_text + ' o/¬o':>11}{inv.cpu_median:>8.2f}"
            f"{ref.cpu_median * scale:>10.2f}"
        )
    print(
        "ratio: tcp_ping wall / portscan wall (faster), or this form's wall / the plain run's at "
        "the same num_workers; exact: runs exact vs the ground truth (state, reason, scanned "
        "ports); o/¬o: tcp_ping compared on open vs not open"
        + ("; * extrapolated" if ping_hosts < len(addresses) else "")
        + f"; measured in {total:.0f} s"
    )
    for key, r in results.items():
        for note in r.notes:
            print(f"{key[0]} nw={key[1]}: {note}")
    return 0 if all(r.exact == len(r.wall) for r in results.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each portscan form (3)")
    parser.add_argument("--tcp-ping-runs", type=int, default=1, help="runs of tcp_ping (1)")
    parser.add_argument("--hosts", type=int, default=1000, help="inventory hosts (1000)")
    parser.add_argument(
        "--tcp-ping-hosts", type=int, help="run tcp_ping on the first N hosts, extrapolate"
    )
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    if not 1 <= args.hosts <= 4000 or args.runs < 1 or args.tcp_ping_runs < 1:
        raise SystemExit("use --hosts 1 to 4000, --runs >= 1 and --tcp-ping-runs >= 1")
    config = lab_config(args.hosts)
    truth_env = os.environ.get(INSIDE)
    if truth_env:
        own_ns = Path("/proc/self/ns/net").stat().st_ino
        if own_ns != Path(f"/run/netns/{config.client_ns}").stat().st_ino:
            raise SystemExit(f"refusing: not inside the namespace {config.client_ns}")
        return inside(args, Lab.load(config, Path(truth_env)))
    try:
        truth_path, _ = up(config)
    except LabError as exc:
        raise SystemExit(f"cannot bring up the lab: {exc}") from exc
    try:
        env = {**os.environ, INSIDE: str(truth_path), "PYTHONPATH": str(REPO)}
        cmd = ["ip", "netns", "exec", config.client_ns, sys.executable, *sys.argv]
        return subprocess.run(cmd, env=env, timeout=CHILD_TIMEOUT).returncode
    finally:
        if not args.keep:
            down(config.prefix)


if __name__ == "__main__":
    sys.exit(main())
