"""Audit the example inventory with the ``portscan`` Nornir task and print the result.

    python examples/nornir/scan.py --demo           # the listeners the inventory expects
    python examples/nornir/scan.py --demo=before --report before.json
    python examples/nornir/scan.py --demo=rollout --wait 10 --baseline before.json

The inventory (hosts.yaml, groups.yaml, defaults.yaml) holds loopback hosts only, with their
expectations (``expect_open``, ``allowed_open``) under ``portscan:``. ``--demo`` starts the
listeners it expects; ``--demo=before`` leaves out web2's 18443, as before a change (web2
fails: 18443 closed, expected open); ``--demo=rollout`` opens it a second in, like a change
rolling out, which ``--wait`` waits for; against the snapshot taken before, 18443 opened, as
web2's expectations want, so nothing fails. Without ``--demo`` nothing listens and every
expected open port fails. Exit status 1 if a host failed.

Each host is scanned by its own task (``nr.run(task=portscan)``), on Nornir's threads. A report
file is of a whole run, so ``--report`` scans the inventory in one engine run instead
(``scan_inventory(nr, reports={"json": ...})``), with the same Result per host.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
from pathlib import Path

from nornir import InitNornir
from nornir_utils.plugins.functions import print_result

from nornir_portscan import ProgressBar, portscan, scan_inventory

HERE = Path(__file__).resolve().parent
DEMO_LISTENERS = {
    "127.0.0.11": [18080, 18443],
    "127.0.0.12": [18080, 18443, 18444],  # 18444 is excluded for web2, so it is not scanned
    "127.0.0.21": [15432],
    "127.0.0.31": [18022],
}
CHANGE = ("127.0.0.12", 18443)  # what the change adds: closed before, open after
ROLLOUT_AFTER = 1.0  # seconds after the start that --demo=rollout opens it


def listen(stack: contextlib.ExitStack, address: str, port: int) -> None:
    """Listen on ``address:port`` until ``stack`` closes; the kernel completes handshakes
    without accept()."""
    sock = stack.enter_context(socket.socket())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(16)


def start_demo(stack: contextlib.ExitStack, stage: str) -> None:
    """Open the demo listeners: all of them (``after``), all but ``CHANGE`` (``before``), or
    ``CHANGE`` a little later (``rollout``)."""
    for address, ports in DEMO_LISTENERS.items():
        for port in ports:
            if (address, port) != CHANGE or stage == "after":
                listen(stack, address, port)
    if stage == "rollout":
        timer = threading.Timer(ROLLOUT_AFTER, listen, (stack, *CHANGE))
        timer.start()
        stack.callback(timer.join)  # before the stack closes the sockets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--demo",
        nargs="?",
        const="after",
        choices=["before", "rollout", "after"],
        help="start the example's listeners: before, during (rollout) or after a change "
        "that opens web2's 18443 (default: after)",
    )
    parser.add_argument("--workers", type=int, default=20, help="Nornir threads (default 20)")
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="scan the whole inventory in one engine run and save its JSON report (a baseline)",
    )
    parser.add_argument("--baseline", metavar="FILE", help="compare with a saved JSON report")
    parser.add_argument(
        "--wait", metavar="SECONDS", type=float, help="wait up to SECONDS for the expectations"
    )
    args = parser.parse_args(argv)
    audit = {
        "baseline": args.baseline,
        "wait": args.wait is not None,
        "wait_timeout": args.wait or 60,
        "interval": 0.5,
    }
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
            start_demo(stack, args.demo)
        if args.report:
            result = scan_inventory(nr, reports={"json": args.report}, timeout=0.5, **audit)
        else:
            result = nr.with_processors([ProgressBar()]).run(task=portscan, timeout=0.5, **audit)
    print_result(result)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
