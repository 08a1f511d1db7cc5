"""Fixtures for the Nornir task: real SimpleInventory files, real listeners, engine-call spies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from nornir import InitNornir
from nornir.core import Nornir

from nornir_portscan.engine.executor import scan
from nornir_portscan.models import ScanReport, ScanRequest
from nornir_portscan.nornir import tasks

MakeNornir = Callable[..., Nornir]


@pytest.fixture
def make_nornir(tmp_path: Path) -> MakeNornir:
    """``make_nornir(hosts, groups=None, defaults=None, runner=("threaded", 20))``: a Nornir
    over a SimpleInventory written to YAML files; ``runner`` is ``("serial",)`` or
    ``("threaded", num_workers)``."""

    def make(
        hosts: dict[str, Any],
        groups: dict[str, Any] | None = None,
        defaults: dict[str, Any] | None = None,
        runner: tuple[Any, ...] = ("threaded", 20),
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
        plugin = {"plugin": runner[0]}
        if runner[0] == "threaded":
            plugin["options"] = {"num_workers": runner[1]}  # type: ignore[assignment]
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
            logging={"enabled": False},
        )

    return make


class EngineCalls(list[ScanRequest]):
    """The requests the real engine was called with, in order."""

    def targets(self) -> list[list[str]]:
        return [[t.name for t in request.targets] for request in self]


@pytest.fixture
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> EngineCalls:
    """Record each engine run of the task (its scans, wait rounds and re-checks); the real
    engine still scans."""
    calls = EngineCalls()
    real = tasks._scanner() or scan

    def spy(request: ScanRequest, **kwargs: Any) -> ScanReport:
        calls.append(request)
        return real(request, **kwargs)

    monkeypatch.setattr(tasks, "_scanner", lambda: spy)
    return calls
