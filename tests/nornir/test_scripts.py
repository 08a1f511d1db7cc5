"""Nornir scripts run as real subprocesses under ``python -W error``."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from support import REPO, Listeners, closed_port

if TYPE_CHECKING:
    from conftest import MakeNornir


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", *args], capture_output=True, text=True, timeout=120, cwd=cwd
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
        "127.0.0.12 up: open 18080; closed 1; violations: 18443 closed (expected open)"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["before.json"]
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
            "c": {"hostname": "no-such-host.invalid"},
        }
    )  # writes hosts.yaml
    script = tmp_path / "scan_inventory.py"
    script.write_text(
        textwrap.dedent(f"""\
        import sys
        from nornir import InitNornir
        from nornir_portscan import portscan

        nr = InitNornir(inventory={{"plugin": "SimpleInventory",
                                    "options": {{"host_file": "hosts.yaml"}}}},
                        runner={{"plugin": "threaded", "options": {{"num_workers": 10}}}},
                        logging={{"enabled": False}})
        result = nr.run(task=portscan, ports="{port},{closed}", timeout=0.5, processes=2)
        for name, multi in sorted(result.items()):
            print(name, multi.failed, multi[0].result)
        print("gevent imported:", "gevent" in sys.modules)
        """)
    )
    done = run(str(script), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        f"a False 127.0.0.11 up: open {port}; closed 1",
        "b False 127.0.0.12 up: open none; closed 2",
        "c True c unresolved: Name or service not known",
        "gevent imported: False",
    ]
