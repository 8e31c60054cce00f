"""Target → address, for the engine, traceroute and the CLI alike (one resolver).

An address literal is taken as is. A name goes through the system resolver
(getaddrinfo, so /etc/hosts and nsswitch apply), asked again every round so a moved name
is followed. With both A and AAAA records the family the carrier can send from wins;
when it has both sources or none (the default route), IPv4.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from collectors.probes.sockets import Binding


class ResolveError(Exception):
    """The target is neither an address nor a name that resolves (one line, says why)."""


def preferred_family(binding: Binding) -> int | None:
    """The family a carrier can use for a name with both A and AAAA (None: either)."""
    if binding.source4 is None and binding.source6 is not None:
        return socket.AF_INET6
    if binding.source4 is not None:
        return socket.AF_INET
    return None


def pick_address(addresses: list[tuple[int, str]], want: int | None) -> str | None:
    """The first address of the wanted family, else the first IPv4, else the first IPv6
    (`addresses` as getaddrinfo ordered them)."""
    for family in (want, socket.AF_INET, socket.AF_INET6):
        if family is None:
            continue
        for fam, address in addresses:
            if fam == family:
                return address
    return None


async def resolve(target: str, binding: Binding | None = None) -> str:
    """The address to probe `target` at through `binding`; raises ResolveError."""
    try:
        return str(ipaddress.ip_address(target))
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target, None, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(f"cannot resolve target {target!r}: {exc}") from None
    address = pick_address([(info[0], str(info[4][0])) for info in infos],
                           preferred_family(binding) if binding else None)
    if address is None:
        raise ResolveError(f"cannot resolve target {target!r}: no address")
    return address
