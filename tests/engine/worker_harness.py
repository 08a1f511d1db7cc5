"""Drive one worker's ``Prober`` on its own gevent hub and print what it reported, as JSON.

Run as a script in a fresh interpreter (``python tests/engine/worker_harness.py SPEC``, where
``SPEC`` is JSON), inside a namespace when the test needs one: the worker imports gevent, which
never enters the pytest process. ``SPEC``: ``{"units": [[address, [ports...]], ...]}`` and
optionally ``"config"`` (``WorkerConfig`` fields), ``"limit"`` (seconds for the whole run),
``"listen"`` (``[address, port]`` pairs to listen on, never accepted), ``"stop_after"``
(seconds: the harness then sends itself SIGSTOP, and a helper process sends SIGCONT
``"stopped_for"`` seconds later), ``"then"`` (``{"run": [argv...], "units": [...]}``: once
the units are done, these commands run and these units follow, on the same prober) and
``"nofile_extra"`` (once the prober exists, a descriptor
table full but for this many) and ``"peer_after"`` (seconds: every ``getpeername`` waits
this long first, so that a peer's reset right after the handshake lands before it).
Output: ``{"units": [{"address", "ports": [[port, state, reason, attempts]], "closed",
"probes", "unscanned"}], "done": bool, "elapsed": seconds from the first unit to the last
result}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time

from gevent import get_hub, sleep
from gevent.event import Event

from nornir_portscan.engine.prober import Prober
from nornir_portscan.engine.protocol import Unit, UnitDone, WorkerConfig

DEFAULTS = {
    "concurrency": 50,
    "rate": None,
    "host_concurrency": None,
    "min_timeout": 0.2,
    "max_timeout": 1.0,
    "adaptive": True,
    "retries": 1,
    "include_closed": True,
}


def main(spec: dict) -> None:
    config = WorkerConfig(**{**DEFAULTS, **spec.get("config", {})})
    units = spec["units"]
    finished = Event()
    done: dict[int, UnitDone] = {}

    def send(message: object) -> None:
        if isinstance(message, UnitDone):
            done[message.unit_id] = message
            if len(done) == len(units):
                finished.set()

    listening = []
    for address, port in spec.get("listen", []):  # the kernel completes their handshakes
        listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        listener.bind((address, port))
        listener.listen(1024)
        listening.append(listener)
    if "peer_after" in spec:
        getpeername = socket.socket.getpeername

        def late_getpeername(sock: socket.socket) -> object:
            time.sleep(spec["peer_after"])
            return getpeername(sock)

        socket.socket.getpeername = late_getpeername  # type: ignore[method-assign]
    prober = Prober(config, send)
    if "nofile_extra" in spec:
        # a full descriptor table but for this many: fillers up to a low limit, some freed
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        fillers = []
        with contextlib.suppress(OSError):
            while True:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        for _ in range(spec["nofile_extra"]):
            os.close(fillers.pop())
    started = time.monotonic()
    for unit_id, (address, ports) in enumerate(units):
        prober.add(Unit(unit_id, unit_id, address, tuple(ports), None, None, None))
    if "stop_after" in spec:
        sleep(spec["stop_after"])
        # the continuer waits, then wakes this process: a stalled worker (a laptop lid, a
        # debugger, a loaded machine), its answers arriving while it cannot read them
        subprocess.Popen(
            [sys.executable, "-c", "import os, sys, time; time.sleep(float(sys.argv[2]));"
             "os.kill(int(sys.argv[1]), 18)", str(os.getpid()), str(spec["stopped_for"])]
        )  # fmt: skip
        os.kill(os.getpid(), signal.SIGSTOP)
    finished.wait(spec.get("limit", 30))
    then = spec.get("then")
    if then is not None and finished.is_set():  # the same prober, as a scan service's is
        for command in then["run"]:
            subprocess.run(command, check=True, capture_output=True)
        units = units + then["units"]
        finished.clear()
        for unit_id, (address, ports) in enumerate(units):
            if unit_id not in done:
                prober.add(Unit(unit_id, unit_id, address, tuple(ports), None, None, None))
        finished.wait(spec.get("limit", 30))
    elapsed = time.monotonic() - started
    out = []
    for unit_id, (address, _) in enumerate(units):
        result = done.get(unit_id)
        if result is None:
            out.append({"address": address, "missing": True})
            continue
        out.append(
            {
                "address": address,
                "ports": sorted([p[0], p[1], p[2], p[4]] for p in result.ports),
                "closed": result.closed_count,
                "probes": result.probes_sent,
                "unscanned": result.unscanned,
            }
        )
    prober.close()
    get_hub()  # the hub stays; the process exits below
    print(json.dumps({"units": out, "done": finished.is_set(), "elapsed": elapsed}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
    sys.stdout.flush()
    os._exit(0)
