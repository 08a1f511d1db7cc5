"""Drive a ``UdpProber`` in this process, for the tests: ``python -m tests.engine.udp_driver
JSON`` with ``{"config": {WorkerConfig fields}, "units": [[host_id, address, [ports]], ...],
"limit": seconds, "deadline": seconds or absent}``. Prints one JSON object: each unit's
``UnitDone`` fields, the ports reported as progress and the wall time. Imports gevent:
never import it in the test process."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from gevent.event import Event

from nornir_portscan.engine.protocol import Progressed, Unit, UnitDone, WorkerConfig
from nornir_portscan.engine.udp import UdpProber


def main() -> None:
    spec = json.loads(sys.argv[1])
    config = WorkerConfig(**spec["config"])
    deadline = spec.get("deadline")  # seconds from now: the host timeout
    at = None if deadline is None else time.monotonic() + deadline
    units = [
        Unit(unit_id, host_id, address, tuple(ports), None, None, at, protocol="udp")
        for unit_id, (host_id, address, ports) in enumerate(spec["units"])
    ]
    done: dict[int, dict[str, Any]] = {}
    progress = [0]
    finished = Event()

    def send(message: object) -> None:
        if isinstance(message, Progressed):
            progress[0] += message.ports
        elif isinstance(message, UnitDone):
            done[message.unit_id] = {
                "ports": message.ports,
                "closed": message.closed_count,
                "probes": message.probes_sent,
                "unscanned": message.unscanned,
                "rate_limited": message.rate_limited,
                "done_at": round(time.monotonic() - started, 3),
            }
            if len(done) == len(units):
                finished.set()

    started = time.monotonic()
    prober = UdpProber(config, send)
    for unit in units:
        prober.add(unit)
    finished.wait(spec.get("limit", 60))
    prober.close()
    print(
        json.dumps(
            {
                "units": [done.get(i) for i in range(len(units))],
                "progress": progress[0],
                "elapsed": time.monotonic() - started,
            }
        )
    )


if __name__ == "__main__":
    main()
