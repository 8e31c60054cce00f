"""The `agent` point's own cost figures, children included (ExaBGP and the bridge are
children of the agent): against real child processes and their /proc counters."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from agent.collector import CollectorContext
from agent.config import parse_config
from collectors.agent_self import AgentCollector, children_cpu_s

BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n" \
       "time.sleep(30)\n"


def test_children_cpu_s_counts_deltas_new_children_and_recycled_pids() -> None:
    before = {(10, 1.0): 2.0, (11, 1.0): 5.0}
    now = {(10, 1.0): 2.5, (11, 9.0): 0.25, (12, 3.0): 1.0}  # 11 is a new process
    assert children_cpu_s(before, now) == 0.5 + 0.25 + 1.0
    assert children_cpu_s(now, now) == 0.0


def test_agent_point_carries_its_childrens_cpu_and_memory(tmp_path: Path) -> None:
    config = parse_config({"agent": {"data_dir": str(tmp_path)}})
    collector = AgentCollector(CollectorContext(config=config, emit=lambda p: None,
                                                data_dir=tmp_path))
    child = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.6)])
    try:
        deadline = time.monotonic() + 20
        while psutil.Process(child.pid).cpu_times().user + \
                psutil.Process(child.pid).cpu_times().system < 0.6:
            assert time.monotonic() < deadline, "the child did not burn its CPU"
            time.sleep(0.05)
        started = collector._children_at
        (point, *_) = collector.collect()
        elapsed_s = time.monotonic() - started
        fields = point.fields
        times = psutil.Process(child.pid).cpu_times()
        expected = 100.0 * (times.user + times.system) / elapsed_s
        assert abs(fields["children_cpu_percent"] - expected) < 0.15 * expected + 1.0
        rss = psutil.Process(child.pid).memory_info().rss
        assert abs(fields["children_rss_bytes"] - rss) < 2 * 2**20
        assert fields["total_rss_bytes"] == fields["rss_bytes"] + fields["children_rss_bytes"]
        assert fields["total_cpu_percent"] == round(
            fields["cpu_percent"] + fields["children_cpu_percent"], 3)
        time.sleep(0.5)  # CPU times move in clock ticks (10 ms): no shorter interval
        (again, *_) = collector.collect()  # idle since: its CPU is not counted twice
        assert again.fields["children_cpu_percent"] < 5.0
    finally:
        child.kill()
        child.wait(10)
