"""The `agent` point's own cost figures, children included (ExaBGP and the bridge are
children of the agent): against real child processes and their /proc counters."""

from __future__ import annotations

import json
import subprocess
import sys

from collectors.agent_self import children_cpu_s
from tests.agentproc import ROOT

# Runs as its own process, so that its only child is the one it starts (pytest's own
# children, the test servers, would count too). Prints the two `agent` points' fields and
# what /proc said of the child, as JSON.
SCRIPT = r"""
import json, subprocess, sys, tempfile, time
from pathlib import Path
import psutil
from agent.collector import CollectorContext
from agent.config import parse_config
from collectors.agent_self import AgentCollector

BURN = ("import time\nend = time.process_time() + 0.6\n"
        "while time.process_time() < end: pass\ntime.sleep(30)\n")
data = Path(tempfile.mkdtemp())
collector = AgentCollector(CollectorContext(
    config=parse_config({"agent": {"data_dir": str(data)}}), emit=lambda p: None,
    data_dir=data))
child = subprocess.Popen([sys.executable, "-c", BURN])
try:
    process = psutil.Process(child.pid)
    # until it has burnt its 0.6 s and sleeps: CPU times move in clock ticks, so they can
    # show 0.6 s while the child still burns its last milliseconds
    last = -1.0
    while (used := sum(process.cpu_times()[:2])) < 0.6 or used != last:
        last = used
        time.sleep(0.1)
    started = collector._children_at
    first = collector.collect()[0].fields
    elapsed_s = time.monotonic() - started
    child_cpu_s, child_rss = sum(process.cpu_times()[:2]), process.memory_info().rss
    time.sleep(0.5)  # CPU times move in clock ticks (10 ms): no shorter interval
    second = collector.collect()[0].fields
finally:
    child.kill()
    child.wait(10)
print(json.dumps({"first": first, "second": second, "elapsed_s": elapsed_s,
                  "child_cpu_s": child_cpu_s, "child_rss": child_rss}))
"""


def test_children_cpu_s_counts_deltas_new_children_and_recycled_pids() -> None:
    before = {(10, 1.0): 2.0, (11, 1.0): 5.0}
    now = {(10, 1.0): 2.5, (11, 9.0): 0.25, (12, 3.0): 1.0}  # 11 is a new process
    assert children_cpu_s(before, now) == 0.5 + 0.25 + 1.0
    assert children_cpu_s(now, now) == 0.0


def test_agent_point_carries_its_childrens_cpu_and_memory() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    first, second = seen["first"], seen["second"]
    expected = 100.0 * seen["child_cpu_s"] / seen["elapsed_s"]
    assert abs(first["children_cpu_percent"] - expected) < 0.15 * expected + 1.0
    assert abs(first["children_rss_bytes"] - seen["child_rss"]) < 2 * 2**20
    assert first["total_rss_bytes"] == first["rss_bytes"] + first["children_rss_bytes"]
    assert first["total_cpu_percent"] == round(
        first["cpu_percent"] + first["children_cpu_percent"], 3)
    assert second["children_cpu_percent"] < 5.0  # idle since: not counted twice


def test_descendant_pids_are_psutils_without_its_host_wide_scan() -> None:
    """A child with a grandchild (started by a second thread of the child, whose
    `children` list is its own), and a child that has already ended: the same set as
    psutil's children(recursive=True)."""
    import os

    import psutil

    from collectors.agent_self import descendant_pids

    code = ("import subprocess, sys, threading, time\n"
            "t = threading.Thread(target=lambda: subprocess.Popen(\n"
            "    [sys.executable, '-c', 'import time; time.sleep(30)']))\n"
            "t.start(); t.join(); print('ready', flush=True); time.sleep(30)\n")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        ours = descendant_pids(os.getpid())
        if ours is None:
            import pytest
            pytest.skip("kernel without /proc/PID/task/TID/children")
        expected = {p.pid for p in psutil.Process().children(recursive=True)}
        assert set(ours) == expected
        assert child.pid in ours and ended.pid not in ours
        (grandchild,) = psutil.Process(child.pid).children()
        assert grandchild.pid in ours
    finally:
        for process in psutil.Process(child.pid).children():
            process.kill()
        child.kill()
        child.wait(10)
