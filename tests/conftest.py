"""Shared fixtures: real listeners on loopback, private network namespaces, the CLI."""

from support import listeners, netns, no_shared_service, run_cli

__all__ = ["listeners", "netns", "no_shared_service", "run_cli"]
