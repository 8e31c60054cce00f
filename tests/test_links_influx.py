"""Interface and carrier names that line protocol must escape arrive intact in InfluxDB 1.6.7.

Real kernel interfaces (Linux allows `,` `=` `"` `\\` in names) → LinksCollector → the
lead's v1 output path (LineEncoder(version=1) + InfluxDBv1Output) → a real influxd.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import InfluxDBv1Config, parse_config
from agent.outputs.influxdb_v1 import InfluxDBv1Output
from agent.points import LineEncoder
from collectors.links.collector import LinksCollector
from tests.links_support import Scratch, make_ctx, needs_root

pytestmark = [pytest.mark.lab, pytest.mark.servers]

# Each at most 15 bytes; a backslash never before `,` `=` ` ` or last (1.x cannot carry it).
NAMES = ['lk,a=1"b\\c', 'lk=\\x"y,', 'lk"q\\z,=1']
CARRIER = 'tele,com "x"=\\1'


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    needs_root()
    s = Scratch()
    try:
        yield s
    finally:
        s.close()


def test_hostile_interface_names_arrive_intact(scratch: Scratch, tmp_path: Path,
                                               influxdb_v1_shared, fresh_db: str) -> None:  # type: ignore[no-untyped-def]
    for i, name in enumerate(NAMES):
        scratch.ip("link", "add", name, "type", "veth", "peer", "name", f"lkhp{i}")
    config = parse_config({
        "agent": {"hostname": "test", "data_dir": str(tmp_path)},
        "carriers": [{"name": CARRIER, "interface": NAMES[0], "committed_mbps": 10}],
        "links": {"include": ["lk*"], "exclude": ["lkhp*", "lkup*"]},
    })
    collector = LinksCollector(make_ctx(config, tmp_path), netns=scratch.ns)
    try:
        points = collector.collect()
    finally:
        collector.close()
    assert sorted(p.tags["interface"] for p in points) == sorted(NAMES)
    for point in points:
        point.time_ns = 1_700_000_000_000_000_000
    encoder = LineEncoder(version=1)
    output = InfluxDBv1Output(InfluxDBv1Config(url=influxdb_v1_shared.url, database=fresh_db))
    try:
        output.send(encoder.encode_batch(points))
    finally:
        output.close()
    assert encoder.stats.sanitized_values == 0  # nothing had to be changed
    rows = influxdb_v1_shared.query(
        'SELECT last("rx_bytes") FROM "link" GROUP BY "interface", "carrier"', db=fresh_db)
    stored = {(r["_tags"]["interface"], r["_tags"]["carrier"]) for r in rows}
    assert stored == {(NAMES[0], CARRIER), (NAMES[1], ""), (NAMES[2], "")}
    assert all(r["last"] == 0 for r in rows)
