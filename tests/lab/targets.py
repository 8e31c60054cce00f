"""Services of the lab's targets: TCP accept, a DNS answer, an HTTP response.

Runs in the target namespace, bound to every address (ICMP echo is the kernel's). The
carrier's delay comes from the delay line in front, so these answer at once.
DNS: any A query is answered with ANSWER_A (TTL 60); other types get an empty NOERROR.
HTTP: any request gets `200 OK` with body `ok\\n`; on the --http-late ports the server
closes (its FIN) only LATE_CLOSE_S after the answer, as a server that finishes up after
answering does. TCP: other ports accept and close.

Run: python targets.py [--tcp 22,53,80,443] [--http 80] [--http-late 8080]
                       [--answer 203.0.113.10] [--udp-bind A,B]
(standalone: no project imports)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import struct
import sys
import time

HTTP_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                 b"Connection: close\r\nServer: egress-lab\r\n\r\nok\n")
LATE_CLOSE_S = 0.04


def dns_answer(query: bytes, answer_a: bytes) -> bytes | None:
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount < 1:
        return None
    pos = 12
    while pos < len(query) and query[pos] != 0:
        if query[pos] & 0xC0:
            return None
        pos += query[pos] + 1
    if pos + 5 > len(query):
        return None
    qname = query[12:pos + 1]
    qtype, qclass = struct.unpack("!HH", query[pos + 1:pos + 5])
    question = qname + struct.pack("!HH", qtype, qclass)
    rd = flags & 0x0100
    answers = b""
    ancount = 0
    if qtype == 1 and qclass == 1:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + answer_a
        ancount = 1
    header = struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | rd | 0x0080, 1, ancount, 0, 0)
    return header + question + answers


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tcp", default="22,53,80,443")
    parser.add_argument("--http", default="80")
    parser.add_argument("--http-late", default="8080")
    parser.add_argument("--answer", default="203.0.113.10")
    parser.add_argument("--udp-bind", default="0.0.0.0",
                        help="addresses for DNS, comma-separated: one socket each, so each "
                             "answer comes from the address asked (connected clients)")
    args = parser.parse_args()
    # The lab stands in for a network, which a busy agent host does not slow down: real-time
    # priority runs this process the moment a packet is due, ahead of every busy process
    # (nice alone left it 10+ ms late with three busy processes on two cores; the kernel
    # still keeps 5 % of each second for the others). Nice where real-time is not allowed.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
    except OSError:
        with contextlib.suppress(OSError):
            os.nice(-10)
    answer_a = socket.inet_aton(args.answer)
    late_ports = {int(p) for p in args.http_late.split(",") if p}
    http_ports = {int(p) for p in args.http.split(",") if p} | late_ports
    sel = selectors.DefaultSelector()

    def on_term(_sig: int, _frm: object) -> None:
        raise SystemExit(0)  # interrupts select() at once

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    for address in args.udp_bind.split(","):
        udp = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                            socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((address, 53))
        udp.setblocking(False)
        sel.register(udp, selectors.EVENT_READ, ("udp53", None))
    for port in sorted({int(p) for p in args.tcp.split(",") if p} | http_ports):
        lsock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)  # dual-stack
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        lsock.bind(("::", port))
        lsock.listen(1024)
        lsock.setblocking(False)
        sel.register(lsock, selectors.EVENT_READ, ("listen", port))
    buffers: dict[socket.socket, bytes] = {}
    closing: list[tuple[float, socket.socket]] = []  # (when, answered socket), in order
    while True:
        while closing and closing[0][0] <= time.monotonic():
            closing.pop(0)[1].close()
        wait_s = min(1.0, closing[0][0] - time.monotonic()) if closing else 1.0
        try:
            events = sel.select(max(wait_s, 0.0))
        except InterruptedError:
            continue
        for key, _ in events:
            kind, port = key.data
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if kind == "udp53":
                for _ in range(64):
                    try:
                        data, peer = sock.recvfrom(4096)
                    except BlockingIOError:
                        break
                    reply = dns_answer(data, answer_a)
                    if reply:
                        with contextlib.suppress(OSError):
                            sock.sendto(reply, peer)
            elif kind == "listen":
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    continue
                if port in http_ports:
                    conn.setblocking(False)
                    buffers[conn] = b""
                    sel.register(conn, selectors.EVENT_READ, ("http", port))
                else:
                    conn.close()
            elif kind == "http":
                try:
                    chunk = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                data = buffers.get(sock, b"") + chunk
                if chunk and b"\r\n\r\n" not in data and len(data) < 65536:
                    buffers[sock] = data
                    continue
                if chunk:
                    with contextlib.suppress(OSError):
                        sock.sendall(HTTP_RESPONSE)
                sel.unregister(sock)
                buffers.pop(sock, None)
                if chunk and port in late_ports:
                    closing.append((time.monotonic() + LATE_CLOSE_S, sock))
                else:
                    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
