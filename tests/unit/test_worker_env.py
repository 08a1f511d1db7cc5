"""Workers run the copy of the package their parent runs (a worktree, an unpacked sdist), not
one an editable install or the working directory puts on sys.path; and they start without the
site module (-S), finding gevent where their parent would."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nornir_portscan
from nornir_portscan.engine import executor, processes

_REPORT = (
    "import json, os, sys, nornir_portscan, gevent\n"
    "print(json.dumps([nornir_portscan.__file__, gevent.__file__, 'site' in sys.modules, "
    "sys.path, os.__file__]))"
)


def _worker_python(code: str, env: dict[str, str], cwd: Path) -> list[Any]:
    out = subprocess.run(
        [sys.executable, "-S", "-P", "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return list(json.loads(out.stdout.splitlines()[-1]))


def _gevent_file() -> str:
    spec = importlib.util.find_spec("gevent")
    assert spec is not None
    return str(spec.origin)


def test_a_worker_imports_the_parents_copy_of_the_package(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-S",
            "-P",
            "-c",
            "import nornir_portscan; print(nornir_portscan.__file__)",
        ],
        env=processes.worker_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == nornir_portscan.__file__


def test_a_worker_finds_gevent_without_the_site_module(tmp_path: Path) -> None:
    code = "import nornir_portscan.engine.worker\n" + _REPORT
    package, gevent, site_ran, path, stdlib = _worker_python(code, processes.worker_env(), tmp_path)
    assert (package, gevent, site_ran) == (nornir_portscan.__file__, _gevent_file(), False)
    # after the standard library, as the site module puts it: it never shadows the stdlib
    assert path.index(str(Path(gevent).parents[1])) > path.index(str(Path(stdlib).parent))


def test_a_worker_runs_the_site_module_when_gevent_is_not_where_it_was_told(
    tmp_path: Path,
) -> None:
    env = {**processes.worker_env(), processes.WORKER_PATH: str(tmp_path)}
    code = "import nornir_portscan.engine.worker\n" + _REPORT
    package, gevent, site_ran, *_ = _worker_python(code, env, tmp_path)
    assert (package, gevent, site_ran) == (nornir_portscan.__file__, _gevent_file(), True)


def test_the_worker_reads_the_variable_the_executor_sets() -> None:
    source = Path(executor.__file__).with_name("worker.py").read_text()
    assert f'"{processes.WORKER_PATH}"' in source


def test_gevent_in_the_callers_script_directory_is_not_the_workers(tmp_path: Path) -> None:
    # -P keeps the script's directory off a worker's sys.path, so its gevent is not the one
    (tmp_path / "gevent").mkdir()
    (tmp_path / "gevent" / "__init__.py").write_text("raise SystemExit('the wrong gevent')\n")
    script = tmp_path / "caller.py"
    script.write_text(
        "from nornir_portscan.engine import processes\n"
        "print(processes.worker_env()[processes.WORKER_PATH])\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        env={**processes.worker_env(), "PYTHONPATH": processes._PACKAGE_ROOT},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert str(Path(_gevent_file()).parents[1]) in out.stdout.strip().split(os.pathsep)
    assert str(tmp_path) not in out.stdout.strip().split(os.pathsep)


def test_a_worker_builds_none_of_the_other_models(tmp_path: Path) -> None:
    code = (
        "import json, sys, nornir_portscan.engine.worker\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('nornir_portscan'))))"
    )
    (modules,) = [_worker_python(code, processes.worker_env(), tmp_path)]
    assert "nornir_portscan.models" not in modules
    assert "nornir_portscan.states" in modules


def test_port_state_is_one_class_under_both_names() -> None:
    from nornir_portscan import PortState, models, states

    assert PortState is models.PortState is states.PortState
