"""Accuracy under load: the ``portscan`` CLI against the lab, every state and reason exact.

Each scan runs as its own process in the lab's client namespace (``ip netns exec``) and its JSON
report is compared port by port with the ground truth: the listed ports, ``closed_count`` for the
rest of ``scanned_ports``, the host status, and no errors. What is varied:

- the defaults and the engine's most aggressive settings (its highest concurrency, the lowest
  adaptive floor, no retries), three runs each;
- a low open-file limit; more probes in flight than a listen backlog (a second lab), and 100
  backlog-1 listeners that 64 hosts share; 2% random loss each way; a 20 SYN/s policer per
  host; two scans of the same hosts at once; a rate limit; a host timeout;
- the adaptive timeout at 20 ms latency against the cost of waiting the full timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nornir_portscan.ports import parse_ports

from .exact import report_mismatches
from .fixture import running_lab
from .lab import Lab, state_dir
from .truth import (
    ADMIN_EVERYWHERE,
    OPEN_BLOCK_BASE,
    OPEN_EVERYWHERE,
    OPEN_ROTATION,
    UNIQUE_OPEN_BASE,
    UNREACH_EVERYWHERE,
    LabConfig,
)

pytestmark = [pytest.mark.netns, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCAN_TIMEOUT = 120  # seconds; no scan here comes near it
# This checkout's package, in the CLI and in its workers (without it the workers import the
# copy the interpreter has installed, which may be another checkout).
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}
AGGRESSIVE = [
    # More than the engine will run: it lowers this to what the ephemeral port range allows
    # (and says so in a warning), so this is its highest concurrency.
    "--concurrency",
    "100000",
    # The adaptive timeout alone decides (srtt + 4 rttvar, no floor to speak of) and a probe
    # gets one attempt: nothing gives a late answer a second chance.
    "--min-timeout",
    "0.001",
    "--retries",
    "0",
]


# --- helpers --------------------------------------------------------------------------------


def lab_ports(lab: Lab) -> str:
    """Every special port below the unique ones, then the block of unique ports: on each host
    exactly one port of that block is open, the rest of it is closed."""
    fixed = [p for p in lab.special_ports if p < UNIQUE_OPEN_BASE]
    last = UNIQUE_OPEN_BASE + max(len(lab.hosts4), len(lab.hosts6)) - 1
    return ",".join(map(str, fixed)) + f",{UNIQUE_OPEN_BASE}-{last}"


def all_hosts(lab: Lab) -> list[str]:
    return lab.hosts4 + lab.hosts6 + lab.down4 + lab.down6


def portscan_argv(lab: Lab, targets: Path, *args: str) -> list[str]:
    return [
        *lab.netns_exec,
        sys.executable,
        "-m",
        "nornir_portscan",
        "-iL",
        str(targets),
        *args,
        "--json",
        "-",
        "--no-progress",
    ]


def portscan(lab: Lab, targets: Path, *args: str, nofile: int | None = None) -> dict[str, Any]:
    """Run the CLI in the lab's client namespace; return its JSON report."""

    def limit() -> None:
        if nofile is not None:  # soft = hard: the scanner cannot raise it
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.run(
        portscan_argv(lab, targets, *args),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=SCAN_TIMEOUT,
        preexec_fn=limit if nofile is not None else None,
    )
    assert proc.returncode == 0, f"portscan exited {proc.returncode}: {proc.stderr[-2000:]}"
    return dict(json.loads(proc.stdout))


def write_targets(path: Path, hosts: list[str]) -> Path:
    path.write_text("\n".join(hosts) + "\n")
    return path


def assert_exact(lab: Lab, report: dict[str, Any], hosts: list[str], ports: str) -> None:
    wrong = report_mismatches(lab.truth, report, hosts, ports)
    assert wrong == [], f"{len(wrong)} differences from the ground truth, e.g. {wrong[:10]}"


def listen_overflows(namespace: str) -> int:
    """TcpExt ListenOverflows of ``namespace``: SYNs dropped because an accept queue was full."""
    text = subprocess.run(
        ["ip", "netns", "exec", namespace, "cat", "/proc/net/netstat"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    lines = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenOverflows")])


@pytest.fixture(scope="module")
def targets(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_targets(tmp_path_factory.mktemp("accuracy") / "targets.txt", all_hosts(lab))


# --- every state and reason, at the defaults and at the most aggressive settings -------------


@pytest.mark.parametrize("run", [1, 2, 3])
@pytest.mark.parametrize("profile", ["defaults", "aggressive"])
def test_every_port_exact(lab: Lab, targets: Path, profile: str, run: int) -> None:
    ports = lab_ports(lab)
    args = AGGRESSIVE if profile == "aggressive" else []
    report = portscan(lab, targets, "-p", ports, *args)
    print(
        f"{profile} run {run}: {report['probes_sent']} probes in {report['duration']:.2f} s "
        f"({report['rate']:.0f}/s); warnings {report['warnings']}"
    )
    assert_exact(lab, report, all_hosts(lab), ports)
    if profile == "aggressive":
        assert any("concurrency lowered from 100000" in w for w in report["warnings"])


# --- local limits -------------------------------------------------------------------------


def test_low_open_file_limit(lab: Lab, tmp_path: Path) -> None:
    """``ulimit -n 64`` (soft and hard): the engine lowers its concurrency and stays exact."""
    hosts = lab.hosts4[:32] + lab.hosts6[:4] + lab.down4 + lab.down6
    ports = ",".join(str(p) for p in lab.special_ports if p < UNIQUE_OPEN_BASE)
    ports += f",{UNIQUE_OPEN_BASE}-{UNIQUE_OPEN_BASE + 31}"
    report = portscan(
        lab, write_targets(tmp_path / "t", hosts), "-p", ports, "--concurrency", "5000", nofile=64
    )
    print(f"ulimit -n 64: {report['duration']:.2f} s, warnings {report['warnings']}")
    assert any("the open-file limit is 64" in w for w in report["warnings"])
    assert_exact(lab, report, hosts, ports)


@pytest.fixture(scope="module")
def small_backlog_lab(lab: Lab) -> Iterator[Lab]:
    """A second lab beside the first whose listeners have a listen backlog of 1: every scan
    below overflows it (the test checks ListenOverflows), hundreds of times."""
    config = LabConfig(
        prefix=f"{lab.config.prefix[:6]}bl",
        hosts=len(lab.hosts4),
        hosts6=len(lab.hosts6),
        latency_ms=lab.config.latency_ms,
        backlog=1,
    )
    with running_lab(config) as small:
        yield small


BACKLOG_CASES = [
    pytest.param([], id="defaults"),
    pytest.param(AGGRESSIVE[:2], id="highest-concurrency"),
]


@pytest.mark.parametrize("args", BACKLOG_CASES)
def test_more_probes_in_flight_than_the_listen_backlog(
    small_backlog_lab: Lab, tmp_path: Path, args: list[str]
) -> None:
    """Hundreds of connects at once to listening sockets with a backlog of 1.

    A SYN that meets a full accept queue is dropped by the target's kernel, so such a port
    answers only to a later attempt: the default retry, and the extra attempts that silent
    ports get once some port has answered a retry (with no retry a full queue cannot be told
    from a firewall, by any scanner)."""
    lab = small_backlog_lab
    hosts = all_hosts(lab)
    # The open ports (three wildcard listeners take a connect from every host at once), a
    # dropped and a rejected one.
    ports = ",".join(map(str, [*OPEN_EVERYWHERE, *OPEN_ROTATION, 113, 445]))
    before = listen_overflows(lab.config.targets_ns)
    report = portscan(lab, write_targets(tmp_path / "t", hosts), "-p", ports, *args)
    overflows = listen_overflows(lab.config.targets_ns) - before
    second_tries = sum(
        1 for h in report["hosts"] for p in h["ports"] if p["state"] == "open" and p["attempts"] > 1
    )
    print(
        f"backlog 1 {args}: {overflows} connects met a full accept queue, {second_tries} open "
        f"ports found on a later attempt; {report['duration']:.2f} s"
    )
    assert overflows > 0, "the accept queues never overflowed: the test proves nothing"
    assert_exact(lab, report, hosts, ports)


@pytest.fixture(scope="module")
def open_block_lab(lab: Lab) -> Iterator[Lab]:
    """64 hosts with 100 more open ports each, every one a single wildcard listening socket
    with a backlog of 1 that all 64 hosts' connects share: 6,400 open ports."""
    config = LabConfig(
        prefix=f"{lab.config.prefix[:5]}blk",
        hosts=64,
        hosts6=0,
        latency_ms=lab.config.latency_ms,
        backlog=1,
        open_block=100,
    )
    with running_lab(config) as block:
        yield block


BLOCK_PORTS = f"{OPEN_BLOCK_BASE}-{OPEN_BLOCK_BASE + 99},113,445"


@contextlib.contextmanager
def starved_listener(lab: Lab, pause: float = 0.15) -> Iterator[None]:
    """The lab's listener stopped (SIGSTOP) for ``pause`` s at random moments 0.2-0.8 s apart,
    as a server starved of CPU: its accept queues stay full, its SYNs dropped, meanwhile."""
    state = json.loads((state_dir(lab.config.prefix) / "state.json").read_text())
    (pid,) = [p["pid"] for p in state["processes"] if p["marker"].endswith("listener.py")]
    done = threading.Event()
    rng = random.Random(12)

    def starve() -> None:
        deadline = time.monotonic() + SCAN_TIMEOUT
        while not done.wait(rng.uniform(0.2, 0.8)) and time.monotonic() < deadline:
            os.kill(pid, signal.SIGSTOP)
            try:
                done.wait(pause)
            finally:
                os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=starve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
        os.kill(pid, signal.SIGCONT)


def scan_open_block(lab: Lab, run: int, *args: str, starved: bool = False) -> None:
    hosts = all_hosts(lab)
    with tempfile.TemporaryDirectory() as tmp:
        before = listen_overflows(lab.config.targets_ns)
        starving = starved_listener(lab) if starved else contextlib.nullcontext()
        with starving:
            report = portscan(lab, write_targets(Path(tmp) / "t", hosts), "-p", BLOCK_PORTS, *args)
    overflows = listen_overflows(lab.config.targets_ns) - before
    attempts = Counter(p["attempts"] for h in report["hosts"] for p in h["ports"])
    print(
        f"run {run} {list(args)}{' starved' if starved else ''}: {overflows} connects met a "
        f"full accept queue; attempts of the listed ports {sorted(attempts.items())}; "
        f"{report['probes_sent']} probes in {report['duration']:.2f} s"
    )
    assert overflows > 0, "the accept queues never overflowed: the test proves nothing"
    assert_exact(lab, report, hosts, BLOCK_PORTS)


@pytest.mark.xfail(
    reason="issue 12, item 5: with the defaults a few of these 6,400 open ports can read "
    "filtered when the listeners are starved of CPU for tenths of a second at a time (their SYNs "
    "met full accept queues at all five attempts, before any host's window was cut); exact in "
    "every run beside busy loops, not beside a listener stopped 150 ms at random moments. The "
    "README names --retries 9 as exact here (the test below)",
    strict=False,
)
@pytest.mark.parametrize("run", [1, 2, 3, 4, 5, 6])
def test_a_hundred_backlog_one_listeners_on_64_addresses(open_block_lab: Lab, run: int) -> None:
    """Issue 12: the defaults gave 7-25 of these 6,400 open ports ``filtered`` in 3 of 4 runs.
    Now the answers to retries give silent ports more attempts, spread over time, and cut each
    host's window; a port silent at every attempt waits for its unit to end, in case drops
    show meanwhile."""
    scan_open_block(open_block_lab, run)


@pytest.mark.parametrize("run", [1, 2, 3])
def test_a_hundred_backlog_one_listeners_are_exact_with_ten_attempts(
    open_block_lab: Lab, run: int
) -> None:
    """What the README states: ``--retries 9`` (ten attempts for every silent port, one at a
    time, a timeout apart) makes this case exact, even with the listener stopped for 150 ms at
    random moments 0.2-0.8 s apart (the defaults are not, then)."""
    scan_open_block(open_block_lab, run, "--retries", "9", starved=True)


@pytest.fixture(scope="module")
def lossy_lab(lab: Lab) -> Iterator[Lab]:
    """256 hosts behind 2% random loss in each direction (TCP and ICMP)."""
    config = LabConfig(
        prefix=f"{lab.config.prefix[:5]}los",
        hosts=256,
        hosts6=0,
        latency_ms=lab.config.latency_ms,
        loss=2,
    )
    with running_lab(config) as lossy:
        yield lossy


@pytest.mark.parametrize("run", [1, 2, 3])
def test_two_percent_loss_each_way(lossy_lab: Lab, run: int) -> None:
    """Issue 12: 256 hosts x nmap's top 100 behind 2% loss each way. About 4% of the round
    trips are lost: about a thousand ports answer only a retry, dozens only a third try (the
    code before issue 12 called one or two closed ports filtered in most runs); with the
    defaults every port comes out right."""
    lab = lossy_lab
    hosts = lab.hosts4
    ports = ",".join(map(str, parse_ports("top100")))
    with tempfile.TemporaryDirectory() as tmp:
        report = portscan(lab, write_targets(Path(tmp) / "t", hosts), "-p", ports)
    attempts = Counter(p["attempts"] for h in report["hosts"] for p in h["ports"])
    print(
        f"run {run}: attempts of the listed ports {sorted(attempts.items())}; "
        f"{report['probes_sent']} probes in {report['duration']:.2f} s"
    )
    assert report["probes_sent"] > len(hosts) * 100, "no probe was lost: the test proves nothing"
    assert_exact(lab, report, hosts, ports)


@pytest.fixture(scope="module")
def policed_lab(lab: Lab) -> Iterator[Lab]:
    """Every target address lets in 20 SYNs a second (iptables hashlimit, burst 5)."""
    config = LabConfig(
        prefix=f"{lab.config.prefix[:5]}pol",
        hosts=8,
        hosts6=2,
        latency_ms=lab.config.latency_ms,
        syn_limit=20,
    )
    with running_lab(config) as policed:
        yield policed


def policer_drops(namespace: str) -> int:
    """Packets the lab's SYN policer dropped in ``namespace`` so far (IPv4 and IPv6)."""
    total = 0
    for tool in ("iptables", "ip6tables"):
        out = subprocess.run(
            ["ip", "netns", "exec", namespace, tool, "-L", "INPUT", "-v", "-x", "-n"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        total += sum(int(line.split()[0]) for line in out.splitlines() if "limit: above" in line)
    return total


@pytest.mark.parametrize("run", [1, 2])
def test_a_policer_at_20_syns_a_second_per_host(policed_lab: Lab, run: int) -> None:
    """Issue 12: at about 20 SYN/s, live hosts came out ``no-response`` and most open ports
    ``filtered`` (the code before: 193 differences from the truth here). 30 ports of each of 10
    hosts need 1.25 s at that rate, at the least."""
    lab = policed_lab
    hosts = all_hosts(lab)
    ports = lab_ports(lab)
    with tempfile.TemporaryDirectory() as tmp:
        before = policer_drops(lab.config.targets_ns)
        report = portscan(lab, write_targets(Path(tmp) / "t", hosts), "-p", ports)
    dropped = policer_drops(lab.config.targets_ns) - before
    print(
        f"run {run}: the policer dropped {dropped} SYNs; {report['probes_sent']} probes in "
        f"{report['duration']:.2f} s"
    )
    assert dropped > 0, "the policer never dropped a SYN: the test proves nothing"
    assert_exact(lab, report, hosts, ports)


def test_a_host_that_only_rejects_is_up(lab: Lab, tmp_path: Path) -> None:
    """Issue 12: a host that answered anything is never ``no-response``. Every port scanned
    here is rejected (ICMP admin-prohibited, host-unreachable): the ports are filtered. An
    IPv4 target sends its rejects from its own address: it is up. The lab's IPv6 targets are
    not interface addresses, so their ICMPv6 rejects come from the link address before them,
    as a router's would: that is not the host answering, so they stay ``no-response``, as the
    down hosts, which answer nothing."""
    v4 = [*lab.hosts4[:8], *lab.down4]
    v6 = lab.hosts6[:2]
    ports = ",".join(map(str, (*ADMIN_EVERYWHERE, *UNREACH_EVERYWHERE)))
    report = portscan(lab, write_targets(tmp_path / "t", [*v4, *v6, *lab.down6]), "-p", ports)
    status = {h["address"]: h["status"] for h in report["hosts"]}
    down = {*lab.down4, *lab.down6}
    assert {a: s for a, s in status.items() if a in down} == dict.fromkeys(down, "no-response")
    assert [status[a] for a in lab.hosts4[:8]] == ["up"] * 8
    assert [h["up"] for h in report["hosts"] if h["address"] in lab.hosts4[:8]] == [True] * 8
    assert [status[a] for a in v6] == ["no-response"] * 2
    v6_report = {**report, "hosts": [h for h in report["hosts"] if h["address"] in v6]}
    wrong = report_mismatches(lab.truth, v6_report, v6, ports)
    assert [w for w in wrong if "status" not in w] == []
    v4_report = {**report, "hosts": [h for h in report["hosts"] if h["address"] in v4]}
    assert_exact(lab, v4_report, v4, ports)


def test_two_scans_of_the_same_hosts_at_once(lab: Lab, targets: Path) -> None:
    """Two CLI processes, each at its highest concurrency, share the client's ephemeral ports."""
    ports = lab_ports(lab)
    argv = portscan_argv(lab, targets, "-p", ports, *AGGRESSIVE)
    procs = [
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV
        )
        for _ in range(2)
    ]
    reports = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=SCAN_TIMEOUT)
        finally:
            proc.kill()
        assert proc.returncode == 0, err[-2000:]
        reports.append(json.loads(out))
    for number, report in enumerate(reports, 1):
        print(f"scan {number} of 2: {report['probes_sent']} probes in {report['duration']:.2f} s")
        assert_exact(lab, report, all_hosts(lab), ports)


# --- rate limit and host timeout ------------------------------------------------------------


def test_rate_limit(lab: Lab, tmp_path: Path) -> None:
    """16,000 closed ports at --rate 4000: long enough (4 s) that start-up does not count. The
    limit is a ceiling (within 10%); below it, only that the limiter does not starve the scan:
    a busy 2-core machine reached 88% of it (a speed figure is a benchmark's, not a test's)."""
    rate = 4000
    hosts = lab.hosts4[:64]
    ports = "1000-1249"
    report = portscan(lab, write_targets(tmp_path / "t", hosts), "-p", ports, "--rate", str(rate))
    achieved = report["probes_sent"] / report["duration"]
    print(
        f"--rate {rate}: {report['probes_sent']} probes in {report['duration']:.2f} s = "
        f"{achieved:.0f}/s ({achieved / rate:.1%} of the limit)"
    )
    assert report["probes_sent"] == len(hosts) * 250
    assert 0.5 * rate <= achieved <= 1.1 * rate
    assert_exact(lab, report, hosts, ports)


def test_host_timeout_keeps_exact_partial_results(lab: Lab, tmp_path: Path) -> None:
    """--host-timeout 0.5 on hosts that need several seconds: status timed_out, the ports not
    scanned are counted, and every port that was scanned is right."""
    hosts = lab.hosts4[:4]
    ports = "1-4000"
    started = time.monotonic()
    report = portscan(
        lab,
        write_targets(tmp_path / "t", hosts),
        "-p",
        ports,
        "--rate",
        "2000",
        "--host-timeout",
        "0.5",
    )
    elapsed = time.monotonic() - started
    wrong = report_mismatches(lab.truth, report, hosts, ports, partial=True)
    assert wrong == [], wrong[:10]
    for host in report["hosts"]:
        scanned = len(parse_ports(host["scanned_ports"]))
        match = re.fullmatch(r"host timeout: (\d+) ports not scanned", host["error"] or "")
        assert match, host["error"]
        print(f"{host['address']}: {scanned} ports scanned, {match[1]} not; {elapsed:.2f} s")
        assert 0 < scanned < 4000
        assert scanned + int(match[1]) == 4000
    assert elapsed < 10


# --- the adaptive timeout -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_20ms(lab: Lab) -> Iterator[Lab]:
    """The session's lab if it has 20 ms latency (the default), else one beside it that does."""
    if lab.config.latency_ms == 20:
        yield lab
        return
    config = LabConfig(prefix=f"{lab.config.prefix[:6]}at", hosts=256, hosts6=0, latency_ms=20)
    with running_lab(config) as other:
        yield other


def test_adaptive_timeout_is_visible(lab_20ms: Lab, tmp_path: Path) -> None:
    """Dropped ports at 20 ms cost what the round trips say, not the full 1 s timeout.

    256 hosts x 6 ports, two of them dropped on every host, default timeout and retries, 50
    probes in flight per worker (so that the full-timeout cost is large enough to compare)."""
    lab = lab_20ms
    hosts = lab.hosts4[:256]
    ports = "22,23,139,445,3389,5900"
    concurrency = 50
    report = portscan(
        lab, write_targets(tmp_path / "t", hosts), "-p", ports, "--concurrency", str(concurrency)
    )
    assert_exact(lab, report, hosts, ports)
    timeout = report["options"]["timeout"]
    assert timeout == 1.0
    silent = [p for h in report["hosts"] for p in h["ports"] if p["reason"] == "no-response"]
    filtered_probes = sum(p["attempts"] for p in silent)
    assert report["warnings"] == []  # so every worker ran ``concurrency`` probes at once
    in_flight = concurrency * (report["options"]["processes"] or len(os.sched_getaffinity(0)))
    full_cost = filtered_probes * timeout / in_flight
    rtts = [p["rtt_ms"] for h in report["hosts"] for p in h["ports"] if p["rtt_ms"] is not None]
    print(
        f"20 ms lab: {len(silent)} dropped ports, {filtered_probes} filtered probes x "
        f"{timeout} s / {in_flight} in flight = {full_cost:.2f} s at the full timeout; the scan "
        f"took {report['duration']:.2f} s ({report['duration'] / full_cost:.0%}); "
        f"median answered RTT {statistics.median(rtts):.1f} ms"
    )
    assert filtered_probes == 2 * 2 * len(hosts)  # two dropped ports a host, two attempts each
    assert report["duration"] < 0.5 * full_cost
