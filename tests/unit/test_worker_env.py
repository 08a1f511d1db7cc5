"""Workers run the copy of the package their parent runs (a worktree, an unpacked sdist), not
one an editable install or the working directory puts on sys.path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nornir_portscan
from nornir_portscan.engine import executor


def test_a_worker_imports_the_parents_copy_of_the_package(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-P", "-c", "import nornir_portscan; print(nornir_portscan.__file__)"],
        env=executor._worker_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == nornir_portscan.__file__
