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


def test_example_scan_script(tmp_path: Path) -> None:
    done = run(str(REPO / "examples" / "nornir" / "scan.py"), "--demo", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    lines = [line for line in plain(done.stdout).splitlines() if " up: " in line]
    assert lines == [
        "127.0.0.21 up: open 15432; closed 1",
        "127.0.0.31 up: open 18022; closed 1",
        "127.0.0.11 up: open 18080,18443; closed 1",
        "127.0.0.12 up: open 18080; closed 1",
    ]
    assert list(tmp_path.iterdir()) == []  # no nornir.log left behind


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
