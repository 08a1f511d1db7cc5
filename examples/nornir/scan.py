"""Scan the example inventory with the ``portscan`` Nornir task and print the result.

    python examples/nornir/scan.py --demo   # starts the listeners the inventory expects

The inventory (hosts.yaml, groups.yaml, defaults.yaml) holds loopback hosts only. Without
``--demo`` nothing listens there and every port is closed. Exit status 1 if a host failed.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from pathlib import Path

from nornir import InitNornir
from nornir_utils.plugins.functions import print_result

from nornir_portscan import ProgressBar, portscan

HERE = Path(__file__).resolve().parent
DEMO_LISTENERS = {
    "127.0.0.11": [18080, 18443],
    "127.0.0.12": [18080, 18444],  # 18444 is excluded for web2, so it is not scanned
    "127.0.0.21": [15432],
    "127.0.0.31": [18022],
}


def listen(stack: contextlib.ExitStack) -> None:
    """Open the demo listeners; the kernel completes handshakes without accept()."""
    for address, ports in DEMO_LISTENERS.items():
        for port in ports:
            sock = stack.enter_context(socket.socket())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="start the example's listeners")
    parser.add_argument("--workers", type=int, default=20, help="Nornir threads (default 20)")
    args = parser.parse_args(argv)
    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": args.workers}},
        inventory={
            "plugin": "SimpleInventory",
            "options": {
                "host_file": str(HERE / "hosts.yaml"),
                "group_file": str(HERE / "groups.yaml"),
                "defaults_file": str(HERE / "defaults.yaml"),
            },
        },
        logging={"enabled": False},
    )
    with contextlib.ExitStack() as stack:
        if args.demo:
            listen(stack)
        result = nr.with_processors([ProgressBar()]).run(task=portscan, timeout=0.5)
    print_result(result)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
