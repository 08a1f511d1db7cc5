"""Under ``ansible-test units`` the collection loader imports ``ansible_collections...``; under
plain pytest (``make test``) the repo root is made importable as the collection here."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path


def _importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


if not _importable("ansible_collections.nornir_portscan.portscan.plugins"):
    _root = Path(tempfile.mkdtemp(prefix="portscan-collections-"))
    (_root / "ansible_collections" / "nornir_portscan").mkdir(parents=True)
    (_root / "ansible_collections" / "nornir_portscan" / "portscan").symlink_to(
        Path(__file__).resolve().parents[3], target_is_directory=True)
    sys.path.insert(0, str(_root))
    sys.modules.pop("ansible_collections", None)
