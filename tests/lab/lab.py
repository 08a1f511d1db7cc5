"""Bring the lab up, check it, tear it down.

Two network namespaces joined by one veth pair; the host's own namespace and routing are never
touched::

    <prefix>-client                              <prefix>-targets
    198.18.0.1/30  fd00:1ab::1/64   <-veth->     198.18.0.2/30  fd00:1ab::2/64
    routes: 198.18.0.0/15, fd00:1ab::/48         local routes on lo: 198.18.1.0/24 ..., 198.19.0.1,
            (no default route)                   fd00:1ab:0:1::/..., fd00:1ab:0:2::1
    nft: random loss (optional)                  nft: drop / reject / down hosts
    iptables raw PREROUTING -j NFQUEUE           listener.py: every listening socket
    delay.py: holds replies for the latency

The scanner runs in the client namespace (``ip netns exec <prefix>-client ...`` or
``Lab.entered()``). The processes started here are recorded by pid in ``state.json`` and killed
by pid on ``down``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .truth import (
    V4_DOWN,
    V4_LAB_NET,
    V4_LINK_CLIENT,
    V4_LINK_PREFIX,
    V4_LINK_TARGETS,
    V6_DOWN,
    V6_LAB_NET,
    V6_LINK_CLIENT,
    V6_LINK_PREFIX,
    V6_LINK_TARGETS,
    LabConfig,
    client_ruleset,
    ground_truth,
    make_plan,
    syn_policer,
    targets_ruleset,
)

__all__ = ["Lab", "LabError", "LabUnavailableError", "down", "state_dir", "status", "up"]

HERE = Path(__file__).resolve().parent
STATE_ROOT = Path(os.environ.get("NPL_STATE_ROOT", "/run/nornir-portscan-lab"))
QUEUE_NUM = 7
READY_TIMEOUT = 15.0
LAB_NICE = -10  # the listener and delay programs: ahead of the scan (see _spawn)
CLONE_NEWNET = 0x40000000


class LabError(RuntimeError):
    """The lab could not be built or checked; the message says which step failed."""


class LabUnavailableError(LabError):
    """This machine cannot host the lab at all (not root, no ``ip``, no namespaces)."""


def state_dir(prefix: str) -> Path:
    return STATE_ROOT / prefix


def _run(argv: list[str], *, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise LabError(
            f"{' '.join(argv[:8])}{' ...' if len(argv) > 8 else ''} failed "
            f"(exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


def _ns(ns: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
    return _run(["ip", "netns", "exec", ns, *argv], stdin=stdin, check=check)


def _sysctl(ns: str, values: dict[str, str]) -> None:
    # One shell in the namespace writes them all; /proc/sys there is the namespace's own.
    script = "".join(f"echo '{v}' > /proc/sys/{k.replace('.', '/')}\n" for k, v in values.items())
    _ns(ns, "sh", "-e", "-c", script)


def check_prerequisites(config: LabConfig) -> None:
    """Raise ``LabUnavailableError`` with a clear reason if the lab cannot run here."""
    if os.geteuid() != 0:
        raise LabUnavailableError("the lab needs root (network namespaces, nftables)")
    iptables = config.latency_ms or config.syn_limit
    needed = ["ip", "nft"] + (["iptables", "ip6tables"] if iptables else [])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise LabUnavailableError(
            f"the lab needs {', '.join(missing)} (Debian: iproute2, nftables, iptables)"
        )
    probe = f"{config.prefix}-probe"
    proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabUnavailableError(f"'ip netns add' failed: {proc.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _pid_alive(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def _kill(pid: int, marker: str) -> None:
    """Stop one process we started, if ``pid`` is still it (pids get reused)."""
    if not _pid_alive(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _pid_alive(pid, marker):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    if _pid_alive(pid, marker):
        os.kill(pid, signal.SIGKILL)


def _spawn(ns: str, script: str, args: list[str], ready: Path, log: Path) -> int:
    ready.unlink(missing_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(HERE / script), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    # The lab's targets stand for other machines, with CPUs of their own: ahead of the scan
    # and the rest of this machine, so a listener starved of CPU does not leave its accept
    # queues full for seconds (its SYNs dropped, open ports silent to any scanner).
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, LAB_NICE)
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                proc.kill()
            tail = log.read_text(errors="replace")[-2000:]
            raise LabError(f"{script} in {ns} did not start (see {log}):\n{tail}")
        time.sleep(0.02)
    return proc.pid


def _namespaces() -> set[str]:
    out = _run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _read_state(prefix: str) -> dict[str, Any] | None:
    path = state_dir(prefix) / "state.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def status(prefix: str = "npl") -> dict[str, Any]:
    """What is running: ``{"up": bool, "problems": [...], "state": {...} | None}``."""
    state = _read_state(prefix)
    problems = []
    names = _namespaces()
    for ns in (f"{prefix}-client", f"{prefix}-targets"):
        if ns not in names:
            problems.append(f"namespace {ns} is missing")
    if state is None:
        problems.append(f"no state file in {state_dir(prefix)}")
    else:
        for proc in state["processes"]:
            if not _pid_alive(proc["pid"], proc["marker"]):
                problems.append(f"{proc['marker']} (pid {proc['pid']}) is not running")
    return {"up": not problems, "problems": problems, "state": state}


def down(prefix: str = "npl") -> None:
    """Stop the lab's processes (by pid) and delete its namespaces. Safe to repeat."""
    state = _read_state(prefix)
    if state:
        for proc in state["processes"]:
            _kill(proc["pid"], proc["marker"])
    names = _namespaces()
    for ns in (f"{prefix}-client", f"{prefix}-targets", f"{prefix}-probe"):
        if ns in names:
            _run(["ip", "netns", "del", ns], check=False)
    if state_dir(prefix).exists():
        shutil.rmtree(state_dir(prefix), ignore_errors=True)


def _verify_routes(config: LabConfig, addresses: list[str]) -> None:
    """Refuse to go on unless every lab address routes out of the client veth, nowhere else."""
    routes = _ns(config.client_ns, "ip", "route", "show", "default")
    routes += _ns(config.client_ns, "ip", "-6", "route", "show", "default")
    if routes.strip():
        raise LabError(f"{config.client_ns} has a default route; refusing: {routes.strip()}")
    for addr in addresses:
        got = _ns(config.client_ns, "ip", "route", "get", addr)
        if f"dev {config.client_veth} " not in got + " ":
            raise LabError(f"{addr} does not route via {config.client_veth}: {got.strip()}")


def _build(config: LabConfig, directory: Path) -> list[dict[str, Any]]:
    plan = make_plan(config)
    c, t = config.client_ns, config.targets_ns
    cv, tv = config.client_veth, config.targets_veth
    for ns in (c, t):
        _run(["ip", "netns", "add", ns])
        _ns(ns, "ip", "link", "set", "lo", "up")
    _run(["ip", "-n", c, "link", "add", cv, "type", "veth", "peer", "name", tv, "netns", t])
    for ns in (c, t):
        _sysctl(
            ns,
            {
                "net.ipv6.conf.all.accept_ra": "0",
                "net.ipv6.conf.default.accept_ra": "0",
                "net.ipv6.conf.all.accept_dad": "0",
                "net.ipv6.conf.default.accept_dad": "0",
            },
        )
    _sysctl(
        t,
        {
            # Every SYN to a reject port must get its ICMP error: no rate limit in this namespace.
            "net.ipv4.icmp_ratelimit": "0",
            "net.ipv4.icmp_ratemask": "0",
            "net.ipv4.icmp_msgs_per_sec": "100000000",
            "net.ipv4.icmp_msgs_burst": "100000000",
            "net.ipv6.icmp.ratelimit": "0",
            "net.ipv6.icmp.ratemask": "127",
            "net.core.somaxconn": "65535",
            "net.ipv4.tcp_max_syn_backlog": "65535",
            "net.ipv6.ip_nonlocal_bind": "1",
        },
    )
    _ns(c, "ip", "addr", "add", f"{V4_LINK_CLIENT}/{V4_LINK_PREFIX}", "dev", cv)
    _ns(c, "ip", "addr", "add", f"{V6_LINK_CLIENT}/{V6_LINK_PREFIX}", "dev", cv, "nodad")
    _ns(t, "ip", "addr", "add", f"{V4_LINK_TARGETS}/{V4_LINK_PREFIX}", "dev", tv)
    _ns(t, "ip", "addr", "add", f"{V6_LINK_TARGETS}/{V6_LINK_PREFIX}", "dev", tv, "nodad")
    for ns, dev in ((c, cv), (t, tv)):
        _ns(ns, "ip", "link", "set", dev, "up")
    # Static neighbours: no ARP or ND at all, so the first burst of a scan is not held (and
    # mostly dropped) in the neighbour queue while the gateway's address resolves.
    macs = {
        ns: json.loads(_ns(ns, "ip", "-j", "link", "show", "dev", dev))[0]["address"]
        for ns, dev in ((c, cv), (t, tv))
    }
    for ns, dev, peer_ns, v4, v6 in (
        (c, cv, t, V4_LINK_TARGETS, V6_LINK_TARGETS),
        (t, tv, c, V4_LINK_CLIENT, V6_LINK_CLIENT),
    ):
        for addr in (v4, v6):
            _ns(
                ns,
                "ip",
                "neigh",
                "replace",
                addr,
                "lladdr",
                macs[peer_ns],
                "dev",
                dev,
                "nud",
                "permanent",
            )
    _ns(c, "ip", "route", "add", V4_LAB_NET, "via", V4_LINK_TARGETS, "dev", cv)
    _ns(c, "ip", "-6", "route", "add", V6_LAB_NET, "via", V6_LINK_TARGETS, "dev", cv)
    for block in plan.local_blocks(4):
        _ns(t, "ip", "route", "add", "local", block, "dev", "lo")
    for block in plan.local_blocks(6):
        _ns(t, "ip", "-6", "route", "add", "local", block, "dev", "lo")
    _ns(t, "nft", "-f", "-", stdin=targets_ruleset(plan))
    if config.syn_limit:
        for tool in ("iptables", "ip6tables"):
            _ns(t, tool, "-A", "INPUT", *syn_policer(config))
    _ns(c, "nft", "-f", "-", stdin=client_ruleset(config))

    probes = [V4_DOWN, V6_DOWN, V4_LINK_TARGETS, V6_LINK_TARGETS]
    probes += list(plan.hosts4[:1] + plan.hosts4[-1:] + plan.hosts6[:1] + plan.hosts6[-1:])
    _verify_routes(config, probes)

    processes = []
    listener_config = directory / "listener.json"
    listener_config.write_text(
        json.dumps(
            {
                "binds": plan.listeners(),
                "backlog": config.backlog,
                "ready": str(directory / "listener.ready"),
            }
        )
    )
    pid = _spawn(
        t,
        "listener.py",
        [str(listener_config)],
        directory / "listener.ready",
        directory / "listener.log",
    )
    processes.append({"pid": pid, "marker": str(HERE / "listener.py"), "netns": t})

    if config.latency_ms:
        marker = str(HERE / "delay.py")
        pid = _spawn(
            c,
            "delay.py",
            [str(QUEUE_NUM), str(config.latency_ms), str(directory / "delay.ready")],
            directory / "delay.ready",
            directory / "delay.log",
        )
        processes.append({"pid": pid, "marker": marker, "netns": c})
        for tool in ("iptables", "ip6tables"):
            _ns(
                c,
                tool,
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-i",
                cv,
                "-j",
                "NFQUEUE",
                "--queue-num",
                str(QUEUE_NUM),
                "--queue-bypass",
            )

    truth_path = directory / "ground_truth.json"
    truth_path.write_text(json.dumps(ground_truth(plan), indent=1))
    return processes


def up(config: LabConfig | None = None) -> tuple[Path, bool]:
    """Build the lab (or keep the one that runs with the same config).

    Returns the ground-truth path and whether this call built it (False: it was already up).
    """
    config = config or LabConfig()
    check_prerequisites(config)
    current = status(config.prefix)
    directory = state_dir(config.prefix)
    if current["up"] and current["state"]["config"] == config.to_dict():
        return directory / "ground_truth.json", False
    down(config.prefix)
    directory.mkdir(parents=True, exist_ok=True)
    processes: list[dict[str, Any]] = []
    try:
        processes = _build(config, directory)
    except BaseException:
        (directory / "state.json").write_text(
            json.dumps({"config": config.to_dict(), "processes": processes})
        )
        down(config.prefix)
        raise
    (directory / "state.json").write_text(
        json.dumps(
            {
                "config": config.to_dict(),
                "processes": processes,
                "ground_truth": str(directory / "ground_truth.json"),
                "started": time.time(),
            },
            indent=1,
        )
    )
    return directory / "ground_truth.json", True


_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def entered_netns(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside namespace ``name``; sockets made there stay
    there. Child processes forked meanwhile are born in it too."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise LabError(f"setns into {name} failed: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise LabError(f"setns back out of {name} failed: {os.strerror(err)}")
    finally:
        os.close(own)
        os.close(target)


@dataclass(frozen=True)
class Lab:
    """A running lab: its ground truth and how to reach it."""

    config: LabConfig
    truth: dict[str, Any]
    truth_path: Path

    @property
    def client_ns(self) -> str:
        """The namespace to run the scanner in."""
        return self.config.client_ns

    @property
    def netns_exec(self) -> list[str]:
        """argv prefix that runs a command in the client namespace."""
        return ["ip", "netns", "exec", self.config.client_ns]

    @property
    def hosts4(self) -> list[str]:
        return list(self.truth["up_hosts"]["ipv4"])

    @property
    def hosts6(self) -> list[str]:
        return list(self.truth["up_hosts"]["ipv6"])

    @property
    def down4(self) -> list[str]:
        return list(self.truth["down_hosts"]["ipv4"])

    @property
    def down6(self) -> list[str]:
        return list(self.truth["down_hosts"]["ipv6"])

    @property
    def special_ports(self) -> list[int]:
        """Every port that is not closed on some up host."""
        return list(self.truth["special_ports"])

    def expected(self, address: str, port: int) -> tuple[str, str]:
        """(state, reason) the lab promises for ``address:port``."""
        host = self.truth["hosts"][address]
        entry = host["ports"].get(str(port), host["default"])
        return entry["state"], entry["reason"]

    def expected_ports(self, address: str, ports: list[int]) -> dict[int, tuple[str, str]]:
        return {p: self.expected(address, p) for p in ports}

    def entered(self) -> contextlib.AbstractContextManager[None]:
        """Context manager: this thread's new sockets are made in the client namespace."""
        return entered_netns(self.config.client_ns)

    @classmethod
    def load(cls, config: LabConfig, truth_path: Path) -> Lab:
        return cls(config=config, truth=json.loads(truth_path.read_text()), truth_path=truth_path)
