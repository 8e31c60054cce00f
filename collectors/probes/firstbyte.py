"""When the first byte of a TCP answer reached the host: for the HTTP probe's time to first
byte.

Why not the TCP socket's own receive stamp (SO_TIMESTAMPNS): a segment that arrives while
an earlier one is still unread is merged into that earlier buffer (the kernel's
tcp_try_coalesce), and the merged buffer takes the later segment's stamp. A server that
answers and closes sends its FIN right after the answer; when the event loop reads the
first byte after the FIN has come, the stamp is the FIN's. The lab saw probes read 0.8 to
5 ms high that way, the FIN that much after the answer. A raw TCP socket gets its own copy
of each segment, with the same arrival stamp, before TCP queues (and merges) it. A socket
filter lets through only the probe's own connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass

from agent.sockfilter import (
    BPF_JEQ_K,
    BPF_LD_H_ABS,
    BPF_LD_H_IND,
    BPF_LDX_B_MSH,
    BPF_RET_K,
    Program,
    attach_filter,
)
from collectors.probes.sockets import (
    CMSG_BYTES,
    Binding,
    enable_rx_timestamps,
    open_bound,
    rx_timestamp_ns,
)

_PORTS_SEQ = struct.Struct("!HHI")
# A raw socket's copy: the IPv4 header, TCP header and data up to here are enough.
_HEAD_BYTES = 128


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment of the answer as the raw socket saw it."""

    arrived_ns: int
    seq: int
    payload_bytes: int


def port_filter(family: int, remote_port: int, local_port: int) -> Program:
    """Classic BPF accepting only TCP segments from remote_port to local_port. An IPv4 raw
    socket's copy starts at the IP header (variable length), an IPv6 one at the TCP header."""
    if family == socket.AF_INET:
        load = [(BPF_LDX_B_MSH, 0, 0, 0), (BPF_LD_H_IND, 0, 0, 0)]
        load_dport = (BPF_LD_H_IND, 0, 0, 2)
    else:
        load = [(BPF_LD_H_ABS, 0, 0, 0)]
        load_dport = (BPF_LD_H_ABS, 0, 0, 2)
    return [
        *load,
        (BPF_JEQ_K, 0, 3, remote_port),  # source port: else drop
        load_dport,
        (BPF_JEQ_K, 0, 1, local_port),  # destination port: else drop
        (BPF_RET_K, 0, 0, 0xFFFF),
        (BPF_RET_K, 0, 0, 0),
    ]


def parse_segment(family: int, data: bytes, length: int) -> tuple[int, int, int, int] | None:
    """(source port, destination port, sequence number, payload bytes) of a raw socket's
    copy of `length` bytes, of which `data` is the head; None when it is not a whole
    TCP header."""
    if family == socket.AF_INET:
        if len(data) < 20:
            return None
        ip_header = (data[0] & 0x0F) * 4
        length = min(length, int.from_bytes(data[2:4], "big"))
    else:
        ip_header = 0
    tcp = data[ip_header:]
    if len(tcp) < 20:
        return None
    source_port, destination_port, seq = _PORTS_SEQ.unpack_from(tcp)
    tcp_header = (tcp[12] >> 4) * 4
    return source_port, destination_port, seq, max(0, length - ip_header - tcp_header)


def first_byte_arrival_ns(segments: list[Segment]) -> int | None:
    """When the segment holding the answer's first byte (the lowest sequence number, in
    32-bit serial arithmetic) first arrived; None when no segment carried data. A lost
    first segment counts from its retransmission, as the reader of the stream sees it."""
    with_data = [s for s in segments if s.payload_bytes > 0]
    if not with_data:
        return None
    base = with_data[0].seq

    def offset(segment: Segment) -> int:
        return ((segment.seq - base + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)

    lowest = min(offset(s) for s in with_data)
    return min(s.arrived_ns for s in with_data if offset(s) == lowest)


class FirstByteWatch:
    """Watches one connected TCP socket's incoming segments from before its request is
    sent. Without the privilege for a raw socket (CAP_NET_RAW), `first_byte_ns` is None
    and the caller keeps the TCP socket's stamp."""

    def __init__(self, binding: Binding, family: int, conn: socket.socket) -> None:
        self.family = family
        self.remote = conn.getpeername()[:2]
        self.local_port = int(conn.getsockname()[1])
        self.raw: socket.socket | None = None
        try:
            raw = open_bound(binding, family, socket.SOCK_RAW, socket.IPPROTO_TCP)
        except OSError:
            return
        try:
            # connect(): the kernel copies to this socket only what comes from the target
            # (the filter runs on each copy), not all TCP traffic to the source address.
            raw.connect((self.remote[0], 0))
            attach_filter(raw, port_filter(family, int(self.remote[1]), self.local_port))
            enable_rx_timestamps(raw)
        except OSError:
            raw.close()
            return
        self.raw = raw

    def first_byte_ns(self) -> int | None:
        """Reads what the raw socket holds (never blocks). Call once the TCP socket has
        data: the raw copy is queued before TCP's, in the same softirq."""
        if self.raw is None:
            return None
        segments = []
        buffer = bytearray(_HEAD_BYTES)
        while True:
            try:
                length, ancdata, _flags, address = self.raw.recvmsg_into(
                    [buffer], CMSG_BYTES, socket.MSG_DONTWAIT | socket.MSG_TRUNC)
            except OSError:  # empty (EAGAIN)
                break
            parsed = parse_segment(self.family, bytes(buffer[:min(length, _HEAD_BYTES)]),
                                   length)
            arrived_ns = rx_timestamp_ns(ancdata)
            # The filter was attached after the socket opened: check the ports again.
            if (parsed is None or arrived_ns is None or address[0] != self.remote[0]
                    or parsed[:2] != (self.remote[1], self.local_port)):
                continue
            segments.append(Segment(arrived_ns, parsed[2], parsed[3]))
        return first_byte_arrival_ns(segments)

    def close(self) -> None:
        if self.raw is not None:
            with contextlib.suppress(OSError):
                self.raw.close()
            self.raw = None
