"""A stand-in worker for the scheduler's unit tests: no sockets, answers from a rule.

Port p is open when p % 7 == 0, else closed. FAKE_DIE_ON_PORT=N makes it exit when handed a
unit holding port N; FAKE_DIE_ONCE=path makes that happen only while path does not exist.
FAKE_HANG_ON_PORT=N makes it never answer a unit holding port N (it keeps serving the others).
"""

import os
import sys
from pathlib import Path

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
            if die_on in message.ports and not (once and Path(once).exists()):
                if once:
                    Path(once).touch()
                os._exit(1)
            if hang_on in message.ports:
                continue
            opened = [(p, "open", "syn-ack", 0.1, 1) for p in message.ports if p % 7 == 0]
            out.write(frame(Progressed(len(message.ports))))
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
