"""What a route change that touches ours or a watched destination means: origin
mismatch, more-specific of ours, path change toward a watched destination.

Only routes the prefix index marks as interesting reach these (collectors/bgp/prefixes.py)."""

from __future__ import annotations

from agent.points import Point
from collectors.bgp.events import EventLog
from collectors.bgp.metrics import EVENT_MORE_SPECIFIC, EVENT_ORIGIN_MISMATCH, EVENT_PATH_CHANGE
from collectors.bgp.prefixes import PrefixIndex
from collectors.bgp.rib import Attrs, format_prefix
from collectors.bgp.session import Session


class Detectors:
    def __init__(self, index: PrefixIndex, local_as: int, log: EventLog) -> None:
        self.index = index
        self.local_as = local_as
        self.log = log

    def changed(self, session: Session, family: int, network: int, length: int,
                old: Attrs | None, new: Attrs | None, now: float) -> list[Point]:
        """A prefix touching ours or a watched destination changed in one carrier."""
        points: list[Point] = []
        key = (network << 8) | length
        text = format_prefix(family, key)
        own = self.index.own_by_key[family].get(key)
        if own is not None:
            if new is not None and new.origin_as != self.local_as and (
                old is None or old.origin_as != new.origin_as
            ):
                points.append(self.log.event(
                    session, EVENT_ORIGIN_MISMATCH, now, prefix=text, attrs=new,
                    detail=f"our prefix originated by AS{new.origin_as}, expected "
                           f"AS{self.local_as}"))
        elif new is not None and (old is None or old.origin_as != new.origin_as):
            for mine in self.index.own:
                if mine.length < length and mine.contains(family, network, length):
                    points.append(self.log.event(
                        session, EVENT_MORE_SPECIFIC, now, prefix=text, attrs=new,
                        detail=f"more-specific of our {mine.text} originated by "
                               f"AS{new.origin_as}"))
                    break
        watchers = self.index.watch_by_ancestor[family].get(key)
        if watchers:
            points.extend(self.recheck_watches(session, now, watchers))
        return points

    def recheck_watches(self, session: Session, now: float,
                        indexes: list[int] | None = None) -> list[Point]:
        points: list[Point] = []
        watch_list = self.index.watch
        for index in indexes if indexes is not None else range(len(watch_list)):
            watch = watch_list[index]
            best = session.rib.table(watch.family).lookup(watch.network, watch.length)
            before = session.watch_best.get(index)
            session.watch_best[index] = best
            if _same_path(before, best):
                continue
            was = f"{format_prefix(watch.family, before[0])} [{before[1].as_path}]" \
                if before else "no route"
            now_text = f"{format_prefix(watch.family, best[0])} [{best[1].as_path}]" \
                if best else "no route"
            points.append(self.log.event(session, EVENT_PATH_CHANGE, now, prefix=watch.text,
                                         attrs=best[1] if best else None,
                                         detail=f"{was} -> {now_text}"))
        return points


def _same_path(a: tuple[int, Attrs] | None, b: tuple[int, Attrs] | None) -> bool:
    if a is None or b is None:
        return a is b
    return a[0] == b[0] and a[1].as_path == b[1].as_path
