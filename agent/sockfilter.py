"""Classic BPF socket filters (linux/filter.h): a program of (code, jt, jf, k) instructions
attached with SO_ATTACH_FILTER, so the kernel drops what a socket does not want before it
is queued. Used by the netlink route subscription and the HTTP probe's raw socket."""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = 26
BPF_LD_B_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS: A = the byte at [k]
BPF_LD_H_ABS = 0x28  # BPF_LD | BPF_H | BPF_ABS: A = the u16 at [k]
BPF_LD_H_IND = 0x48  # BPF_LD | BPF_H | BPF_IND: A = the u16 at [X + k]
BPF_LDX_B_MSH = 0xB1  # BPF_LDX | BPF_B | BPF_MSH: X = 4 * ([k] & 0xf), an IPv4 header length
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: if A == k skip jt, else skip jf
BPF_RET_K = 0x06  # BPF_RET | BPF_K: keep that many bytes (0: drop)
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k

Program = list[tuple[int, int, int, int]]


def attach_filter(sock: socket.socket, program: Program) -> None:
    """Attach `program` to `sock` (raises OSError)."""
    code = b"".join(_INSN.pack(*insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))  # alive until the kernel copied it
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
