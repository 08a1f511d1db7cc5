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
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_support import BIN, DEMO_INVENTORY, REPO, NetnsListeners, PlaybookRunner, demo_binds


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
def lab(netns: str, tmp_path: Path) -> Iterator[NetnsListeners]:
    """A private network namespace; ``lab.open([(address, port), ...])`` listens in it."""
    listeners = NetnsListeners(netns, tmp_path)
    yield listeners
    listeners.close()


@pytest.fixture
def demo_listeners(lab: NetnsListeners) -> NetnsListeners:
    """The lab with the demo inventory's listeners open."""
    lab.open(demo_binds())
    return lab


@pytest.fixture
def run_playbook(ansible_env: dict[str, str], netns: str, tmp_path: Path) -> PlaybookRunner:
    """Run ``ansible-playbook`` for real, inside the lab's network namespace."""

    def run(playbook: Path | str, *args: str, inventory: Path | str = DEMO_INVENTORY,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", netns, str(BIN / "ansible-playbook"), "-i",
                str(inventory), str(playbook), *args]
        return subprocess.run(argv, env=ansible_env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=timeout)

    return run
