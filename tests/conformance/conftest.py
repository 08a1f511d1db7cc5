"""The conformance world: three loopback hosts with real listeners, the scenario files, a
baseline saved by the CLI, and one ``ansible-playbook`` run started in the background.

Hosts are named by their addresses (127.0.61.31-33), so every door names them alike. Ports are
picked at random below the ephemeral range, and every closed port is held bound (not
listening) on every host for the session, so nothing else can open it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conformance_doors import (
    PYTHON,
    REPO,
    Run,
    ansible_outcome,
    door_env,
    run_cli,
    run_nornir,
    run_nornir_inventory,
    run_python,
    start_playbook,
    write_nornir_inventory,
)
from conformance_scenarios import COMMON, NAMES, Scenario, World, scenarios
from support import Listeners

from tests.engine.udp_helpers import UdpServers

HOSTS = ("127.0.61.31", "127.0.61.32", "127.0.61.33")
ANSIBLE_DOORS = ("ansible", "ansible_module")
RUNNERS: dict[str, Callable[[World, Scenario], Run]] = {
    "cli": run_cli,
    "python": run_python,
    "nornir": run_nornir,
    "nornir_inventory": run_nornir_inventory,
}


def _reserve_ports(count: int, held: dict[tuple[str, int], socket.socket]) -> list[int]:
    """``count`` ports free on every host, each held bound on every host."""
    rng = random.Random()
    found: list[int] = []
    for _ in range(200):
        if len(found) == count:
            return found
        port = rng.randrange(20000, 32000)
        if port in found:
            continue
        socks = []
        try:
            for address in HOSTS:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind((address, port))
        except OSError:
            for sock in socks:
                sock.close()
            continue
        held.update(((address, port), sock) for address, sock in zip(HOSTS, socks, strict=True))
        found.append(port)
    raise RuntimeError(f"no {count} ports free on {HOSTS}")


def _listen(
    listeners: Listeners, held: dict[tuple[str, int], socket.socket], address: str, port: int
) -> None:
    held.pop((address, port)).close()
    listeners.open(address, port)


def _connects(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import nornir_portscan

    # the worktree's engine, not the one the venv was installed from
    assert Path(nornir_portscan.__file__).resolve().is_relative_to(REPO)
    root = tmp_path_factory.mktemp("conformance")
    (root / "reports").mkdir()
    held: dict[tuple[str, int], socket.socket] = {}
    listeners = Listeners()
    udp = UdpServers()
    try:
        open_port, extra_port, closed_port, drift_port = _reserve_ports(4, held)
        a, b, c = HOSTS
        for address, port in ((a, open_port), (b, open_port), (a, extra_port)):
            _listen(listeners, held, address, port)
        udp.bind(a, open_port, echo=True)  # UDP: open on a, open|filtered on b, closed on c
        udp.bind(b, open_port, echo=False)
        udp.thread.start()
        w = World(
            root=root,
            hosts=HOSTS,
            open_port=open_port,
            extra_port=extra_port,
            closed_port=closed_port,
            drift_port=drift_port,
            baseline=root / "baseline.json",
            policy=root / "policy.yml",
            bad_baseline=root / "bad-baseline.json",
            bad_policy=root / "bad-policy.yml",
            missing_report=root / "missing" / "x.json",
            directory=root / "a-directory",
        )
        w.directory.mkdir()
        w.policy.write_text(
            yaml.safe_dump(
                {
                    "defaults": {"allowed_open": f"{open_port},{extra_port}"},
                    "groups": {"web": {"hosts": [a, b], "expect_open": str(open_port)}},
                    "hosts": {
                        a: {"allowed_open": str(open_port)},
                        c: {"expect_filtered": str(closed_port)},
                    },
                }
            )
        )
        w.bad_baseline.write_text("not json {\n")
        w.bad_policy.write_text("0\n")
        write_nornir_inventory(w)
        _save_baseline(w)
        _listen(listeners, held, b, drift_port)  # opened since the baseline
        assert _connects(b, drift_port)
        yield w
    finally:
        listeners.close()
        udp.close()
        for sock in held.values():
            sock.close()


def _save_baseline(w: World) -> None:
    """The CLI saves the baseline while the drift port is still closed everywhere."""
    ports = f"{w.open_port},{w.extra_port},{w.drift_port}"
    argv = [
        str(PYTHON),
        "-m",
        "nornir_portscan.cli",
        *w.hosts,
        f"--ports={ports}",
        f"--timeout={COMMON['timeout']}",
        f"--json={w.baseline}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=door_env())
    assert done.returncode == 0, done.stderr
    saved = {h["name"]: h["open_ports"] for h in json.loads(w.baseline.read_text())["hosts"]}
    assert saved == {
        w.hosts[0]: sorted((w.open_port, w.extra_port)),
        w.hosts[1]: [w.open_port],
        w.hosts[2]: [],
    }


class Outcomes:
    """Each door's run of each scenario, made once and kept for the session."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.scenarios = scenarios(world)
        self.runs: dict[tuple[str, str], Run] = {}
        self.playbooks: dict[str, subprocess.Popen[bytes]] = {}
        self.ansible: dict[str, dict[str, Any]] = {}

    def start_playbooks(self) -> None:
        """Start one ``ansible-playbook`` per Ansible door, side by side, in the background."""
        for door in ANSIBLE_DOORS:
            if door not in self.playbooks:
                self.playbooks[door] = start_playbook(self.world, door, self.scenarios)

    def stop_playbooks(self) -> None:
        for playbook in self.playbooks.values():
            if playbook.poll() is None:  # its own session: the group is it and its workers
                os.killpg(playbook.pid, signal.SIGKILL)
                playbook.wait(timeout=10)

    def get(self, door: str, name: str) -> Run:
        key = (door, name)
        if key not in self.runs:
            scenario = self.scenarios[name]
            if door in ANSIBLE_DOORS:
                result = self._ansible_results(door).get(name)
                assert result is not None, f"no {door} result for {name}"
                self.runs[key] = ansible_outcome(self.world, door, scenario, result)
            else:
                self.runs[key] = RUNNERS[door](self.world, scenario)
        return self.runs[key]

    def _ansible_results(self, door: str) -> dict[str, Any]:
        if door not in self.ansible:
            self.start_playbooks()
            code = self.playbooks[door].wait(timeout=240)
            log = (self.world.root / f"{door}.log").read_text()
            assert code == 0, f"ansible-playbook exit {code}:\n{log[-4000:]}"
            results = self.world.root / f"{door}.results.json"
            self.ansible[door] = json.loads(results.read_text())
        return self.ansible[door]


def _wants_ansible(session: pytest.Session) -> bool:
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("door") in ANSIBLE_DOORS or item.name.startswith("test_doors_agree"):
            return True
    return False


@pytest.fixture(scope="session")
def outcomes(world: World, request: pytest.FixtureRequest) -> Iterator[Outcomes]:
    """The doors' outcomes. When Ansible doors are selected, their playbooks start at once and
    run in the background while the other doors run in this process (they come first)."""
    assert set(NAMES) == set(scenarios(world))
    found = Outcomes(world)
    if _wants_ansible(request.session):
        found.start_playbooks()
    try:
        yield found
    finally:
        found.stop_playbooks()
