"""Pipeline throughput: 1,000,000 points through encoder, spool and the influxdb output
into a local VictoriaMetrics, against, in the same run, a plain HTTP POST of the same lines
(the ceiling) and influxdb-client's own batching WriteApi with Point objects (the common way).

    .venv/bin/python bench/pipeline.py [--points 1000000] [--fsync batch] [--rounds 7]
                                       [--allow-python-encoder]

Prints one JSON line last:
{"points_per_s": …, "ratio_vs_raw_post": …, "ratio_vs_client_batching": …, "encoder": "c"}
Goals: ratio_vs_raw_post >= 0.8 with the spool on (fsync per batch), >= 4x client batching.
The raw POST and the agent run alternately `--rounds` times (7), each phase against a
server started fresh, with the disk synced between phases. Each round gives a ratio (the
two ran back to back, so a machine that drifts slower or faster affects both) and
ratio_vs_raw_post is their median: on a shared machine a single round swings by ±0.1.

On a 2-core machine the server and the agent share the cores: while the agent encodes
(about 0.27 us per point here, agent/_lineproto.c) its requests take longer than the same
requests sent alone. Run `--fsync never` to see the spool's share.

It measures the C encoder: if agent._lineproto is not built in this checkout it builds it
in place first, and exits 2 if that fails, unless --allow-python-encoder (bench/_common.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import add_encoder_option, require_encoder  # noqa: E402
from tests.lab.servers import VictoriaMetrics  # noqa: E402

if TYPE_CHECKING:
    from agent.points import Point

# agent.* is imported inside the functions: agent.points picks its encoder when first
# imported, which must come after require_encoder() has made sure the C one is built.

SERIES = 1000
BATCH_POINTS = 10_000
BUCKET = "bench"


def make_points(n: int, base_ns: int, phase: str = "a") -> list[Point]:
    """Link-like points: 1,000 interfaces x n/1,000 intervals, 4 fields each. Each phase
    writes its own series (tag `phase`), so every phase pays the server's series creation."""
    from agent.points import Point

    points = []
    for i in range(n):
        series = i % SERIES
        tick = i // SERIES
        points.append(Point(
            "link",
            {"host": "bench", "interface": f"eth{series}", "carrier": f"c{series % 3}",
             "phase": phase},
            {"rx_bytes": tick * 1500 + series, "tx_bytes": tick * 900 + series,
             "rx_bps": float(tick * 8.5), "tx_bps": float(series * 1.25)},
            base_ns + tick * 1_000_000_000,
        ))
    return points


def raw_post(url: str, bodies: list[bytes]) -> float:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    path = f"/api/v2/write?org=bench&bucket={BUCKET}&precision=ns"
    started = time.perf_counter()
    for body in bodies:
        conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
        response = conn.getresponse()
        response.read()
        assert response.status == 204, response.status
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def client_batching(url: str, points: list[Point]) -> float:
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write.point import Point as ClientPoint
    from influxdb_client.client.write_api import WriteOptions

    client = InfluxDBClient(url=url, token="", org="bench", enable_gzip=False)
    started = time.perf_counter()
    write_api = client.write_api(write_options=WriteOptions(batch_size=BATCH_POINTS,
                                                            flush_interval=1000))
    for point in points:
        record = ClientPoint(point.measurement)
        for key, value in point.tags.items():
            record.tag(key, value)
        for key, value in point.fields.items():
            record.field(key, value)
        record.time(point.time_ns)
        write_api.write(bucket=BUCKET, record=record)
    write_api.close()  # flushes and waits
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


async def agent_pipeline(url: str, points: list[Point], data_dir: Path, fsync: str) -> float:
    from agent.config import InfluxDBConfig
    from agent.outputs.base import OutputWorker
    from agent.outputs.influxdb import InfluxDBOutput
    from agent.pipeline import Pipeline
    from agent.spool import Spool

    spool = Spool(data_dir, max_bytes=4 << 30, fsync=fsync)
    pipeline = Pipeline(spool, "bench", max_batch_points=BATCH_POINTS)
    pipeline.bind_loop(asyncio.get_running_loop())
    output = InfluxDBOutput(InfluxDBConfig(url=url, org="bench", bucket=BUCKET,
                                           batch_size=BATCH_POINTS, gzip=False))
    worker = OutputWorker(output, spool, data_dir)
    pipeline.workers.append(worker)
    flusher = asyncio.create_task(pipeline.run_flusher())
    sender = asyncio.create_task(worker.run())
    started_ns = time.time_ns()
    for start in range(0, len(points), BATCH_POINTS):  # collectors emit as they go
        pipeline.emit(points[start:start + BATCH_POINTS])
        await asyncio.sleep(0)
    # The clock stops when the last request succeeded (the worker notes the time); a
    # coarse poll, because a tight one would take the GIL from the agent all the time.
    while worker.stats.points_written < len(points):
        await asyncio.sleep(0.05)
    elapsed = (worker.stats.last_success_ns - started_ns) / 1e9
    flusher.cancel()
    sender.cancel()
    await asyncio.gather(flusher, sender, return_exceptions=True)
    output.close()
    spool.close()
    return elapsed


def raw_round(url: str, n: int, base: int, phase: str) -> float:
    from agent.points import LineEncoder

    points = make_points(n, base, phase)
    encoder = LineEncoder(version=2)
    bodies = [encoder.encode_batch(points[i:i + BATCH_POINTS]) for i in range(0, n, BATCH_POINTS)]
    del points
    return raw_post(url, bodies)


def agent_round(url: str, n: int, base: int, phase: str, data_dir: Path, fsync: str) -> float:
    points = make_points(n, base, phase)
    # The input exists before the clock starts (collectors would make it as they go):
    # keep the garbage collector from scanning it over and over.
    gc.collect()
    gc.freeze()
    try:
        return asyncio.run(agent_pipeline(url, points, data_dir, fsync))
    finally:
        del points
        gc.unfreeze()
        gc.collect()


def client_round(url: str, n: int, base: int) -> float:
    points = make_points(n, base, "client")
    gc.collect()
    gc.freeze()
    try:
        return client_batching(url, points)
    finally:
        del points
        gc.unfreeze()
        gc.collect()


@contextlib.contextmanager
def fresh_server(data_dir: Path) -> Iterator[str]:
    server = VictoriaMetrics(data_dir=data_dir / "vm")
    server.start()
    try:
        yield server.url
    finally:
        server.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        # The server writes its data out on stop: let the disk finish before the next
        # phase, whose spool fsyncs would otherwise queue behind it.
        os.sync()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--fsync", default="batch", choices=["batch", "interval", "never"])
    parser.add_argument("--rounds", type=int, default=7,
                        help="raw POST and agent alternate this many times (paired ratios)")
    parser.add_argument("--skip-client", action="store_true", help="skip the slow baseline")
    add_encoder_option(parser)
    args = parser.parse_args()
    encoder = require_encoder(args.allow_python_encoder)
    n = args.points
    base = 1_700_000_000_000_000_000
    raw_s: list[float] = []
    agent_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        # Shared machines are noisy: the two alternate (and swap order every round) and the
        # medians are compared. Each phase writes to a server of its own, started fresh, so
        # none pays for another's background merges.
        for round_no in range(args.rounds):
            order = ("raw", "agent") if round_no % 2 == 0 else ("agent", "raw")
            for kind in order:
                phase = f"{kind}{round_no}"
                with fresh_server(Path(tmp) / phase) as url:
                    if kind == "raw":
                        raw_s.append(raw_round(url, n, base, phase))
                    else:
                        agent_s.append(agent_round(url, n, base, phase,
                                                   Path(tmp) / phase / "agent", args.fsync))
            print(f"round {round_no + 1}: raw POST {n / raw_s[-1]:>9,.0f} points/s, "
                  f"agent {n / agent_s[-1]:>9,.0f} points/s (spool fsync={args.fsync}), "
                  f"ratio {raw_s[-1] / agent_s[-1]:.3f}", file=sys.stderr)
        if args.skip_client:
            client_s = float("nan")
        else:
            with fresh_server(Path(tmp) / "client") as url:
                client_s = client_round(url, n, base)
            print(f"client batching: {n / client_s:>10,.0f} points/s", file=sys.stderr)
    raw_median, agent_median = median(raw_s), median(agent_s)
    by_round = [raw / agent for raw, agent in zip(raw_s, agent_s, strict=True)]
    print(json.dumps({
        "points": n,
        "fsync": args.fsync,
        "rounds": args.rounds,
        "points_per_s": round(n / agent_median),
        "raw_post_points_per_s": round(n / raw_median),
        "client_batching_points_per_s": round(n / client_s) if client_s == client_s else None,
        "ratio_vs_raw_post": round(median(by_round), 3),
        "ratio_of_medians": round(raw_median / agent_median, 3),
        "ratio_vs_raw_post_by_round": [round(ratio, 3) for ratio in by_round],
        "ratio_vs_client_batching": round(client_s / agent_median, 2) if client_s == client_s
        else None,
        "encoder": encoder,
    }))


if __name__ == "__main__":
    main()
