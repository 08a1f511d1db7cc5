"""The plan: every (target, vantage, port) exactly once, stable under reordering, about 1/k of
the hosts moved by a k-th scanner, and a hash that changes only with what is scanned."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from nornir_portscan.errors import InputError
from nornir_portscan.fleet import (
    FleetTarget,
    Scanner,
    build_plan,
    plan_from_dict,
    plan_inputs,
    rendezvous,
)
from nornir_portscan.models import ScanOptions

VANTAGES = [None, "dc1", "dc2", "edge"]


def _inventory(rng: random.Random) -> tuple[list[Scanner], list[FleetTarget]]:
    vantages = rng.sample(VANTAGES, rng.randint(1, len(VANTAGES)))
    scanners = [Scanner(f"s{i}", rng.choice(vantages)) for i in range(rng.randint(1, 9))]
    used = sorted({s.vantage for s in scanners}, key=lambda v: v or "")
    targets = []
    for i in range(rng.randint(0, 40)):
        own = tuple(rng.sample(range(1, 200), rng.randint(1, 6))) if rng.random() < 0.3 else ()
        wanted = tuple(rng.sample(used, rng.randint(1, len(used)))) if rng.random() < 0.5 else ()
        address = None if rng.random() < 0.1 else f"127.0.{i // 250}.{i % 250 + 1}"
        targets.append(FleetTarget(f"host{i}", address, own, wanted))
    return scanners, targets


@pytest.mark.parametrize("seed", range(200))
def test_the_shards_cover_every_target_vantage_and_port_exactly_once(seed):
    rng = random.Random(seed)
    scanners, targets = _inventory(rng)
    ports = rng.sample(range(1, 100), rng.randint(1, 12))
    plan = build_plan(scanners, targets, ports, split_ports=rng.random() < 0.5)
    vantage_of = {s.name: s.vantage for s in scanners}
    every = {s.vantage for s in scanners}
    expected = Counter(
        (t.name, t.address, v, p)
        for t in targets
        for v in (set(t.vantages) or every)
        for p in (t.ports or ports)
    )
    got = Counter(
        (a.name, a.address, shard.vantage, p)
        for shard in plan.shards
        for a in shard.targets
        for p in a.ports
    )
    assert got == expected
    assert max(got.values(), default=1) == 1
    assert [s.scanner for s in plan.shards] == [s.name for s in plan.scanners]
    assert all(vantage_of[s.scanner] == s.vantage for s in plan.shards)


@pytest.mark.parametrize("seed", range(50))
def test_the_plan_is_the_same_for_a_reordered_inventory(seed):
    rng = random.Random(seed)
    scanners, targets = _inventory(rng)
    plan = build_plan(scanners, targets, "1-20,80", split_ports=True)
    rng.shuffle(scanners)
    rng.shuffle(targets)
    again = build_plan(scanners, targets, "80,1-20", split_ports=True)
    assert again == plan
    assert again.hash == plan.hash


def test_a_new_scanner_takes_about_one_kth_of_the_hosts_from_the_others():
    targets = [FleetTarget(f"h{i}", f"127.1.{i // 250}.{i % 250 + 1}") for i in range(3000)]
    for k in (2, 3, 5, 8):
        before = build_plan([Scanner(f"s{i}") for i in range(k - 1)], targets, "22")
        after = build_plan([Scanner(f"s{i}") for i in range(k)], targets, "22")
        owner = {a.key: s.scanner for s in before.shards for a in s.targets}
        moved = [(owner[a.key], s.scanner) for s in after.shards for a in s.targets
                 if owner[a.key] != s.scanner]  # fmt: skip
        assert {to for _, to in moved} <= {f"s{k - 1}"}  # only to the new one
        assert abs(len(moved) / len(targets) - 1 / k) < 0.03, (k, len(moved))


def test_hosts_spread_evenly():
    targets = [FleetTarget(f"h{i}") for i in range(4000)]
    plan = build_plan([Scanner(f"s{i}") for i in range(4)], targets, "22")
    sizes = [len(s.targets) for s in plan.shards]
    assert all(abs(size - 1000) < 100 for size in sizes), sizes


def test_a_vantage_of_few_hosts_splits_their_ports_only_when_asked():
    scanners = [Scanner("a", "dc1"), Scanner("b", "dc1"), Scanner("c", "dc1")]
    target = [FleetTarget("db", "127.0.0.1")]
    whole = build_plan(scanners, target, "1-300")
    assert sorted(len(s.targets) for s in whole.shards) == [0, 0, 1]
    split = build_plan(scanners, target, "1-300", split_ports=True)
    parts = [a.ports for s in split.shards for a in s.targets]
    assert len(parts) == 3
    assert sorted(p for part in parts for p in part) == list(range(1, 301))
    assert all(60 < len(part) < 140 for part in parts)
    assert split.hash != whole.hash


def test_each_target_is_scanned_from_its_vantages_only():
    scanners = [Scanner("in1", "inside"), Scanner("in2", "inside"), Scanner("out", "outside")]
    targets = [
        FleetTarget("web", "127.0.0.1"),
        FleetTarget("db", "127.0.0.2", vantages=("inside",)),
    ]
    plan = build_plan(scanners, targets, "22")
    seen = sorted((a.name, s.vantage) for s in plan.shards for a in s.targets)
    assert seen == [("db", "inside"), ("web", "inside"), ("web", "outside")]
    assert plan.shard("out").targets[0].name == "web"


@pytest.mark.parametrize(
    "change",
    [
        {"ports": "22,81"},
        {"options": ScanOptions(timeout=2.0)},
        {"targets": [FleetTarget("web", "127.0.0.1"), FleetTarget("db", "127.0.0.3")]},
        {"scanners": [Scanner("a"), Scanner("c")]},
        {"scanners": [Scanner("a"), Scanner("b", "dc2")]},
        {"split_ports": True},
    ],
)
def test_the_hash_changes_with_what_is_scanned(change):
    base = {
        "scanners": [Scanner("a"), Scanner("b")],
        "targets": [FleetTarget("web", "127.0.0.1"), FleetTarget("db", "127.0.0.2")],
        "ports": "22,80",
    }
    assert build_plan(**{**base, **change}).hash != build_plan(**base).hash


def test_the_hash_leaves_out_what_each_scanner_sizes_to_its_machine():
    base = {
        "scanners": [Scanner("a"), Scanner("b")],
        "targets": [FleetTarget("web", "127.0.0.1")],
        "ports": "22,80",
    }
    sized = ScanOptions(processes=16, concurrency=200)
    assert build_plan(**base, options=sized).hash == build_plan(**base).hash


def test_a_plan_is_remade_from_its_inputs_and_an_edit_is_found():
    plan = build_plan(
        [Scanner("a", "dc1"), Scanner("b")],
        [FleetTarget("web", "127.0.0.1", (443, 22), ("dc1",)), FleetTarget("x")],
        "22",
        options=ScanOptions(retries=2),
    )
    data = plan_inputs(plan)
    assert plan_from_dict(data) == plan
    data["ports"] = "22,23"
    with pytest.raises(InputError, match=r"^plan: its hash does not match"):
        plan_from_dict(data)
    with pytest.raises(InputError, match=r"^plan is not a scan plan \(KeyError"):
        plan_from_dict({"scanners": []})


@pytest.mark.parametrize(
    ("scanners", "targets", "message"),
    [
        ([], [], "no scanners: give at least one, e.g. Scanner('scan1', 'dc1')"),
        (
            [Scanner("a"), Scanner("a", "dc1")],
            [],
            "scanner 'a' is listed twice: give each a unique name",
        ),
        (
            [Scanner("a")],
            [FleetTarget("web", "127.0.0.1"), FleetTarget("web", "127.0.0.1")],
            "target 'web' (127.0.0.1) is listed twice: list each host once, with all its vantages",
        ),
        (
            [Scanner("a", "dc1")],
            [FleetTarget("web", vantages=("dc9",))],
            "target 'web' is scanned from vantage 'dc9', which no scanner is in: use one of 'dc1'",
        ),
        ([Scanner("a")], ["web"], "invalid target 'web': give a FleetTarget, e.g. FleetTarget"),
    ],
)
def test_bad_inventories_get_one_line(scanners, targets, message):
    with pytest.raises(InputError) as caught:
        build_plan(scanners, targets, "22")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Scanner(""), "invalid scanner name '': give a name, e.g. 'scan1'"),
        (lambda: Scanner("a", ""), "invalid vantage '' of scanner 'a': give a label"),
        (lambda: FleetTarget(""), "invalid target name '': give a name, e.g. 'web1'"),
    ],
)
def test_bad_models_get_one_line(make, message):
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(")):
        make()


def test_rendezvous_is_deterministic_and_uses_every_candidate():
    assert rendezvous("127.0.0.1", ["0", "1", "2"]) == rendezvous("127.0.0.1", ["2", "0", "1"])
    owners = Counter(rendezvous(f"h{i}", ["0", "1", "2"]) for i in range(300))
    assert set(owners) == {"0", "1", "2"}


def test_one_plan_whether_a_number_is_written_1_or_1_0():
    one = build_plan([Scanner("a")], [FleetTarget("x")], "22", options=ScanOptions(timeout=1))
    other = build_plan([Scanner("a")], [FleetTarget("x")], "22", options=ScanOptions(timeout=1.0))
    assert one.hash == other.hash


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vantages": ["dc1"]}, "invalid vantages ['dc1'] of target 'x': give a tuple of labels"),
        ({"vantages": ("",)}, "invalid vantages ('',) of target 'x': give a tuple of labels"),
        ({"address": 5}, "invalid address 5 of target 'x': give a string"),
        ({"ports": (0,)}, "ports of target 'x': invalid port"),
    ],
)
def test_bad_targets_get_one_line(kwargs, message):
    with pytest.raises(InputError) as caught:
        build_plan([Scanner("a")], [FleetTarget("x", **kwargs)], "22")
    assert str(caught.value).startswith(message), str(caught.value)


def _addresses(count: int) -> list[FleetTarget]:
    names = (f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(count))
    return [FleetTarget(name, name) for name in names]


def test_at_scale_a_new_scanner_takes_one_kth_and_an_old_one_gives_only_its_own():
    """65,536 hosts: 64 -> 65 scanners moves 1/65 of the hosts, all to the new one; removing
    a scanner moves only its hosts; the plan of a shuffled inventory is the same."""
    targets = _addresses(65536)
    names = [f"scan{i:03}" for i in range(65)]
    before = build_plan([Scanner(n) for n in names[:64]], targets, "22")
    after = build_plan([Scanner(n) for n in names], targets, "22")
    owner = {a.key: s.scanner for s in before.shards for a in s.targets}
    moved = Counter(s.scanner for s in after.shards for a in s.targets if owner[a.key] != s.scanner)
    assert set(moved) == {"scan064"}
    assert abs(moved["scan064"] / len(targets) - 1 / 65) < 0.002, moved
    gone = build_plan([Scanner(n) for n in names[:64] if n != "scan007"], targets, "22")
    changed = {a.key for s in gone.shards for a in s.targets if owner[a.key] != s.scanner}
    assert changed == {a.key for a in before.shard("scan007").targets}
    shuffled = list(reversed(targets))
    random.Random(7).shuffle(shuffled)
    assert build_plan([Scanner(n) for n in reversed(names)], shuffled, "22") == after


def test_at_scale_every_shard_gets_its_share():
    plan = build_plan([Scanner(str(i)) for i in range(256)], _addresses(65536), "22")
    sizes = [len(s.targets) for s in plan.shards]
    assert sum(sizes) == 65536
    assert min(sizes) > 256 - 96, sizes  # 6 sigma
    assert max(sizes) < 256 + 96, sizes


def test_an_expanded_cidr_is_one_entry_of_the_plan_inputs_and_comes_back_whole():
    scanners = [Scanner("a", "dc1"), Scanner("b", "dc2")]
    targets = [
        *_addresses(1000),
        FleetTarget("10.0.9.1", "10.0.9.1", (443,)),  # its own ports: listed
        FleetTarget("web", "10.0.9.2"),  # a name: listed
        FleetTarget("10.0.9.3", "10.0.9.3", vantages=("dc1",)),  # not every vantage: listed
        FleetTarget("::1"),  # no address: resolved where scanned, listed
        FleetTarget("::2", "::2"),
        FleetTarget("10.0.9.4", "10.00.9.4"),  # not the address as str() writes it: listed
        FleetTarget("fe80::1%lo", "fe80::1%lo"),  # zones: listed, each keeps its own
        FleetTarget("fe80::2%lo", "fe80::2%lo"),
    ]
    plan = build_plan(scanners, targets, "22,80")
    data = plan_inputs(plan)
    assert data["targets"][:2] == [["10.0.0.0", 1000], ["::2", 1]]
    assert len(data["targets"]) == 9
    assert plan_from_dict(data) == plan
    assert plan_from_dict(json.loads(json.dumps(data))) == plan


@pytest.mark.parametrize(
    "entries",
    [
        [["10.0.0.0", 0]],
        [["10.0.0.0", True]],
        [["x", 3]],
        [["10.0.0.0"]],
        [["255.255.255.255", 2]],
        [["10.0.0.0", 2**24], ["11.0.0.0", 1]],  # 2**24 + 1 addresses from a few bytes
    ],
)
def test_an_edited_run_of_addresses_gets_one_line(entries):
    data = plan_inputs(build_plan([Scanner("a")], _addresses(3), "22"))
    data["targets"] = entries
    with pytest.raises(InputError, match=r"^plan is not a scan plan \(") as caught:
        plan_from_dict(data)
    assert "\n" not in str(caught.value)


def test_a_plan_assigned_by_another_version_is_refused():
    data = plan_inputs(build_plan([Scanner("a"), Scanner("b")], _addresses(3), "22"))
    assert data["assignment"] == "rendezvous/blake2b-mul64"
    data["assignment"] = "rendezvous/blake2b"
    del data["assignment"]  # an older version wrote no such key, and hashed without it
    data["hash"] = "0" * 64
    with pytest.raises(InputError, match=r"^plan: its hash does not match"):
        plan_from_dict(data)
