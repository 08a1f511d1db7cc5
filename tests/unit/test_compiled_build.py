"""The probe loop compiled with mypyc (``setup.py``): what workers run where the package was
built with a C compiler, never older than its source, and the same scan as plain Python."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import nornir_portscan
from nornir_portscan.engine import processes

REPO = Path(__file__).resolve().parents[2]
COMPILED = ["nornir_portscan.engine.prober", "nornir_portscan.engine.schedule",
            "nornir_portscan.engine.timing", "nornir_portscan.engine.udp"]
_EXTENSION = sysconfig.get_config_var("EXT_SUFFIX")


def _origin(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # found, not imported: gevent stays out of here
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin)


def _built_without_compiler() -> bool:
    return bool(os.environ.get("NORNIR_PORTSCAN_PURE")) or shutil.which("gcc") is None


def test_setup_compiles_the_modules_this_test_expects() -> None:
    source = (REPO / "setup.py").read_text()
    for name in COMPILED:
        assert f'"{name.replace(".", "/")}.py"' in source


def test_the_probe_loop_is_compiled_where_a_compiler_was_at_hand() -> None:
    if _built_without_compiler():
        pytest.skip("a plain-Python build: NORNIR_PORTSCAN_PURE is set or there is no gcc")
    plain = [name for name in COMPILED if not _origin(name).name.endswith(_EXTENSION)]
    assert not plain, f"not compiled: {plain} (run 'make setup')"


def test_no_compiled_module_is_older_than_its_source() -> None:
    # each module's extension is a shim; the code is in the group's library beside the package
    library = Path(nornir_portscan.__file__).parents[1] / f"nornir_portscan__mypyc{_EXTENSION}"
    stale = []
    for name in COMPILED:
        origin = _origin(name)
        source = origin.parent / (name.rpartition(".")[2] + ".py")
        if origin == source:
            continue
        built = min(origin.stat().st_mtime, library.stat().st_mtime)
        if built < source.stat().st_mtime:
            stale.append(str(origin))
    assert not stale, f"compiled before their source last changed: {stale} (run 'make setup')"


def test_a_worker_runs_the_compiled_modules(tmp_path: Path) -> None:
    if _built_without_compiler():
        pytest.skip("a plain-Python build: NORNIR_PORTSCAN_PURE is set or there is no gcc")
    code = (
        "import json, sys, nornir_portscan.engine.worker, nornir_portscan.engine.udp\n"
        f"print(json.dumps([sys.modules[name].__file__ for name in {COMPILED!r}]))"
    )
    out = subprocess.run([sys.executable, "-S", "-P", "-c", code], env=processes.worker_env(),
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    files = json.loads(out.stdout.splitlines()[-1])
    assert all(file.endswith(_EXTENSION) for file in files), files


def _scan(package_root: Path, ports: str, out: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    done = subprocess.run(
        [sys.executable, "-P", "-m", "nornir_portscan", "127.0.0.1", "127.0.0.2", "-p", ports,
         "--no-progress", "--json", str(out)],
        env=env, cwd=package_root, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    return {h["address"]: (h["status"], h["open_ports"], h["closed_count"], h["error_ports"])
            for h in report["hosts"]}


@pytest.mark.slow
def test_the_plain_python_package_gives_the_same_scan(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(Path(nornir_portscan.__file__).parent, plain / "nornir_portscan",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    check = subprocess.run(
        [sys.executable, "-S", "-P", "-c",
         "import nornir_portscan.engine.worker, sys; print(sys.modules["
         "'nornir_portscan.engine.prober'].__file__)"],
        env={**processes.worker_env(), "PYTHONPATH": str(plain)},
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert check.stdout.strip() == str(plain / "nornir_portscan/engine/prober.py")
    listeners = []
    try:
        for _ in range(3):
            sock = socket.create_server(("127.0.0.1", 0))
            listeners.append(sock)
        open_ports = sorted(s.getsockname()[1] for s in listeners)
        ports = ",".join(map(str, open_ports)) + ",20000-24000"
        compiled = _scan(REPO, ports, tmp_path / "compiled.json")
        interpreted = _scan(plain, ports, tmp_path / "plain.json")
    finally:
        for sock in listeners:
            sock.close()
    assert compiled == interpreted
    status, found, _, errors = compiled["127.0.0.1"]  # type: ignore[misc]
    assert status == "up"
    assert set(open_ports) <= {p["port"] if isinstance(p, dict) else p for p in found}
    assert errors == []
