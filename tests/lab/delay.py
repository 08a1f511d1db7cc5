"""Constant added latency without netem: hold NFQUEUE'd packets in the kernel, release them later.

Run as a script in the client namespace: ``python delay.py QUEUE DELAY_MS READY_PATH``. The
iptables rule ``-j NFQUEUE --queue-num QUEUE --queue-bypass`` sends every packet arriving from the
lab to queue QUEUE. The kernel keeps each packet; this program only learns its id (copy mode META,
no payload), and once the packet is DELAY_MS old it accepts *all* ids up to it with one
``NFQNL_MSG_VERDICT_BATCH`` message. Packets keep their order, cost one small netlink read each,
and a whole burst is released by one write, which keeps the CPU cost low.

Raw netlink with the standard library only, so a fresh machine needs no libnetfilter-queue.
If this process dies the kernel drops what it held, and ``--queue-bypass`` lets later packets
through undelayed.
"""

from __future__ import annotations

import collections
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_ACCEPT = 1
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
QUEUE_MAXLEN = 65536
# Packets due within this much of the first due one go out with it: fewer wake-ups, and the
# added latency stays within 0.2 ms of the asked one.
SLACK = 0.0002


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * ((4 - size % 4) % 4)


def _message(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _request(sock: socket.socket, payload: bytes) -> None:
    """Send a config message and wait for its ack (raises OSError on a netlink error)."""
    sock.send(payload)
    reply = sock.recv(65536)
    _, kind = struct.unpack_from("=IH", reply)
    if kind == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", reply, 16)
        if error:
            raise OSError(-error, f"nfqueue config: {os.strerror(-error)}")


def open_queue(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    # Room for a burst of queued-packet notices; ENOBUFS would only mean drops, not report them.
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    cmd = struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0)
    _request(
        sock,
        _message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_CMD, cmd), NLM_F_REQUEST | NLM_F_ACK, 1),
    )
    params = struct.pack(">IB", 0, NFQNL_COPY_META)
    maxlen = struct.pack(">I", QUEUE_MAXLEN)
    attrs = _attr(NFQA_CFG_PARAMS, params) + _attr(NFQA_CFG_QUEUE_MAXLEN, maxlen)
    _request(sock, _message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, 2))
    sock.setblocking(False)
    return sock


def _packet_ids(buf: memoryview, size: int) -> list[int]:
    """Packet ids of every NFQNL_MSG_PACKET in one netlink read."""
    ids = []
    off = 0
    while off + 16 <= size:
        length, kind = struct.unpack_from("=IH", buf, off)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            pos, end = off + 20, min(off + length, size)  # past nlmsghdr (16) and nfgenmsg (4)
            while pos + 4 <= end:
                attr_size, attr_kind = struct.unpack_from("=HH", buf, pos)
                if attr_size < 4:
                    break
                if attr_kind & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(int(struct.unpack_from(">I", buf, pos + 4)[0]))
                    break
                pos += (attr_size + 3) & ~3
        off += (length + 3) & ~3
    return ids


def run(queue: int, delay: float, ready: Path) -> int:
    sock = open_queue(queue)
    running = True

    def stop(signum: int, frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready.write_text(f"{os.getpid()}\n")

    # One entry per wake-up, not per packet: (due time, highest packet id read in that wake-up).
    pending: collections.deque[tuple[float, int]] = collections.deque()
    buf = bytearray(65536)
    view = memoryview(buf)
    recv_into = sock.recv_into
    unpack_id = struct.Struct(">I").unpack_from
    queued = 0
    fd = sock.fileno()
    while running:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else 1.0
        select.select([fd], [], [], timeout)
        now = time.monotonic()
        last = -1
        while True:
            try:
                size = recv_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            # Fast path: one NFQNL_MSG_PACKET whose first attribute is NFQA_PACKET_HDR, which is
            # how the kernel builds them; anything else goes through the full parser.
            if size >= 28 and buf[5] == 3 and buf[4] == 0 and buf[22] == 1 and buf[23] == 0:
                last = unpack_id(buf, 24)[0]
                queued += 1
            else:
                for packet_id in _packet_ids(view, size):
                    last = packet_id
                    queued += 1
        if last >= 0:
            pending.append((now + delay, last))
        last = -1
        limit = time.monotonic() + SLACK
        while pending and pending[0][0] <= limit:
            last = pending.popleft()[1]
        if last >= 0:
            verdict = struct.pack(">II", NF_ACCEPT, last)
            sock.send(_message(NFQNL_MSG_VERDICT_BATCH, queue, _attr(NFQA_VERDICT_HDR, verdict)))
    print(f"delay: released {queued} packets", flush=True)
    return 0


def main(argv: list[str]) -> int:
    return run(int(argv[1]), float(argv[2]) / 1000.0, Path(argv[3]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
