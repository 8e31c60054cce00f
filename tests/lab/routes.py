"""Route sets for the lab's carriers, written as BIRD 2 static routes.

A route is (prefix, as_path, communities). BIRD prepends the carrier's own AS when it
exports to the agent, so `as_path` here is what follows the carrier's AS.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MRT_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mrt" / "updates.et-header.2015.gz"
TRANSIT_ASES = (3356, 174, 2914, 1299, 6939, 6453, 3257)
TARGET_AS = 64496  # documentation ASN: the network of the lab's targets
WATCH_PREFIX = "203.0.113.0/24"


@dataclass(frozen=True)
class Route:
    prefix: str
    as_path: tuple[int, ...] = ()
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    med: int | None = None

    @property
    def is_v6(self) -> bool:
        return ":" in self.prefix


@dataclass
class RouteSet:
    v4: list[Route] = field(default_factory=list)
    v6: list[Route] = field(default_factory=list)

    def add(self, route: Route) -> None:
        (self.v6 if route.is_v6 else self.v4).append(route)

    def counts(self) -> tuple[int, int]:
        return len(self.v4), len(self.v6)


def bird_route(route: Route) -> str:
    """One BIRD static route with BGP attributes (prepends in reverse path order)."""
    parts = ["bgp_origin = ORIGIN_IGP;"]
    parts.extend(f"bgp_path.prepend({asn});" for asn in reversed(route.as_path))
    parts.extend(f"bgp_community.add(({a},{b}));" for a, b in route.communities)
    parts.extend(f"bgp_large_community.add(({a},{b},{c}));"
                 for a, b, c in route.large_communities)
    if route.med is not None:
        parts.append(f"bgp_med = {route.med};")
    return f"route {route.prefix} blackhole {{ {' '.join(parts)} }};\n"


def write_bird_routes(routes: Iterable[Route], path: Path) -> int:
    """Write routes as BIRD static route lines; returns how many."""
    count = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        for route in routes:
            fh.write(bird_route(route))
            count += 1
    os.replace(tmp, path)
    return count


def synthetic(carrier_as: int, n: int, v6_every: int = 10) -> RouteSet:
    """n prefixes (every v6_every-th an IPv6 /48) with realistic-looking attributes:
    path [transit, (origin prepends), origin], communities of the carrier, some MED and
    large communities. Deterministic: same n, same routes (per carrier communities)."""
    routes = RouteSet()
    k4 = k6 = 0
    for k in range(n):
        transit = TRANSIT_ASES[k % len(TRANSIT_ASES)]
        origin = 1000 + (k * 7919) % 60000
        if origin in (carrier_as, transit, TARGET_AS):
            origin += 1
        path = [transit]
        if k % 7 == 3:
            path += [origin, origin]  # origin prepends
        elif k % 5 == 1:
            path += [(k * 104729) % 50000 + 10000]  # a second transit
        path.append(origin)
        communities = [(carrier_as, 100 + k % 5)]
        if k % 3 == 0:
            communities.append((carrier_as, 2000 + k % 3))
        large = ((carrier_as, 1, k % 10),) if k % 4 == 0 else ()
        med = (k % 100) if k % 2 == 0 else None
        if v6_every and k % v6_every == v6_every - 1:
            if k6 >= 0xe000:
                raise ValueError(f"too many routes for the synthetic IPv6 space: {n}")
            prefix = f"2001:db8:{0x1000 + k6:x}::/48"
            k6 += 1
        else:
            net = (10 << 24) + (k4 << 8)
            prefix = f"{ipaddress.IPv4Address(net)}/24"
            k4 += 1
        routes.add(Route(prefix, tuple(path), tuple(communities), large, med))
    routes.add(Route(WATCH_PREFIX, (TARGET_AS,), ((carrier_as, 100),)))
    return routes


# ---------------------------------------------------------------- the real table (MRT)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    path = Path(base) / "egress-agent-lab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def mrt_reader() -> Any:
    """mrtparse's Reader (a test dependency, imported only when a table is wanted).
    Importing mrtparse sets SIGPIPE to its default action for the whole process: from then
    on, a write to a closed pipe or socket anywhere in the test run killed pytest itself
    (exit 141, seen once in three full runs). The disposition is put back at once."""
    previous = signal.getsignal(signal.SIGPIPE)
    try:
        from mrtparse import Reader
    finally:
        signal.signal(signal.SIGPIPE, previous)
    return Reader


def _mrt_table(path: Path) -> Iterator[tuple[str, tuple[int, ...], tuple[tuple[int, int], ...]]]:
    """Final state of the table in an MRT updates file: (prefix, as_path, communities).
    AS_SETs are dropped from paths (BIRD static routes cannot build them)."""
    Reader = mrt_reader()

    table: dict[str, tuple[tuple[int, ...], tuple[tuple[int, int], ...]]] = {}
    for entry in Reader(str(path)):
        message = entry.data.get("bgp_message")
        if not message or 2 not in message["type"]:
            continue
        for withdrawn in message.get("withdrawn_routes", []):
            table.pop(f"{withdrawn['prefix']}/{withdrawn['length']}", None)
        as_path: list[int] = []
        as4_path: list[int] = []
        communities: list[tuple[int, int]] = []
        for attr in message.get("path_attributes", []):
            kind = next(iter(attr["type"]))
            if kind in (2, 17):  # AS_PATH, AS4_PATH
                target = as_path if kind == 2 else as4_path
                for segment in attr["value"]:
                    if 2 in segment["type"]:  # AS_SEQUENCE
                        target.extend(int(asn) for asn in segment["value"])
            elif kind == 8:
                for text in attr["value"]:
                    high, _, low = text.partition(":")
                    communities.append((int(high), int(low)))
        if as4_path and 23456 in as_path:
            as_path = as_path[: len(as_path) - len(as4_path)] + as4_path
        value = (tuple(as_path), tuple(communities))
        for nlri in message.get("nlri", []):
            table[f"{nlri['prefix']}/{nlri['length']}"] = value
    for prefix, (as_path_t, comm) in table.items():
        yield prefix, as_path_t, comm


def mrt_routes_file(carrier_as: int, mrt: Path = MRT_FIXTURE) -> tuple[Path, int]:
    """BIRD static routes of the real table (cached outside the repo): (file, count).
    The table is the same for every carrier (BIRD adds the carrier's AS)."""
    if not mrt.exists():
        raise FileNotFoundError(f"MRT fixture missing from tests/fixtures/mrt: {mrt}")
    key = hashlib.sha256(f"{mrt.resolve()}:{mrt.stat().st_size}:{mrt.stat().st_mtime}:v1"
                         .encode()).hexdigest()[:16]
    out = cache_dir() / f"mrt-{key}.conf"
    meta = cache_dir() / f"mrt-{key}.json"
    if out.exists() and meta.exists():
        return out, int(json.loads(meta.read_text())["count"])
    count = write_bird_routes(
        (Route(p, path, comm) for p, path, comm in _mrt_table(mrt)), out)
    meta.write_text(json.dumps({"count": count, "source": str(mrt)}))
    return out, count

