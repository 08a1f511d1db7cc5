"""``python -m tests.lab up|down|status [options]``: the lab from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from .lab import LabError, down, status, up
from .truth import LabConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    defaults = LabConfig()
    parser.add_argument(
        "--hosts",
        type=int,
        default=defaults.hosts,
        help="up IPv4 hosts from 198.18.1.0 (default %(default)s)",
    )
    parser.add_argument(
        "--hosts6",
        type=int,
        default=defaults.hosts6,
        help="up IPv6 hosts from fd00:1ab:0:1::1 (default %(default)s)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=defaults.latency_ms,
        help="added round-trip time in ms, 0 for none (default %(default)s)",
    )
    parser.add_argument(
        "--loss",
        type=float,
        default=defaults.loss,
        help="percent of packets lost in each direction (default %(default)s)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=defaults.backlog,
        help="listen backlog of the listeners (default %(default)s)",
    )
    parser.add_argument(
        "--open-block",
        type=int,
        default=defaults.open_block,
        help="ports from 30000 open on every host, one shared listener each (default %(default)s)",
    )
    parser.add_argument(
        "--syn-limit",
        type=int,
        default=defaults.syn_limit,
        help="SYNs per second each target lets in, 0 for no policer (default %(default)s)",
    )
    parser.add_argument(
        "--prefix",
        default=defaults.prefix,
        help="name prefix of namespaces and veths (default %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "down":
            down(args.prefix)
            print(f"lab {args.prefix} is down")
            return 0
        if args.action == "status":
            report = status(args.prefix)
            print(json.dumps({k: report[k] for k in ("up", "problems")}, indent=1))
            if report["state"]:
                print(f"ground truth: {report['state'].get('ground_truth')}")
            return 0 if report["up"] else 1
        config = LabConfig(
            hosts=args.hosts,
            hosts6=args.hosts6,
            latency_ms=args.latency_ms,
            loss=args.loss,
            backlog=args.backlog,
            open_block=args.open_block,
            syn_limit=args.syn_limit,
            prefix=args.prefix,
        )
        path, built = up(config)
    except (LabError, ValueError) as exc:
        print(f"python -m tests.lab {args.action}: {exc}", file=sys.stderr)
        return 1
    print(
        f"lab {config.prefix} is up{'' if built else ' (already was)'}: scanner namespace "
        f"{config.client_ns}, ground truth {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
