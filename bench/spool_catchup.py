"""Catch-up after an outage: an output reads a large spool back from disk, batch by batch.

    .venv/bin/python bench/spool_catchup.py [--records 50000] [--rounds 3]
                                            [--allow-python-encoder]

A spool of N records of 10 host-like points each (what a day of short outages leaves) is
read the way an output catches up: `read_from` at its cursor for batch_size (5,000) points,
then the next, with nothing held in memory. Measured in the same run, best of --rounds:
- catchup_points_per_s: points read back through `read_from` (checksums verified);
- ratio_vs_plain_read: against reading the segment files start to end with plain reads
  (no index, no checksum, no per-record work). Small records cost about 9 us each (a
  pread and a checksum); at about a million points/s reading is still faster than the
  servers here accept them (VictoriaMetrics about 600k points/s), so it is not pursued;
- scaling_4x: time for 4N records over time for N. Linear reading gives about 4. The
  spool before this benchmark walked its index from the start on every batch: 7.3 at
  50,000 records (0.66 s, then 4.8 s for 200,000), and growing with N.
Prints one JSON line last, with "encoder": "c" or "python" (the C line-protocol encoder is
built in place if missing, exit 2 if that fails unless --allow-python-encoder; see
bench/_common.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import add_encoder_option, require_encoder  # noqa: E402

if TYPE_CHECKING:
    from agent.spool import Spool

# agent.* (agent.spool imports agent.points) only after require_encoder(): agent.points
# picks its encoder when first imported.

BATCH_POINTS = 5_000
LINE = b"host,host=bench usage_pct=12.5,load1=0.25 1700000000000000000"


def build(data_dir: Path, records: int) -> Spool:
    from agent.spool import Spool
    from agent.spool_format import SpoolRecord

    spool = Spool(data_dir, fsync="never", max_bytes=16 << 30, memory_max_bytes=0)
    spool.register_output("out")
    body = b"\n".join([LINE] * 10)
    for _ in range(records):
        spool.append(SpoolRecord(body, None, 10, 1_700_000_000_000_000_000))
    return spool


def catch_up_s(spool: Spool) -> float:
    started = time.perf_counter()
    seq = points = 0
    while batch := spool.read_from(seq, BATCH_POINTS):
        points += sum(record.n_points for _, record in batch)
        seq = batch[-1][0] + 1
    elapsed = time.perf_counter() - started
    assert points == 10 * spool.stats.appended_records, points
    return elapsed


def plain_read_s(spool: Spool) -> float:
    started = time.perf_counter()
    for path in sorted(spool.dir.glob("*.seg")):
        with open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    add_encoder_option(parser)
    args = parser.parse_args()
    encoder = require_encoder(args.allow_python_encoder)
    timings: dict[str, list[float]] = {"n": [], "4n": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="bench-catchup-") as tmp:
        small = build(Path(tmp) / "n", args.records)
        large = build(Path(tmp) / "4n", 4 * args.records)
        for _ in range(args.rounds):
            timings["n"].append(catch_up_s(small))
            timings["4n"].append(catch_up_s(large))
            timings["plain"].append(plain_read_s(large))
        small.close()
        large.close()
    best = {key: min(values) for key, values in timings.items()}
    points = 4 * args.records * 10
    print(f"{args.records:,} records: {best['n']:.2f} s; {4 * args.records:,}: "
          f"{best['4n']:.2f} s; plain read of the latter {best['plain']:.3f} s", file=sys.stderr)
    print(json.dumps({
        "records": args.records,
        "catchup_points_per_s": round(points / best["4n"]),
        "ratio_vs_plain_read": round(best["plain"] / best["4n"], 3),
        "scaling_4x": round(best["4n"] / best["n"], 2),
        "encoder": encoder,
    }))


if __name__ == "__main__":
    main()
