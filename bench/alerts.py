"""Alert engine: its CPU per point against the pipeline's, and link down -> Alertmanager.

    .venv/bin/python bench/alerts.py [--points 500000] [--trials 20] [--no-lab]
                                     [--allow-python-encoder]

1. Cost: the pipeline benchmark's points (bench/pipeline.py `make_points`: `link` points of
   1,000 interfaces, each tagged with one of 3 carriers whose uplinks are 3 of them) go
   through the whole pipeline as in bench/pipeline.py (stamp, encode, spool append with
   fsync per batch, 10,000-point batches, the influxdb output into a local
   VictoriaMetrics; `--no-output`: without the output) with the engine as an observer.
   The pipeline's CPU is the process's CPU time (all threads) over the run less the
   engine's, which is the loop thread's CPU time inside the observer. Per point, median
   of `--rounds` runs; `cost_ratio_vs_pipeline` = engine / pipeline. Goal: <= 0.10.
2. Latency, in the lab (root, network namespaces; skipped with --no-lab or when the lab
   cannot run): the agent (in this process, its link-event collector in the lab's agent
   namespace, `for` = 0) and a real Alertmanager on loopback; a carrier takes the uplink
   down, and the time until Alertmanager's API (`GET /api/v2/alerts`, polled every 5 ms)
   shows UplinkDown is taken, `--trials` times (link back up and the alert resolved in
   between). `link_down_to_alertmanager_median_s`; goal <= 1 s.

Prints one JSON line last:
{"cost_ratio_vs_pipeline": …, "engine_us_per_point": …, "pipeline_us_per_point": …,
 "link_down_to_alertmanager_median_s": …, "link_down_to_alertmanager_max_s": …, "trials": …}
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import add_encoder_option, require_encoder  # noqa: E402

BATCH = 10_000


def bench_config(data_dir: Path, extra: dict[str, Any] | None = None) -> Any:
    from agent.config import parse_config

    return parse_config({
        "agent": {"hostname": "bench", "data_dir": str(data_dir), "collectors": []},
        "carriers": [{"name": f"c{i}", "interface": f"eth{i}", "committed_mbps": 1000}
                     for i in range(3)],
        **(extra or {}),
    })


def cost(n: int, with_output: bool) -> dict[str, float]:
    """CPU per point of the pipeline (process time, all threads) and of the engine's
    observer (thread time of the loop thread inside it), in one run."""
    from agent.alerts.engine import AlertEngine
    from agent.config import InfluxDBConfig
    from agent.outputs.base import OutputWorker
    from agent.outputs.influxdb import InfluxDBOutput
    from agent.pipeline import Pipeline
    from agent.spool import Spool
    from bench.pipeline import BATCH_POINTS, BUCKET, fresh_server, make_points

    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    points = make_points(n, time.time_ns() - n // 1000 * 10**9, phase=f"p{time.time_ns()}")
    gc.collect()
    gc.freeze()
    engine = AlertEngine(bench_config(work / "data"), lambda _points: None,
                         state_path=work / "state.json")
    engine_s = 0.0

    def observe(batch: Any) -> None:
        nonlocal engine_s
        start = time.thread_time()
        engine.observe(batch)
        engine_s += time.thread_time() - start

    async def run(url: str | None) -> float:
        spool = Spool(work / "spool", max_bytes=4 << 30, fsync="batch")
        pipeline = Pipeline(spool, "bench", max_batch_points=BATCH_POINTS)
        pipeline.bind_loop(asyncio.get_running_loop())
        pipeline.observers.append(observe)
        worker = None
        tasks = []
        if url is not None:
            output = InfluxDBOutput(InfluxDBConfig(url=url, org="bench", bucket=BUCKET,
                                                   batch_size=BATCH_POINTS, gzip=False))
            worker = OutputWorker(output, spool, work / "spool")
            pipeline.workers.append(worker)
            tasks.append(asyncio.create_task(worker.run()))
        start = time.process_time()
        for i in range(0, n, BATCH_POINTS):
            pipeline.emit(points[i:i + BATCH_POINTS])
            await pipeline.flush_once()
        while worker is not None and worker.stats.points_written < n:
            await asyncio.sleep(0.05)
        used = time.process_time() - start
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        spool.close()
        return used

    try:
        if with_output:
            with fresh_server(work / "vm") as url:
                total_s = asyncio.run(run(url))
        else:
            total_s = asyncio.run(run(None))
    finally:
        gc.unfreeze()
        shutil.rmtree(work, ignore_errors=True)
    pipeline_s = total_s - engine_s  # the observer runs inside the measured run
    return {
        "pipeline_us_per_point": pipeline_s / n * 1e6,
        "engine_us_per_point": engine_s / n * 1e6,
        "cost_ratio_vs_pipeline": engine_s / pipeline_s,
    }


def lab_latency(trials: int) -> list[float]:
    from agent.daemon import Agent
    from collectors.links.events import LinkEventCollector
    from tests.lab.lab import Lab, LabSpec, gc_labs
    from tests.lab.servers import Alertmanager, WebhookReceiver

    gc_labs()
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-lab-"))
    lab = Lab(LabSpec.from_env(), workdir=work / "lab")
    receiver = WebhookReceiver()
    am = Alertmanager(data_dir=work / "am", webhook_url=receiver.url)
    times: list[float] = []
    try:
        lab.up()
        am.start()
        carrier = lab.carriers[0]
        config = bench_config(work / "data", {
            "outputs": {"alertmanager": {"urls": [am.url], "resend_interval": "10s",
                                         "max_retry_delay": "1s"}},
        })
        config = type(config)(**{**config.__dict__, "carriers": tuple(
            type(c)(**{**c.__dict__, "name": lc.name, "interface": lc.uplink})
            for c, lc in zip(config.carriers, lab.carriers, strict=False))})

        def shows(active: bool) -> bool:
            present = any(a["labels"].get("alertname") == "UplinkDown"
                          and a["labels"].get("carrier") == carrier.name
                          for a in am.alerts(active_only=True))
            return present == active

        async def run() -> None:
            agent = Agent(config)
            await agent.start()
            collector = LinkEventCollector(agent._context(config), netns=lab.agent_ns)
            agent.scheduler.start(collector)
            try:
                for _ in range(300):
                    if collector._nl is not None and collector.verdicts:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)
                for _ in range(trials):
                    t0 = time.monotonic()
                    await asyncio.to_thread(lab.set_link, carrier.name, False)
                    while not await asyncio.to_thread(shows, True):
                        if time.monotonic() - t0 > 10:
                            raise RuntimeError("the alert did not reach Alertmanager in 10 s")
                        await asyncio.sleep(0.005)
                    times.append(time.monotonic() - t0)
                    await asyncio.to_thread(lab.set_link, carrier.name, True)
                    deadline = time.monotonic() + 15
                    while not await asyncio.to_thread(shows, False):
                        if time.monotonic() > deadline:
                            raise RuntimeError("the alert did not resolve in 15 s")
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.5)
            finally:
                await agent.scheduler.stop(collector)
                await agent.stop()

        asyncio.run(run())
    finally:
        am.close()
        receiver.close()
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=500_000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-lab", action="store_true")
    parser.add_argument("--no-output", action="store_true",
                        help="pipeline without an output (stamp, encode, spool only)")
    add_encoder_option(parser)
    args = parser.parse_args()
    encoder = require_encoder(args.allow_python_encoder)
    result: dict[str, Any] = {}
    from tests.lab.servers import VICTORIA_METRICS, binary_missing

    with_output = not args.no_output and binary_missing(VICTORIA_METRICS) is None
    costs = [cost(args.points, with_output) for _ in range(args.rounds)]
    print(f"cost rounds (engine/pipeline): "
          f"{[round(c['cost_ratio_vs_pipeline'], 4) for c in costs]}", file=sys.stderr)
    for key in ("cost_ratio_vs_pipeline", "engine_us_per_point", "pipeline_us_per_point"):
        result[key] = round(statistics.median(c[key] for c in costs), 4)
    result["pipeline_includes_output"] = with_output
    result["link_down_to_alertmanager_median_s"] = None
    if not args.no_lab:
        from tests.conftest import _lab_skip_reason

        reason = _lab_skip_reason()
        if reason:
            print(f"lab latency skipped: {reason}", file=sys.stderr)
        else:
            times = lab_latency(args.trials)
            print(f"link down -> Alertmanager, s: {[round(t, 3) for t in times]}",
                  file=sys.stderr)
            result["link_down_to_alertmanager_median_s"] = round(statistics.median(times), 4)
            result["link_down_to_alertmanager_max_s"] = round(max(times), 4)
            result["trials"] = len(times)
    result["encoder"] = encoder
    print(json.dumps(result))


if __name__ == "__main__":
    main()
