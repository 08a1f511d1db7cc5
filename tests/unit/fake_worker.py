"""A stand-in worker for the scheduler's unit tests: no sockets, answers from a rule.

Port p is open when p % 7 == 0, else closed. FAKE_DIE_ON_PORT=N makes it exit when handed a
unit holding port N; FAKE_DIE_ONCE=path makes that happen only while path does not exist.
FAKE_HANG_ON_PORT=N makes it never answer a unit holding port N (it keeps serving the others).
A UDP unit: p % 7 == 0 open (udp-response), else p % 5 == 0 open|filtered, else closed; with
FAKE_UDP_RATE_LIMITED=1 its UnitDone says rate_limited; FAKE_UDP_UNSCANNED=N leaves its ports
from N up unscanned (as a host timeout does).
"""

import os
import sys

from nornir_portscan.engine.protocol import (
    STOP,
    FrameReader,
    Progressed,
    Unit,
    UnitDone,
    WorkerConfig,
    WorkerReady,
    frame,
)

die_on = int(os.environ.get("FAKE_DIE_ON_PORT", "0"))
hang_on = int(os.environ.get("FAKE_HANG_ON_PORT", "0"))
once = os.environ.get("FAKE_DIE_ONCE")
udp_limited = os.environ.get("FAKE_UDP_RATE_LIMITED") == "1"
udp_unscanned = int(os.environ.get("FAKE_UDP_UNSCANNED", "0"))


def _udp_done(unit: Unit) -> UnitDone:
    unscanned = [p for p in unit.ports if udp_unscanned and p >= udp_unscanned]
    probed = [p for p in unit.ports if p not in unscanned]
    results = [(p, "open", "udp-response", 0.1, 1) for p in probed if p % 7 == 0]
    results += [
        (p, "open|filtered", "no-response", None, 2) for p in probed if p % 5 == 0 and p % 7
    ]
    closed = len(probed) - len(results)
    return UnitDone(
        unit.unit_id, results, closed, len(probed), 0.5, 0.2, unscanned, rate_limited=udp_limited
    )


def _may_die() -> bool:
    """With FAKE_DIE_ONCE, only the first worker to claim the path dies: two workers handed
    such a unit at once would both have seen it missing (and a unit re-run on the second one
    would have died twice)."""
    if not once:
        return True
    try:
        os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


reader = FrameReader()
out = sys.stdout.buffer
while True:
    data = os.read(0, 65536)
    if not data:
        break
    for message in reader.feed(data):
        if isinstance(message, WorkerConfig):
            out.write(frame(WorkerReady(message.concurrency, None)))
        elif isinstance(message, Unit):
            if die_on in message.ports and _may_die():
                os._exit(1)
            if hang_on in message.ports:
                continue
            out.write(frame(Progressed(len(message.ports))))
            if message.protocol == "udp":
                out.write(frame(_udp_done(message)))
                out.flush()
                continue
            opened = [(p, "open", "syn-ack", 0.1, 1) for p in message.ports if p % 7 == 0]
            out.write(
                frame(
                    UnitDone(
                        message.unit_id,
                        opened,
                        len(message.ports) - len(opened),
                        len(message.ports),
                        0.0001,
                        0.00005,
                        [],
                    )
                )
            )
        elif message == STOP:
            sys.exit(0)
        out.flush()
