"""Edges that say nothing, on loopback: a probe whose SYN a full accept queue dropped is woken
for no reason, again and again, and still reports the listener open once the queue has room
(TCP retransmits the SYN after 1 s); a wake-up of an idle pool does nothing. Run in a fresh
interpreter: the worker imports gevent, which never enters the test process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, socket
    from gevent import sleep, spawn_later
    from gevent.event import Event
    from nornir_portscan.engine.protocol import Unit, UnitDone, WorkerConfig
    from nornir_portscan.engine.prober import Prober

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # the accept queue full: the next SYN is dropped
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    sleep(0.05)

    done, sent = Event(), []
    def send(message):
        if isinstance(message, UnitDone):
            sent.append(message)
            done.set()

    # a deadline past TCP's first retransmission: the probe itself must get through
    config = WorkerConfig(concurrency=4, rate=None, host_concurrency=None, min_timeout=4.0,
                          max_timeout=4.0, adaptive=False, retries=0, include_closed=True)
    prober = Prober(config, send)
    prober._drain()  # an idle pool woken: nothing to do
    prober.add(Unit(1, 1, "127.0.0.1", (port,), None, None, None))
    (slot,) = [s for s in prober.slots if s.job is not None]
    for _ in range(5):  # woken for nothing: the SYN is still unanswered
        prober._on_writable(slot)
        prober._drain()
    early = [m.ports for m in sent]

    def make_room():  # the other clients go away, the listener accepts again
        for filler in fillers:
            filler.close()
        while not done.is_set():
            try:
                listener.accept()[0].close()
            except BlockingIOError:
                sleep(0.01)
    listener.setblocking(False)
    spawn_later(0.2, make_room)
    done.wait(8)
    (result,) = sent
    print(json.dumps({"early": early, "ports": result.ports, "in_flight": slot.job is not None}))
    prober.close()
    """
)


def test_spurious_edges_leave_a_dropped_syn_in_flight_until_it_gets_through() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    seen = json.loads(out)
    assert seen["early"] == []  # no answer from an edge that said nothing
    ((_, state, reason, _, attempts),) = seen["ports"]
    assert (state, reason, attempts) == ("open", "syn-ack", 1)  # the retransmitted SYN got in
    assert seen["in_flight"] is False
