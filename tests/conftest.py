"""Shared fixtures: real listeners on loopback, private network namespaces, the CLI, the scan
service's workers counted."""

from service_support import started, svc
from support import listeners, netns, no_shared_service, run_cli

__all__ = ["listeners", "netns", "no_shared_service", "run_cli", "started", "svc"]
