"""Nornir scripts run as real subprocesses under ``python -W error``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import script_env
from support import REPO, Listeners, closed_port

if TYPE_CHECKING:
    from conftest import MakeNornir


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=script_env(),
    )


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def up_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The one-line host results of ``print_result``, wait times made N."""
    return [
        re.sub(r"converged in \d+\.\d s", "converged in N s", line)
        for line in plain(done.stdout).splitlines()
        if " up: " in line
    ]


def test_example_scan_script(tmp_path: Path) -> None:
    script = str(REPO / "examples" / "nornir" / "scan.py")
    done = run(script, "--demo", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert up_lines(done) == [
        "127.0.0.21 up: open 15432; closed 1; compliant",
        "127.0.0.31 up: open 18022; closed 1; compliant",
        "127.0.0.11 up: open 18080,18443; closed 1; compliant",
        "127.0.0.12 up: open 18080,18443; closed 0; compliant",
    ]
    assert list(tmp_path.iterdir()) == []  # no nornir.log left behind


def test_example_change_gate(tmp_path: Path) -> None:
    script = str(REPO / "examples" / "nornir" / "scan.py")
    done = run(script, "--demo=before", "--report", "before.json", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "")  # web2 lacks 18443
    assert up_lines(done)[3] == (
        "127.0.0.12 up: open 18080; closed 1; FAILED: port 18443 closed (expected open)"
    )
    assert "vvvv scan_inventory ** changed : False" in plain(done.stdout)  # --report: one run
    assert [p.name for p in tmp_path.iterdir()] == ["before.json"]
    report = json.loads((tmp_path / "before.json").read_text())
    assert [(h["name"], h["passed"]) for h in report["hosts"]] == [
        ("web1", True),
        ("web2", False),
        ("db1", True),
        ("mgmt1", True),
    ]
    # 18443 opens a second in: the wait sees it, and the drift from before is the expected one
    done = run(script, "--demo=rollout", "--wait", "10", "--baseline", "before.json", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert up_lines(done) == [
        "127.0.0.21 up: open 15432; closed 1; compliant; wait: converged in N s; no drift",
        "127.0.0.31 up: open 18022; closed 1; compliant; wait: converged in N s; no drift",
        "127.0.0.11 up: open 18080,18443; closed 1; compliant; wait: converged in N s; no drift",
        "127.0.0.12 up: open 18080,18443; closed 0; compliant; wait: converged in N s; "
        "drift: opened 18443, as expected",
    ]


def test_script_without_main_guard(
    tmp_path: Path, make_nornir: MakeNornir, listeners: Listeners
) -> None:
    port = listeners.open("127.0.0.11")
    closed = closed_port("127.0.0.12")
    make_nornir(
        {
            "a": {"hostname": "127.0.0.11"},
            "b": {"hostname": "127.0.0.12"},
            "c": {"hostname": "127.0.0.13"},
        }
    )  # writes hosts.yaml
    script = tmp_path / "scan_inventory.py"
    script.write_text(
        textwrap.dedent(f"""\
        import sys
        from nornir import InitNornir
        import nornir_portscan
        from nornir_portscan import portscan

        nr = InitNornir(inventory={{"plugin": "SimpleInventory",
                                    "options": {{"host_file": "hosts.yaml"}}}},
                        runner={{"plugin": "threaded", "options": {{"num_workers": 10}}}},
                        logging={{"enabled": False}})
        result = nr.run(task=portscan, ports="{port},{closed}", exclude="127.0.0.13",
                        timeout=0.5, processes=1)
        for name, multi in sorted(result.items()):
            print(name, multi.failed, multi[0].result)
        print("gevent imported:", "gevent" in sys.modules)
        print("package:", nornir_portscan.__file__)
        """)
    )
    done = run(str(script), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        f"a False 127.0.0.11 up: open {port}; closed 1",
        "b False 127.0.0.12 up: open none; closed 2",
        "c False 127.0.0.13 excluded: not scanned",
        "gevent imported: False",
        f"package: {REPO / 'nornir_portscan' / '__init__.py'}",
    ]


LOW_FD_LIMIT = """\
import logging, sys
from nornir import InitNornir
from nornir_portscan import portscan

logging.basicConfig(format="LOG %(name)s %(levelname)s %(message)s", stream=sys.stderr)
nr = InitNornir(inventory={"plugin": "SimpleInventory", "options": {"host_file": "hosts.yaml"}},
                runner={"plugin": "threaded", "options": {"num_workers": 3}},
                logging={"enabled": False})
result = nr.run(task=portscan, ports=sys.argv[1], timeout=0.5, processes=1)
for name, multi in sorted(result.items()):
    print(name, multi.failed, multi[0].result["open_ports"], multi[0].result["warnings"])
"""


def test_an_engine_warning_reaches_every_host_and_the_log_once(
    tmp_path: Path, make_nornir: MakeNornir, listeners: Listeners
) -> None:
    """Under an open-file limit of 128 the engine lowers its concurrency of 1000 and says so:
    every host's Result carries the warning, and the log has it once."""
    if not shutil.which("prlimit"):
        pytest.skip("prlimit (util-linux) is not installed")
    port = listeners.open("127.0.0.11")
    make_nornir({f"w{i}": {"hostname": f"127.0.0.1{i}"} for i in (1, 2, 3)})
    (tmp_path / "low_fd_limit.py").write_text(LOW_FD_LIMIT)
    done = subprocess.run(
        [
            "prlimit",
            "--nofile=128:128",
            sys.executable,
            "-W",
            "error",
            "low_fd_limit.py",
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=script_env(),
    )
    warning = (
        "concurrency lowered from 1000 to 104 per worker: the open-file limit is 128 "
        "(raise it with 'ulimit -n')"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"w1 False [{port}] [{warning!r}]",
        f"w2 False [] [{warning!r}]",
        f"w3 False [] [{warning!r}]",
    ]
    assert done.stderr.splitlines() == [f"LOG nornir_portscan WARNING {warning}"]
