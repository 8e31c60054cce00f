"""A packet capture of one interface with the kernel's timestamps (AF_PACKET).

The lab's truth for RTTs: an RTT the agent reports is right only if it matches what its
uplink saw. This process opens an AF_PACKET socket on the interface (in the namespace it is
started in), asks for SO_TIMESTAMPNS and writes every frame, both directions, to a file:
the timestamp is the one the kernel stamped when the frame passed the interface's tap
(outgoing: handed to the device; incoming: received from it), the same clock (REALTIME)
the agent's sockets use, and independent of when this process got round to reading it.
So the capture stays exact on a loaded machine: a late reader only delays the file.

Output records: `<qBH` (timestamp ns, 1 if outgoing else 0, length) then that many bytes
of the IP packet (link header removed, at most --snap bytes). On SIGTERM or SIGINT the
queue is drained, the kernel's drop count printed as `dropped N` and the process exits 0.

Run: python capture.py --iface NAME --out FILE [--snap 512]   (standalone: no project imports)
Prints `ready` once the socket is bound: every frame from then on is in the file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
RECORD = struct.Struct("<qBH")
TIMESPEC = struct.Struct("@qq")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--snap", type=int, default=512)
    args = parser.parse_args()
    with contextlib.suppress(OSError):  # drain promptly on a busy machine
        os.nice(-10)
    # protocol 0 until bound: no frame of another interface is queued before bind()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((args.iface, ETH_P_ALL))
    stopping = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cmsg_bytes = socket.CMSG_SPACE(TIMESPEC.size)
    with open(args.out, "wb") as out:
        print("ready", flush=True)
        while True:
            sock.setblocking(not stopping)
            if not stopping:
                with contextlib.suppress(InterruptedError):
                    select.select([sock], [], [], 0.2)
            try:
                data, ancdata, _flags, address = sock.recvmsg(args.snap, cmsg_bytes,
                                                              socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                if stopping:
                    break
                continue
            stamp_ns = 0
            for level, kind, blob in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = TIMESPEC.unpack_from(blob)
                    stamp_ns = seconds * 1_000_000_000 + nanoseconds
            outgoing = 1 if address[2] == PACKET_OUTGOING else 0
            out.write(RECORD.pack(stamp_ns, outgoing, len(data)) + data)
        stats = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _packets, drops = struct.unpack("II", stats)
    print(f"dropped {drops}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
