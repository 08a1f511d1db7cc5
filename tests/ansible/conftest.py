"""Fixtures for the Ansible collection: the collection resolved from the working tree, the demo
listeners of ``playbooks/inventory/demo.yml`` and a runner for real ``ansible-playbook`` runs.

The collection is found through ``ANSIBLE_COLLECTIONS_PATH``: a temporary directory holding
``ansible_collections/nornir_portscan/portscan`` as a symlink to the repo root, so there is no
install step. Listeners bind 127.0.0.0/8 addresses only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from support import Listeners

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
DEMO_INVENTORY = PLAYBOOKS / "inventory" / "demo.yml"
BIN = Path(sys.executable).parent


def demo_hosts() -> dict[str, tuple[str, list[int]]]:
    """``{inventory name: (address, ports to open)}`` from the demo inventory."""
    hosts: dict[str, tuple[str, list[int]]] = {}

    def walk(group: dict) -> None:
        for name, host in (group.get("hosts") or {}).items():
            hosts[name] = (host["ansible_host"], list(host["demo_listeners"]))
        for child in (group.get("children") or {}).values():
            walk(child)

    walk(yaml.safe_load(DEMO_INVENTORY.read_text())["all"])
    assert all(address.startswith("127.") for address, _ in hosts.values())
    return hosts


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections path in which the repo root is ``nornir_portscan.portscan``."""
    root = tmp_path_factory.mktemp("collections")
    namespace = root / "ansible_collections" / "nornir_portscan"
    namespace.mkdir(parents=True)
    (namespace / "portscan").symlink_to(REPO, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def collection_import(collections_path: Path) -> Iterator[None]:
    """Make ``ansible_collections.nornir_portscan.portscan`` importable in this process."""
    sys.path.insert(0, str(collections_path))
    yield
    sys.path.remove(str(collections_path))


@pytest.fixture(scope="session")
def ansible_env(collections_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every ansible command the tests run."""
    home = tmp_path_factory.mktemp("ansible-home")
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@pytest.fixture
def demo_listeners() -> Iterator[Listeners]:
    """The demo inventory's listeners, open for the test; ``.open(address, port)`` adds more."""
    listeners = Listeners()
    try:
        for address, ports in demo_hosts().values():
            for port in ports:
                listeners.open(address, port)
        yield listeners
    finally:
        listeners.close()


def open_later(listeners: Listeners, address: str, port: int, delay: float) -> threading.Timer:
    """Open a listener after ``delay`` seconds (a service coming up after a change)."""
    timer = threading.Timer(delay, listeners.open, (address, port))
    timer.start()
    return timer


PlaybookRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_playbook(ansible_env: dict[str, str], tmp_path: Path) -> PlaybookRunner:
    """Run ``ansible-playbook`` for real; ``netns`` names a namespace to run it in."""

    def run(playbook: Path | str, *args: str, inventory: Path | str = DEMO_INVENTORY,
            netns: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *args]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        return subprocess.run(argv, env=ansible_env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=timeout)

    return run
