"""The link state of every interface (ifindex → LinkState) for the polled `link`
collector, kept current without a full dump per poll.

It is filled by one RTM_GETLINK dump at start and kept current by the link notifications
(RTNLGRP_LINK) queued on a subscribed socket and drained at each poll; a full RTM_GETLINK
dump (~40 ms for 5,000, the kernel's cost of 1 KB per link) happens again only when the
notifications overflowed (ENOBUFS) or the counters show interfaces the cache does not know.
"""

from __future__ import annotations

from collections.abc import KeysView

from collectors.links.netlink import (
    RTM_DELLINK,
    RTM_NEWLINK,
    RTMGRP_LINK,
    RtNetlink,
)
from collectors.links.records import LinkState, link_state


class LinkCache:
    """ifindex → LinkState, current through link notifications drained on demand."""

    def __init__(self, netns: str | None = None) -> None:
        self.nl = RtNetlink(netns)
        self.events = RtNetlink(netns, groups=RTMGRP_LINK)
        self.events.sock.setblocking(False)
        self.links: dict[int, LinkState] = {}
        self.changed: set[int] = set()  # indices whose state changed since the last take
        self.resyncs = -1  # full dumps after the first one
        self.resync()

    def resync(self) -> None:
        self.resyncs += 1
        self._drain()  # what is queued predates the dump
        before = set(self.links)
        self.links = self.nl.dump_links()
        self.changed |= before | set(self.links)  # gone ones too: their rates are dropped

    def _drain(self) -> bool:
        """Apply queued notifications; False if some were lost (ENOBUFS)."""
        notices = self.events.drain()
        for msg in notices.messages:
            mtype = msg["header"]["type"]
            if mtype == RTM_NEWLINK:
                state = link_state(msg)
                self.links[state.index] = state
                self.changed.add(state.index)
            elif mtype == RTM_DELLINK:
                index = int(msg["index"])
                self.links.pop(index, None)
                self.changed.add(index)
        return not notices.lost

    def refresh(self, present: KeysView[int]) -> None:
        """Bring the cache up to date with notifications and the interfaces `present`
        (the keys of a counter dump: set operations on dict views run in C, ~1 ms less
        per poll at 5,000 interfaces than a Python loop)."""
        if not self._drain():
            self.resync()
            return
        links = self.links
        missing = present - links.keys()
        if len(missing) > 64:
            self.resync()
            return
        for index in missing:
            state = self.nl.get_link(index)
            if state is not None:
                links[index] = state
                self.changed.add(index)
        if len(links) != len(present):
            for index in links.keys() - present:
                del links[index]
                self.changed.add(index)

    def by_name(self, name: str) -> LinkState | None:
        for state in self.links.values():
            if state.name == name:
                return state
        return None

    def close(self) -> None:
        self.nl.close()
        self.events.close()
