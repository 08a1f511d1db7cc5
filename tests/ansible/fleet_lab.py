"""A fleet lab on one machine: network segments as namespaces, scanners linked to one each.

Each segment is a target namespace with a bridge holding the segment's addresses (198.18.0.x,
only inside the namespaces) and real listeners (``tests/lab/listener.py``); each scanner is a
namespace of its own with a veth into its segment's bridge, reached by Ansible through a local
connection whose interpreter is a wrapper script running Python in that namespace. Segments
may use the same addresses with other listeners (as VRFs do).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml
from ansible_support import LISTENER, REPO

PREFIX = "198.18.0."


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Segment:
    """A target namespace: its addresses, the ports open on each and those dropped."""

    def __init__(self, lab: FleetLab, name: str, opened: dict[int, list[int]],
                 dropped: tuple[int, ...] = ()) -> None:
        self.lab, self.name, self.opened, self.dropped = lab, name, opened, dropped
        self.netns = f"{lab.tag}-{name}"
        self.scanners: list[str] = []
        lab.namespaces.append(self.netns)
        ip("netns", "add", self.netns)
        ip("-n", self.netns, "link", "set", "lo", "up")
        ip("-n", self.netns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.netns, "link", "set", "br0", "up")
        for index, host in enumerate(sorted(opened)):
            mask = "24" if index == 0 else "32"
            ip("-n", self.netns, "addr", "add", f"{PREFIX}{host}/{mask}", "dev", "br0")
        if dropped:
            ports = ", ".join(str(p) for p in dropped)
            rules = ("table inet lab { chain input { type filter hook input priority 0; "
                     f"tcp dport {{ {ports} }} drop; }}; }}")
            subprocess.run(["ip", "netns", "exec", self.netns, "nft", "-f", "-"], input=rules,
                           check=True, capture_output=True, text=True, timeout=30)
        binds = [(f"{PREFIX}{h}", p) for h, ports in opened.items() for p in ports]
        config = lab.workdir / f"{name}-listener.json"
        ready = lab.workdir / f"{name}-listener.ready"
        config.write_text(json.dumps({"binds": binds, "backlog": 128, "ready": str(ready)}))
        out = (lab.workdir / f"{name}-listener.out").open("w")
        lab.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, str(LISTENER), str(config)],
            stdout=out))
        out.close()
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert lab.procs[-1].poll() is None, "the listener process failed"
            assert time.monotonic() < deadline, "the listener process did not start"
            time.sleep(0.02)

    def truth(self, port: int, host: int) -> str:
        if port in self.dropped:  # a listener behind the drop is not seen
            return "filtered"
        return "open" if port in self.opened[host] else "closed"


class FleetLab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tag = f"pf{uuid.uuid4().hex[:6]}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.scanners: dict[str, dict[str, object]] = {}

    def scanner(self, segment: Segment, name: str, vantage: str) -> Path:
        """A scanner namespace linked to ``segment`` only; returns its interpreter wrapper."""
        index = len(segment.scanners) + 1
        segment.scanners.append(name)
        netns = f"{self.tag}-{name}"
        self.namespaces.append(netns)
        ip("netns", "add", netns)
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "link", "add", "v0", "type", "veth", "peer", "name", f"p{index}",
           "netns", segment.netns)
        ip("-n", segment.netns, "link", "set", f"p{index}", "master", "br0", "up")
        ip("-n", netns, "addr", "add", f"{PREFIX}{100 + index}/24", "dev", "v0")
        ip("-n", netns, "link", "set", "v0", "up")
        wrapper = self.workdir / f"python-{name}"
        self.wrap(wrapper, netns)
        self.scanners[name] = {"ansible_connection": "local", "portscan_vantage": vantage,
                               "ansible_python_interpreter": str(wrapper)}
        return wrapper

    def wrap(self, wrapper: Path, netns: str, kill_after: float | None = None) -> None:
        """The interpreter of a scanner: this Python in its namespace (killed after
        ``kill_after`` seconds, when given)."""
        kill = f"timeout -s KILL {kill_after} " if kill_after else ""
        wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {kill}ip netns exec {netns} "
                           f'{sys.executable} "$@"\n')
        wrapper.chmod(0o755)

    def unreachable(self, name: str, vantage: str) -> None:
        """A scanner Ansible cannot reach: ssh to a loopback port nothing listens on."""
        self.scanners[name] = {
            "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9,
            "ansible_user": "nobody", "portscan_vantage": vantage,
            "ansible_ssh_common_args": "-F /dev/null -o ConnectTimeout=5 -o BatchMode=yes"}

    def inventory(self, targets: dict[str, int], path: Path, reverse: bool = False,
                  extra: dict[str, dict[str, object]] | None = None) -> Path:
        """The inventory of the scanners and ``targets`` (name: last octet), each target with
        the ``extra`` variables given for it."""
        scanners = list(self.scanners.items())
        hosts = [(n, {"ansible_host": f"{PREFIX}{h}", **(extra or {}).get(n, {})})
                 for n, h in targets.items()]
        if reverse:
            scanners.reverse()
            hosts.reverse()
        data = {"all": {"children": {
            "portscan_scanners": {"hosts": dict(scanners)},
            "portscan_targets": {"hosts": dict(hosts)}}}}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def pids(self, name: str) -> list[str]:
        found = subprocess.run(["ip", "netns", "pids", f"{self.tag}-{name}"],
                               capture_output=True, text=True, timeout=30)
        return found.stdout.split()

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)
        for netns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
