"""The command line imports what a run needs when it runs: ``--version`` needs none of the
engine, and a plain scan none of the fleet (``--shard``, ``merge``) code and none of the
renderers of files it does not write. Checked on
``sys.modules`` of a fresh interpreter, not on times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(__import__('json').dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def _ours(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] == "nornir_portscan"}


def test_importing_the_command_line_imports_no_engine() -> None:
    modules = _modules_after("import nornir_portscan.cli")
    assert _ours(modules) == {"nornir_portscan", "nornir_portscan.cli", "nornir_portscan.errors"}
    assert "gevent" not in modules


def test_version_imports_no_engine() -> None:
    code = (
        "import contextlib, io\nfrom nornir_portscan.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--version'])"
    )
    modules = _modules_after(code)
    assert _ours(modules) == {"nornir_portscan", "nornir_portscan.cli", "nornir_portscan.errors"}


@pytest.mark.parametrize("options", [[], ["--json", "-"]])
def test_a_plain_scan_imports_no_fleet_and_no_gevent(options: list[str]) -> None:
    code = (
        "import contextlib, io\nfrom nornir_portscan.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['-p', '1', '--no-progress', '127.0.0.1', *{options!r}])\n"
        "assert code == 0, code"
    )
    modules = _modules_after(code)
    assert "nornir_portscan.engine.executor" in modules  # it did scan
    assert not {m for m in modules if m.startswith("nornir_portscan.fleet")}
    assert not {"nornir_portscan.reports.nmap_xml", "nornir_portscan.reports.pages"} & modules
    assert "gevent" not in modules


def test_a_sharded_scan_imports_the_fleet_code() -> None:
    code = (
        "import contextlib, io\nfrom nornir_portscan.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = main(['-p', '1', '--no-progress', '--shard', '0/1', '127.0.0.1'])\n"
        "assert code == 0, code"
    )
    assert "nornir_portscan.fleet.shards" in _modules_after(code)


def test_a_scan_that_writes_xml_imports_its_renderer(tmp_path: Path) -> None:
    out = tmp_path / "scan.xml"
    code = (
        "import contextlib, io\nfrom nornir_portscan.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['-p', '1', '--no-progress', '--xml', {str(out)!r}, '127.0.0.1'])\n"
        "assert code == 0, code"
    )
    modules = _modules_after(code)
    assert "nornir_portscan.reports.nmap_xml" in modules
    assert "nornir_portscan.reports.pages" not in modules
    assert out.read_text().startswith("<?xml")
