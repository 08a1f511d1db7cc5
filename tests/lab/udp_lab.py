"""The UDP lab: real UDP services, closed and dropped ports, each target host in its own network
namespace, so each has its own kernel ICMP rate limit (left at the default: one error a second
per destination, a burst of six), as separate machines have. The TCP lab's targets share one
namespace, so one ICMP bucket: right for TCP, not for UDP.

```
<prefix>-uc (the scanner runs here)                   <prefix>-u<i>, one per host
198.18.160.254/24 on bridge ub0 <-- veth per host -->  198.18.160.<i+1>/24, no other route
```

Host ``i`` (0-based) has:

==============================  =========================================  =====================
state / reason                  ports                                      made by
==============================  =========================================  =====================
open / udp-response             53 (i % 3 == 0), 161 (i % 3 == 1),         dnsmasq (no upstream,
                                123 (i % 3 == 2)                           ``--local=/#/``),
                                                                           snmpd (community
                                                                           public), chronyd
                                                                           (``-x``, local
                                                                           stratum 10)
open|filtered / no-response     137, 138 and ``(500, 1900)[i % 2]``        nftables ``drop``
filtered / admin-prohibited     5060                                       ``reject with icmp
                                                                           type admin-prohibited``
closed / port-unreach           every other port                           the kernel's ICMP
==============================  =========================================  =====================

Every daemon binds the host's address only, inside a namespace with no route out. The ground
truth is written as the TCP lab's (``ground_truth.json``, same shape) under
``/run/nornir-portscan-lab/<prefix>-udp/``. Run as root: ``python -m tests.lab.udp_lab up
--hosts 8 --prefix npu`` / ``down --prefix npu``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.lab import (
    STATE_ROOT,
    LabError,
    LabUnavailableError,
    _kill,
    _namespaces,
    _ns,
    _run,
)

NETWORK = "198.18.160"
CLIENT_ADDRESS = f"{NETWORK}.254"
MAX_HOSTS = 200
SERVICES = (("dnsmasq", 53), ("snmpd", 161), ("chronyd", 123))  # host i runs SERVICES[i % 3]
PACKAGES = {"dnsmasq": "dnsmasq-base", "snmpd": "snmpd", "chronyd": "chrony"}
DROPPED = (137, 138)
DROP_ROTATION = (500, 1900)
ADMIN = 5060
OPEN = {"state": "open", "reason": "udp-response"}
OPEN_FILTERED = {"state": "open|filtered", "reason": "no-response"}
ADMIN_PROHIBITED = {"state": "filtered", "reason": "admin-prohibited"}
CLOSED = {"state": "closed", "reason": "port-unreach"}
READY_TIMEOUT = 15.0


def host_address(index: int) -> str:
    return f"{NETWORK}.{index + 1}"


def host_ports(index: int) -> dict[int, dict[str, str]]:
    """The ports of host ``index`` that are not closed."""
    ports = {SERVICES[index % 3][1]: OPEN}
    for port in (*DROPPED, DROP_ROTATION[index % 2]):
        ports[port] = OPEN_FILTERED
    ports[ADMIN] = ADMIN_PROHIBITED
    return ports


def ground_truth(prefix: str, hosts: int) -> dict[str, Any]:
    """The lab's truth, in the TCP lab's shape (``tests/lab/README.md``)."""
    addresses = [host_address(i) for i in range(hosts)]
    special = sorted({port for i in range(hosts) for port in host_ports(i)})
    return {
        "version": 1,
        "protocol": "udp",
        "config": {"prefix": prefix, "hosts": hosts, "icmp_ratelimit_ms": 1000},
        "client_netns": f"{prefix}-uc",
        "targets_netns": [f"{prefix}-u{i}" for i in range(hosts)],
        "up_hosts": {"ipv4": addresses, "ipv6": []},
        "down_hosts": {"ipv4": [], "ipv6": []},
        "special_ports": special,
        "hosts": {
            host_address(i): {
                "family": "ipv4",
                "status": "up",
                "default": CLOSED,
                "ports": {str(port): verdict for port, verdict in sorted(host_ports(i).items())},
            }
            for i in range(hosts)
        },
    }


def _ruleset(index: int) -> str:
    dropped = ", ".join(str(p) for p in (*DROPPED, DROP_ROTATION[index % 2]))
    return (
        "table inet udplab {\n"
        "  chain input {\n"
        "    type filter hook input priority 0;\n"
        f"    udp dport {{ {dropped} }} drop\n"
        f"    udp dport {ADMIN} reject with icmp type admin-prohibited\n"
        "  }\n"
        "}\n"
    )


def _service_argv(name: str, address: str, directory: Path) -> list[str]:
    if name == "dnsmasq":
        return [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",  # no upstream servers: nothing is forwarded
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            f"--listen-address={address}",
            "--except-interface=lo",
            "--local=/#/",  # every name is local: answered here or NXDOMAIN, never forwarded
            f"--address=/probe.nornir-portscan.test/{address}",
            f"--pid-file={directory / 'dnsmasq.pid'}",
            "--user=root",
            "--group=root",
            f"--log-facility={directory / 'dnsmasq.log'}",
        ]
    if name == "snmpd":
        conf = directory / "snmpd.conf"
        conf.write_text(f"agentaddress udp:{address}:161\nrocommunity public {NETWORK}.0/24\n")
        return ["snmpd", "-f", "-C", "-c", str(conf), "-Lf", str(directory / "snmpd.log"),
                "-p", str(directory / "snmpd.pid"), "-u", "root", "-g", "root"]  # fmt: skip
    conf = directory / "chrony.conf"
    conf.write_text(
        f"bindaddress {address}\nallow {NETWORK}.0/24\nlocal stratum 10\ncmdport 0\n"
        f"pidfile {directory / 'chronyd.pid'}\n"
    )
    return ["chronyd", "-d", "-x", "-f", str(conf), "-u", "root"]  # -x: never sets the clock


def _bound(ns: str, address: str, port: int) -> bool:
    out = _ns(ns, "ss", "-Hunl", check=False)
    return f"{address}:{port} " in out


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabUnavailableError("the UDP lab needs root (network namespaces, nftables)")
    missing = [tool for tool in ("ip", "nft", "ss") if shutil.which(tool) is None]
    missing += [PACKAGES[name] for name, _ in SERVICES if shutil.which(name) is None]
    if missing:
        raise LabUnavailableError(f"the UDP lab needs Debian packages: {', '.join(missing)}")


def state_dir(prefix: str) -> Path:
    return STATE_ROOT / f"{prefix}-udp"


def down(prefix: str) -> None:
    """Stop what ``up`` started (by pid) and delete its namespaces; safe to repeat."""
    directory = state_dir(prefix)
    state_file = directory / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        for pid, marker in state.get("pids", []):
            with contextlib.suppress(OSError):
                _kill(pid, marker)
    for ns in sorted(_namespaces()):
        if ns == f"{prefix}-uc" or (
            ns.startswith(f"{prefix}-u") and ns[len(prefix) + 2 :].isdigit()
        ):
            _run(["ip", "netns", "del", ns], check=False)
    state_file.unlink(missing_ok=True)


def up(prefix: str, hosts: int) -> Path:
    """Build the lab (after ``down``); return its ground-truth path."""
    if not 1 <= hosts <= MAX_HOSTS:
        raise LabError(f"--hosts {hosts}: use 1 to {MAX_HOSTS}")
    check_prerequisites()
    down(prefix)
    directory = state_dir(prefix)
    directory.mkdir(parents=True, exist_ok=True)
    client = f"{prefix}-uc"
    pids: list[tuple[int, str]] = []
    state = {"prefix": prefix, "hosts": hosts, "pids": pids}
    try:
        _run(["ip", "netns", "add", client])
        _ns(client, "ip", "link", "set", "lo", "up")
        _ns(client, "ip", "link", "add", "ub0", "type", "bridge")
        _ns(client, "ip", "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", "ub0")
        _ns(client, "ip", "link", "set", "ub0", "up")
        for i in range(hosts):
            ns, address = f"{prefix}-u{i}", host_address(i)
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", f"{prefix}v{i}", "netns", client, "type", "veth",
                  "peer", "name", "eth0", "netns", ns])  # fmt: skip
            _ns(client, "ip", "link", "set", f"{prefix}v{i}", "master", "ub0", "up")
            _ns(ns, "ip", "link", "set", "lo", "up")
            _ns(ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            _ns(ns, "ip", "link", "set", "eth0", "up")
            _ns(ns, "nft", "-f", "-", stdin=_ruleset(i))
            name, port = SERVICES[i % 3]
            host_dir = directory / f"u{i}"
            host_dir.mkdir(exist_ok=True)
            log = (host_dir / f"{name}.out").open("ab")
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *_service_argv(name, address, host_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, "SNMP_PERSISTENT_DIR": str(host_dir / "snmp")},
            )
            log.close()
            pids.append((proc.pid, name))
            (directory / "state.json").write_text(json.dumps(state))
        deadline = time.monotonic() + READY_TIMEOUT
        for i in range(hosts):
            name, port = SERVICES[i % 3]
            while not _bound(f"{prefix}-u{i}", host_address(i), port):
                if time.monotonic() > deadline:
                    raise LabError(f"{name} in {prefix}-u{i} did not bind port {port}")
                time.sleep(0.05)
        limit = _ns(f"{prefix}-u0", "sysctl", "-n", "net.ipv4.icmp_ratelimit").strip()
        if limit != "1000":
            raise LabError(f"net.ipv4.icmp_ratelimit is {limit} in the targets, not 1000")
    except BaseException:
        down(prefix)
        raise
    truth_path = directory / "ground_truth.json"
    truth_path.write_text(json.dumps(ground_truth(prefix, hosts), indent=1))
    return truth_path


@dataclass(frozen=True)
class UdpLab:
    client_ns: str
    hosts: list[str]
    truth: dict[str, Any]
    truth_path: Path

    def expected(self, address: str, port: int) -> tuple[str, str]:
        host = self.truth["hosts"][address]
        verdict = host["ports"].get(str(port), host["default"])
        return verdict["state"], verdict["reason"]


@contextlib.contextmanager
def running_udp_lab(prefix: str, hosts: int) -> Iterator[UdpLab]:
    """The lab, up for the block and down after it. Raises ``LabUnavailableError`` where it
    cannot run (the caller skips)."""
    truth_path = up(prefix, hosts)
    try:
        truth = json.loads(truth_path.read_text())
        yield UdpLab(f"{prefix}-uc", truth["up_hosts"]["ipv4"], truth, truth_path)
    finally:
        if not os.environ.get("NPL_KEEP"):
            down(prefix)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.udp_lab")
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--prefix", default="npu")
    args = parser.parse_args()
    if args.action == "up":
        print(up(args.prefix, args.hosts))
    else:
        down(args.prefix)


if __name__ == "__main__":
    main()
