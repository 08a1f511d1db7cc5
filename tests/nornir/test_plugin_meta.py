"""``.nornir.meta``, the plugin index's description of this package, names real plugins."""

from __future__ import annotations

import importlib

import yaml
from support import REPO

from nornir_portscan.nornir import processors, tasks


def test_every_plugin_the_metadata_names_is_importable() -> None:
    meta = yaml.safe_load((REPO / ".nornir.meta").read_text())
    assert (meta["name"], meta["nornir_version"], meta["intro_file"]) == (
        "nornir_portscan",
        "~3",
        "docs/nornir.md",
    )
    assert (REPO / meta["intro_file"]).is_file()
    found = {}
    for kind in ("task_plugins", "function_plugins", "processor_plugins"):
        for dotted in meta[kind]:
            module, name = dotted.rsplit(".", 1)
            found[dotted] = getattr(importlib.import_module(module), name)
    assert found == {
        "nornir_portscan.nornir.tasks.portscan": tasks.portscan,
        "nornir_portscan.nornir.tasks.scan_inventory": tasks.scan_inventory,
        "nornir_portscan.nornir.processors.ProgressBar": processors.ProgressBar,
    }
