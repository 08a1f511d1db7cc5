"""Fixtures for the Nornir task: real SimpleInventory files, real runners, real listeners that a
task can stop and start, engine-call spies, and a resolver that never leaves the machine."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from nornir import InitNornir
from nornir.core import Nornir
from nornir.core.plugins.runners import RunnersPluginRegister
from nornir.core.task import MultiResult, Result
from process_runner import ProcessRunner
from support import REPO

from nornir_portscan import targets
from nornir_portscan.engine.executor import scan
from nornir_portscan.models import ScanReport, ScanRequest
from nornir_portscan.nornir import tasks

MakeNornir = Callable[..., Nornir]


def script_env() -> dict[str, str]:
    """The environment of a script run as a subprocess: it imports this tree's package, not
    whichever one the virtualenv's editable install points at."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


FAST = {"timeout": 0.5, "processes": 1}
"""Engine options for loopback: a short timeout, one worker process per scan."""

RunnersPluginRegister.register("process", ProcessRunner)


@pytest.fixture
def make_nornir(tmp_path: Path) -> MakeNornir:
    """``make_nornir(hosts, groups=None, defaults=None, runner=("threaded", 20), dry_run=False)``:
    a Nornir over a SimpleInventory written to YAML files; ``runner`` is ``("serial",)``,
    ``("threaded", num_workers)`` or ``("process", num_workers)`` (``process_runner``)."""

    def make(
        hosts: dict[str, Any],
        groups: dict[str, Any] | None = None,
        defaults: dict[str, Any] | None = None,
        runner: tuple[Any, ...] = ("threaded", 20),
        dry_run: bool = False,
    ) -> Nornir:
        files = {}
        for name, data in (
            ("hosts", hosts),
            ("groups", groups or {}),
            ("defaults", defaults or {}),
        ):
            files[name] = tmp_path / f"{name}.yaml"  # a missing file is an empty one
            if data:
                files[name].write_text(yaml.safe_dump(data))
        plugin: dict[str, Any] = {"plugin": runner[0]}
        if len(runner) > 1:
            plugin["options"] = {"num_workers": runner[1]}
        return InitNornir(
            runner=plugin,
            inventory={
                "plugin": "SimpleInventory",
                "options": {
                    "host_file": str(files["hosts"]),
                    "group_file": str(files["groups"]),
                    "defaults_file": str(files["defaults"]),
                },
            },
            dry_run=dry_run,
            logging={"enabled": False},
        )

    return make


class EngineCalls(list[ScanRequest]):
    """The requests the engine was called with, in order, and when each call began."""

    def __init__(self) -> None:
        super().__init__()
        self.began: list[float] = []  # time.monotonic() of each call
        self.finished: list[ScanRequest] = []  # the calls that returned, in that order
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            super().clear()
            self.began.clear()
            self.finished.clear()

    def targets(self) -> list[list[str]]:
        return [[t.name for t in request.targets] for request in self]

    def scanned(self, name: str) -> bool:
        """Whether an engine call that scanned host ``name`` has returned."""
        with self.lock:
            return any(t.name == name for r in self.finished for t in r.targets)

    def of(self, name: str) -> list[tuple[float, ScanRequest]]:
        """``(began, request)`` of the calls that scanned host ``name``."""
        return [
            (began, request)
            for began, request in zip(self.began, self, strict=True)
            if name in {t.name for t in request.targets}
        ]


@pytest.fixture
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> EngineCalls:
    """Record each engine run of the task (its scans, wait rounds and re-checks) through the
    ``tasks._scanner()`` seam; the real engine still scans."""
    calls = EngineCalls()
    real = tasks._scanner() or scan

    def spy(request: ScanRequest, **kwargs: Any) -> ScanReport:
        with calls.lock:
            calls.began.append(time.monotonic())
            calls.append(request)
        report = real(request, **kwargs)
        with calls.lock:
            calls.finished.append(request)
        return report

    monkeypatch.setattr(tasks, "_scanner", lambda: spy)
    return calls


NAMES = {"gone.test": None, "web.test": "127.0.0.11"}
"""The hostnames tests may use besides ``localhost``: None does not resolve."""


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names resolve from ``NAMES`` (``localhost`` from /etc/hosts): no query leaves the
    machine, and a test that asks for another name fails loudly."""
    real = targets.resolve_name

    def resolve(name: str, family: int) -> list[str]:
        if name.lower() == "localhost":
            return real(name, family)
        if name.lower() not in NAMES:
            raise AssertionError(f"a test asked to resolve {name!r}: use one of {sorted(NAMES)}")
        address = NAMES[name.lower()]
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [address]

    monkeypatch.setattr(targets, "resolve_name", resolve)


class Services:
    """Listening sockets on loopback that a task can stop and start, one per (address, port);
    the kernel completes handshakes without ``accept()``."""

    def __init__(self) -> None:
        self.socks: dict[tuple[str, int], socket.socket] = {}
        self.lock = threading.Lock()
        self.changed: dict[str, float] = {}  # address -> time.monotonic() of its last change

    def start(self, address: str, port: int = 0) -> int:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(4096)
        port = int(sock.getsockname()[1])
        with self.lock:
            self.socks[address, port] = sock
            self.changed[address] = time.monotonic()
        return port

    def stop(self, address: str, port: int) -> None:
        with self.lock:
            self.socks.pop((address, port)).close()
            self.changed[address] = time.monotonic()

    def common_port(self, addresses: list[str]) -> int:
        """A port free on every address of ``addresses`` (bound, then released)."""
        for _ in range(20):
            probe = socket.socket()
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
            probe.close()
            try:
                for address in addresses:
                    with socket.socket() as sock:
                        sock.bind((address, port))
            except OSError:
                continue
            return port
        raise AssertionError("no port free on every address after 20 tries")

    def close(self) -> None:
        with self.lock:
            for sock in self.socks.values():
                sock.close()
            self.socks.clear()


@pytest.fixture
def services() -> Iterator[Services]:
    """``services.start(address, port)`` / ``services.stop(address, port)``; all close at
    teardown."""
    found = Services()
    yield found
    found.close()


def scans_of(multi: MultiResult, name: str = "portscan") -> list[Result]:
    """The Results of a host's run named ``name`` (the ``portscan`` subtasks of a grouped
    task), in the order they ran."""
    return [r for r in multi if r.name == name]
