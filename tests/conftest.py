"""Shared fixtures: real listeners on loopback, private network namespaces, the CLI."""

from support import listeners, netns, run_cli

__all__ = ["listeners", "netns", "run_cli"]
