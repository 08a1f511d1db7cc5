"""The lab's plan as pure data: addresses, the port mix of every host, the ground truth and the
nftables rulesets. Nothing here touches the system, so it can be unit-tested anywhere.

Every up host ``i`` (0-based, IPv4 and IPv6 alike) has:

====================  ==========================================  ==============================
state / reason        ports                                       made by
====================  ==========================================  ==============================
open / syn-ack        22, 80, 443 (every host)                    wildcard listeners
open / syn-ack        ``OPEN_ROTATION[i % 8]`` and ``20000 + i``  listeners bound to the host
filtered/no-response  445 and ``DROP_ROTATION[i % 4]``            nftables ``drop``
filtered/admin-proh.  113 and ``ADMIN_ROTATION[i % 2]``           ``reject ... admin-prohibited``
filtered/host-unreach 5060 and ``UNREACH_ROTATION[i % 2]``        ``reject ... host-unreachable``
                                                                  (IPv6: ``addr-unreachable``)
closed / conn-refused every other port                            the kernel's RST
====================  ==========================================  ==============================

A down host answers nothing at all (nftables drops every packet to it, ping included).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ADMIN",
    "CLOSED",
    "DROP",
    "OPEN",
    "UNREACH",
    "LabConfig",
    "Plan",
    "Verdict",
    "ground_truth",
    "host_ports",
    "make_plan",
    "open_block",
    "syn_policer",
]

OPEN = ("open", "syn-ack")
CLOSED = ("closed", "conn-refused")
DROP = ("filtered", "no-response")
ADMIN = ("filtered", "admin-prohibited")
UNREACH = ("filtered", "host-unreach")
Verdict = tuple[str, str]

OPEN_EVERYWHERE = (22, 80, 443)
OPEN_ROTATION = (21, 25, 53, 110, 143, 3306, 5432, 8080)
UNIQUE_OPEN_BASE = 20000
OPEN_BLOCK_BASE = 30000  # ``LabConfig.open_block`` ports from here are open on every host
DROP_EVERYWHERE = (445,)
DROP_ROTATION = (23, 139, 3389, 5900)
ADMIN_EVERYWHERE = (113,)
ADMIN_ROTATION = (135, 1723)
UNREACH_EVERYWHERE = (5060,)
UNREACH_ROTATION = (1433, 8888)

MAX_HOSTS = 4096
V4_LINK_CLIENT = "198.18.0.1"
V4_LINK_TARGETS = "198.18.0.2"
V4_LINK_PREFIX = 30
V4_FIRST_HOST = ipaddress.IPv4Address("198.18.1.0")
V4_DOWN = "198.19.0.1"
V4_LAB_NET = "198.18.0.0/15"
V6_LINK_CLIENT = "fd00:1ab::1"
V6_LINK_TARGETS = "fd00:1ab::2"
V6_LINK_PREFIX = 64
V6_FIRST_HOST = ipaddress.IPv6Address("fd00:1ab:0:1::1")
V6_DOWN = "fd00:1ab:0:2::1"
V6_LAB_NET = "fd00:1ab::/48"


@dataclass(frozen=True, slots=True, kw_only=True)
class LabConfig:
    """How to build the lab. Equal configs give identical labs (``up`` is then a no-op)."""

    hosts: int = 256
    """Up IPv4 hosts, from 198.18.1.0 on (256 is exactly 198.18.1.0/24)."""
    hosts6: int = 16
    """Up IPv6 hosts, from fd00:1ab:0:1::1 on."""
    latency_ms: float = 20.0
    """Added round-trip time on the client's path to every target; 0 for none."""
    loss: float = 0.0
    """Percent of TCP and ICMP packets dropped at random, in each direction."""
    backlog: int = 1024
    """Listen backlog of every listening socket in the targets namespace."""
    open_block: int = 0
    """Ports ``OPEN_BLOCK_BASE`` on, this many, open on every host too: one wildcard listening
    socket each, which every host's connects share (with ``backlog``, a small one overflows)."""
    syn_limit: int = 0
    """SYNs per second each target address lets in (iptables ``hashlimit`` per destination,
    burst 5), the rest dropped; 0 for no policer."""
    prefix: str = "npl"
    """Names: namespaces ``<prefix>-client``/``<prefix>-targets``, veths ``<prefix>-c``/``-t``."""

    def __post_init__(self) -> None:
        for name, value in (("hosts", self.hosts), ("hosts6", self.hosts6)):
            if not 0 <= value <= MAX_HOSTS:
                raise ValueError(f"invalid {name} {value!r}: use 0 to {MAX_HOSTS}, e.g. 256")
        if not 0 <= self.latency_ms <= 5000:
            raise ValueError(f"invalid latency_ms {self.latency_ms!r}: use 0 to 5000, e.g. 20")
        if not 0 <= self.loss < 100:
            raise ValueError(f"invalid loss {self.loss!r}: use a percent from 0 to 99, e.g. 1")
        if not 1 <= self.backlog <= 65535:
            raise ValueError(f"invalid backlog {self.backlog!r}: use 1 to 65535, e.g. 1024")
        if not 0 <= self.open_block <= 1000:
            raise ValueError(f"invalid open_block {self.open_block!r}: use 0 to 1000, e.g. 100")
        if not 0 <= self.syn_limit <= 100000:
            raise ValueError(f"invalid syn_limit {self.syn_limit!r}: use 0 to 100000, e.g. 20")
        if not (self.prefix.isascii() and self.prefix.isalnum() and len(self.prefix) <= 8):
            raise ValueError(
                f"invalid prefix {self.prefix!r}: use up to 8 letters/digits, e.g. npl"
            )

    @property
    def client_ns(self) -> str:
        return f"{self.prefix}-client"

    @property
    def targets_ns(self) -> str:
        return f"{self.prefix}-targets"

    @property
    def client_veth(self) -> str:
        return f"{self.prefix}-c"

    @property
    def targets_veth(self) -> str:
        return f"{self.prefix}-t"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_block(config: LabConfig) -> tuple[int, ...]:
    """The ports of ``config.open_block``."""
    return tuple(range(OPEN_BLOCK_BASE, OPEN_BLOCK_BASE + config.open_block))


def host_ports(index: int, block: tuple[int, ...] = ()) -> dict[int, Verdict]:
    """The ports of up host ``index`` that are not closed, with their verdicts (``block``:
    the ports of ``open_block``)."""
    ports: dict[int, Verdict] = {}
    for group, verdict in (
        ((*OPEN_EVERYWHERE, OPEN_ROTATION[index % 8], UNIQUE_OPEN_BASE + index, *block), OPEN),
        ((*DROP_EVERYWHERE, DROP_ROTATION[index % 4]), DROP),
        ((*ADMIN_EVERYWHERE, ADMIN_ROTATION[index % 2]), ADMIN),
        ((*UNREACH_EVERYWHERE, UNREACH_ROTATION[index % 2]), UNREACH),
    ):
        for port in group:
            ports[port] = verdict
    return ports


@dataclass(frozen=True, slots=True)
class Plan:
    """Addresses and port verdicts derived from a ``LabConfig``."""

    config: LabConfig
    hosts4: tuple[str, ...]
    hosts6: tuple[str, ...]
    down4: tuple[str, ...] = (V4_DOWN,)
    down6: tuple[str, ...] = (V6_DOWN,)
    ports: dict[str, dict[int, Verdict]] = field(default_factory=dict)

    def local_blocks(self, version: int) -> list[str]:
        """CIDR blocks the targets namespace must answer for (hosts and down hosts)."""
        hosts = self.hosts4 + self.down4 if version == 4 else self.hosts6 + self.down6
        nets = [ipaddress.ip_network(a) for a in hosts]
        return [str(n) for n in ipaddress.collapse_addresses(nets)]  # type: ignore[arg-type]

    def listeners(self) -> list[tuple[str, int]]:
        """(bind address, port) of every listening socket: wildcards first, then per host."""
        everywhere = (*OPEN_EVERYWHERE, *open_block(self.config))
        binds = [("0.0.0.0", p) for p in everywhere]
        if self.hosts6:
            binds += [("::", p) for p in everywhere]
        for addr, ports in self.ports.items():
            binds += [(addr, p) for p, v in ports.items() if v == OPEN and p not in everywhere]
        return binds

    def with_verdict(self, verdict: Verdict, version: int) -> list[tuple[str, int]]:
        """(address, port) pairs of one IP version that have ``verdict``, everywhere ones too."""
        return [
            (addr, port)
            for addr, ports in self.ports.items()
            if ipaddress.ip_address(addr).version == version
            for port, v in ports.items()
            if v == verdict
        ]


def make_plan(config: LabConfig) -> Plan:
    """Work out every address and port verdict of the lab ``config`` describes."""
    hosts4 = tuple(str(V4_FIRST_HOST + i) for i in range(config.hosts))
    hosts6 = tuple(str(V6_FIRST_HOST + i) for i in range(config.hosts6))
    block = open_block(config)
    ports = {addr: host_ports(i, block) for i, addr in enumerate(hosts4)}
    ports.update({addr: host_ports(i, block) for i, addr in enumerate(hosts6)})
    return Plan(config=config, hosts4=hosts4, hosts6=hosts6, ports=ports)


def ground_truth(plan: Plan) -> dict[str, Any]:
    """The JSON-ready ground truth. Ports not listed under a host take its ``default``."""
    hosts: dict[str, Any] = {}
    for addr in plan.hosts4 + plan.hosts6:
        hosts[addr] = {
            "family": "ipv4" if ":" not in addr else "ipv6",
            "status": "up",
            "default": {"state": CLOSED[0], "reason": CLOSED[1]},
            "ports": {
                str(p): {"state": v[0], "reason": v[1]} for p, v in sorted(plan.ports[addr].items())
            },
        }
    for addr in plan.down4 + plan.down6:
        hosts[addr] = {
            "family": "ipv4" if ":" not in addr else "ipv6",
            "status": "no-response",
            "default": {"state": DROP[0], "reason": DROP[1]},
            "ports": {},
        }
    special = sorted({p for ports in plan.ports.values() for p in ports})
    return {
        "version": 1,
        "config": plan.config.to_dict(),
        "client_netns": plan.config.client_ns,
        "targets_netns": plan.config.targets_ns,
        "up_hosts": {"ipv4": list(plan.hosts4), "ipv6": list(plan.hosts6)},
        "down_hosts": {"ipv4": list(plan.down4), "ipv6": list(plan.down6)},
        "special_ports": special,
        "hosts": hosts,
    }


def _elements(pairs: list[tuple[str, int]]) -> str:
    return ", ".join(f"{a} . {p}" for a, p in pairs)


def targets_ruleset(plan: Plan) -> str:
    """nftables ruleset of the targets namespace: drops, rejects and the down hosts."""
    table = f"{plan.config.prefix}_lab"
    sets = []
    rules = []
    for version, family, kind in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
        down = plan.down4 if version == 4 else plan.down6
        sets.append(f"set down{version} {{ type {kind}; elements = {{ {', '.join(down)} }} }}")
        rules.append(f"{family} daddr @down{version} drop")
        for name, verdict in (("drop", DROP), ("adm", ADMIN), ("unr", UNREACH)):
            pairs = plan.with_verdict(verdict, version)
            if not pairs:
                continue
            sets.append(
                f"set {name}{version} {{ type {kind} . inet_service; "
                f"elements = {{ {_elements(pairs)} }} }}"
            )
            action = {
                (DROP, 4): "drop",
                (DROP, 6): "drop",
                (ADMIN, 4): "reject with icmp type admin-prohibited",
                (ADMIN, 6): "reject with icmpv6 type admin-prohibited",
                (UNREACH, 4): "reject with icmp type host-unreachable",
                (UNREACH, 6): "reject with icmpv6 type addr-unreachable",
            }[verdict, version]
            rules.append(f"{family} daddr . tcp dport @{name}{version} {action}")
    body = "\n".join(f"  {line}" for line in sets)
    chain = "\n".join(f"    {line}" for line in rules)
    return (
        f"table inet {table} {{\n{body}\n"
        f"  chain input {{\n    type filter hook input priority 0; policy accept;\n{chain}\n  }}\n"
        "}\n"
    )


def syn_policer(config: LabConfig) -> list[str]:
    """iptables rule (after ``-A INPUT``) of the targets namespace that drops the SYNs beyond
    ``config.syn_limit`` per second to each address."""
    return [
        *("-p", "tcp", "--syn", "-m", "hashlimit", "--hashlimit-name", f"{config.prefix}syn"),
        *("--hashlimit-mode", "dstip", "--hashlimit-above", f"{config.syn_limit}/sec"),
        *("--hashlimit-burst", "5", "-j", "DROP"),
    ]


def client_ruleset(config: LabConfig) -> str:
    """nftables ruleset of the client namespace: random loss in each direction, if any."""
    table = f"{config.prefix}_lab"
    if not config.loss:
        return f"table inet {table} {{\n}}\n"
    # numgen gives 0..9999 so that fractional percents work; ND and ARP are never dropped.
    threshold = round(config.loss * 100)
    lossy = "meta l4proto { tcp, icmp }"
    lossy6 = "icmpv6 type { destination-unreachable, echo-request, echo-reply }"
    drop = f"numgen random mod 10000 < {threshold} drop"
    chains = []
    for name, hook, prio in (("out", "output", 0), ("in", "prerouting", -400)):
        chains.append(
            f"  chain {name} {{\n    type filter hook {hook} priority {prio}; policy accept;\n"
            f"    {lossy} {drop}\n    {lossy6} {drop}\n  }}"
        )
    return f"table inet {table} {{\n" + "\n".join(chains) + "\n}\n"
