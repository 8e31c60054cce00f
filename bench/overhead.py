"""What the agent costs the host it watches: CPU (% of one core) and RSS of every process of
the agent (the agent, ExaBGP, the BGP bridge), in steady state, in the three-carrier lab.

Two configs, one after the other, each warmed up and then measured for `--seconds`:
  lab   config/lab.toml as a new user runs it (interval 5 s, four methods, traceroute, about
        30 probes/s, both outputs);
  prod  a production-like host: 3 carriers, interval 10 s, 10 targets with icmp + tcp:443
        every 30 s at 10 probes each, BGP with the lab's tables and the default hold time
        (90 s: the lab's 9 s, there for fast tests, is a keepalive each way every 3 s per
        session), InfluxDB 1.x output.
The anchor, in the same run: prometheus-node-exporter (Debian's) scraped every 10 s over the
same window. CPU is each process's utime + stime from /proc over the window; RSS is the
peak of the per-second samples (for "all", the peak of their per-second sum).

Run as root: .venv/bin/python bench/overhead.py [--seconds 180] [--warmup 30]
Prints a table per config and one JSON line last (keys prod_cpu_percent, prod_rss_mb,
lab_cpu_percent, lab_rss_mb, node_exporter_cpu_percent, node_exporter_rss_mb, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, add_encoder_option, require_encoder

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PROD_TARGETS = [f"203.0.113.{20 + i}" for i in range(10)]
GOALS = {"prod_cpu_percent": 1.0, "prod_rss_mb": 80.0, "lab_cpu_percent": 3.0}


def log(text: str) -> None:
    print(f"overhead: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc


def cpu_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = " ".join(a.decode(errors="replace") for a in argv)
    if "exabgp" in text and "bridge" not in text:
        return "exabgp"
    if "bridge" in text:
        return "bridge"
    if "agent.cli" in text or "egress-agent" in text:
        return "agent"
    return Path(argv[0].decode(errors="replace")).name or "other"


@dataclass
class Window:
    """CPU and peak RSS of a process tree over a measured window."""
    roots: dict[str, int]  # name -> pid whose whole tree is measured under that name
    start_ticks: dict[int, int] = field(default_factory=dict)
    last_ticks: dict[int, int] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0

    def pids(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for group, root in self.roots.items():
            for pid in [root, *descendants(root)]:
                out[pid] = f"{group}:{role(pid) if group == 'agent' else group}"
        return out

    def sample(self) -> None:
        totals: dict[str, int] = {}
        for pid, name in self.pids().items():
            ticks, rss = cpu_ticks(pid), rss_bytes(pid)
            if ticks is None or rss is None:
                continue
            self.roles.setdefault(pid, name)
            self.start_ticks.setdefault(pid, ticks)  # a process born in the window: from 0
            self.last_ticks[pid] = ticks
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)
            group = name.split(":")[0]
            totals[group] = totals.get(group, 0) + rss
        for group, total in totals.items():
            key = f"{group}:all"
            self.peak_rss[key] = max(self.peak_rss.get(key, 0), total)

    def begin(self) -> None:
        self.started = time.monotonic()
        for pid, name in self.pids().items():
            ticks = cpu_ticks(pid)
            if ticks is not None:
                self.start_ticks[pid], self.roles[pid] = ticks, name
        self.sample()

    def finish(self) -> None:
        self.sample()
        self.ended = time.monotonic()

    def cpu_percent(self) -> dict[str, float]:
        seconds = self.ended - self.started
        out: dict[str, float] = {}
        for pid, name in self.roles.items():
            used = self.last_ticks.get(pid, self.start_ticks[pid]) - self.start_ticks[pid]
            share = 100.0 * used / CLK_TCK / seconds
            out[name] = out.get(name, 0.0) + share
            group = name.split(":")[0]
            out[f"{group}:all"] = out.get(f"{group}:all", 0.0) + share
        return out


def measure(window: Window, seconds: float) -> None:
    window.begin()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        window.sample()
    window.finish()


# ---------------------------------------------------------------- node_exporter (anchor)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeExporter:
    """Debian's prometheus-node-exporter on loopback, scraped every 10 s like Prometheus."""

    def __init__(self, binary: str, textfile_dir: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{self.port}",
             f"--collector.textfile.directory={textfile_dir}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scrape_loop, daemon=True)

    def start(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self._scrape()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._thread.start()

    def _scrape(self) -> None:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
        self.scrapes += 1

    def _scrape_loop(self) -> None:
        while not self._stop.wait(10.0):
            try:
                self._scrape()
            except OSError as exc:
                log(f"node_exporter scrape failed: {exc}")

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(10)


# ---------------------------------------------------------------- configs


def prod_config(lab_toml: str, workdir: Path) -> str:
    """3 carriers with BGP (from config/lab.toml, default hold time), interval 10 s, 10
    targets icmp + tcp."""
    carriers_and_bgp = "".join(
        line for line in lab_toml[lab_toml.index("[[carriers]]"):lab_toml.index("[[probes]]")]
        .splitlines(keepends=True) if not line.strip().startswith("hold_time"))
    probes = "".join(
        f'\n[[probes]]\nname = "t{i}"\ntarget = "{target}"\nmethods = ["icmp", "tcp:443"]\n'
        f'interval = "30s"\ncount = 10\ncarriers = ["*"]\n'
        for i, target in enumerate(PROD_TARGETS))
    return (f'[agent]\nhostname = "prod-like"\ninterval = "10s"\n'
            f'data_dir = "{workdir}/prod-data"\ncontrol_socket = "{workdir}/prod.sock"\n'
            f'log_level = "warning"\n\n{carriers_and_bgp}{probes}\n'
            '[links]\ninclude = ["telecom", "unicom", "mobile"]\n\n'
            '[outputs.influxdb_v1]\nurl = "http://127.0.0.1:8086"\ndatabase = "overhead"\n')


def run_agent(lab: object, config: Path, warmup_s: float, seconds: float,
              anchor: NodeExporter | None) -> Window:
    from tests.lab.lab import Lab

    assert isinstance(lab, Lab)
    argv = [sys.executable, "-m", "agent.cli", "run", "-c", str(config)]
    proc = lab.popen_in_agent_ns(argv, cwd=ROOT, env={**os.environ, "INFLUX_TOKEN": "bench"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        log(f"{config.name}: agent pid {proc.pid}; warm-up {warmup_s:.0f} s")
        time.sleep(warmup_s)
        if proc.poll() is not None:
            raise SystemExit(f"agent exited {proc.returncode}: "
                             f"{(proc.stderr.read() if proc.stderr else b'').decode()[-500:]}")
        roots = {"agent": proc.pid}
        if anchor is not None:
            roots["node_exporter"] = anchor.proc.pid
        window = Window(roots)
        log(f"{config.name}: measuring {seconds:.0f} s")
        measure(window, seconds)
        return window
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def summarise(name: str, window: Window) -> dict[str, float]:
    cpu = window.cpu_percent()
    print(f"\n{name}: {window.ended - window.started:.0f} s steady state")
    print(f"  {'process':<30} {'CPU % of a core':>16} {'peak RSS MB':>12}")
    for key in sorted(set(cpu) | set(window.peak_rss)):
        print(f"  {key:<30} {cpu.get(key, 0.0):>16.2f} "
              f"{window.peak_rss.get(key, 0) / 2**20:>12.1f}")
    return {key: round(value, 3) for key, value in cpu.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="measured window per config")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before measuring")
    parser.add_argument("--only", choices=("lab", "prod"), help="measure one config only")
    add_encoder_option(parser)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("error: run as root (the lab needs network namespaces)", file=sys.stderr)
        return 2
    exporter = shutil.which("prometheus-node-exporter")
    if exporter is None:
        print("error: prometheus-node-exporter not installed "
              "(apt-get install prometheus-node-exporter)", file=sys.stderr)
        return 2
    encoder = require_encoder(args.allow_python_encoder)

    from tests.lab.lab import Lab

    lab = Lab()
    lab.up()
    results: dict[str, object] = {"encoder": encoder, "seconds": args.seconds,
                                  "warmup_s": args.warmup}
    try:
        assert lab.influxdb is not None
        lab.influxdb.create_database("overhead")
        for target in PROD_TARGETS:  # ten more targets, reachable through every carrier
            subprocess.run(["ip", "-n", lab.target_ns, "addr", "add", f"{target}/32", "dev",
                            "lo"], check=True)
        configs = {
            "lab": lab.agent_config(lab.workdir / "lab.toml"),
            "prod": lab.workdir / "prod.toml",
        }
        configs["prod"].write_text(prod_config((ROOT / "config" / "lab.toml").read_text(),
                                               lab.workdir))
        textfiles = lab.workdir / "node-exporter-textfiles"
        textfiles.mkdir(exist_ok=True)
        for name, config in configs.items():
            if args.only and name != args.only:
                continue
            anchor = NodeExporter(exporter, textfiles)
            try:
                anchor.start()
                window = run_agent(lab, config, args.warmup, args.seconds, anchor)
            finally:
                anchor.stop()
            cpu = summarise(name, window)
            results[f"{name}_cpu_percent"] = cpu.get("agent:all", 0.0)
            results[f"{name}_rss_mb"] = round(window.peak_rss.get("agent:all", 0) / 2**20, 1)
            results[f"{name}_processes"] = {
                key.split(":", 1)[1]: {"cpu_percent": value,
                                       "peak_rss_mb": round(window.peak_rss.get(key, 0) / 2**20, 1)}
                for key, value in cpu.items()
                if key.startswith("agent:") and not key.endswith(":all")}
            results[f"{name}_node_exporter_cpu_percent"] = cpu.get("node_exporter:all", 0.0)
            results[f"{name}_node_exporter_rss_mb"] = round(
                window.peak_rss.get("node_exporter:all", 0) / 2**20, 1)
            results[f"{name}_node_exporter_scrapes"] = anchor.scrapes
    finally:
        lab.down()
    anchors = [v for k, v in results.items()
               if k.endswith("_node_exporter_cpu_percent") and isinstance(v, float)]
    rss_anchors = [v for k, v in results.items()
                   if k.endswith("_node_exporter_rss_mb") and isinstance(v, float)]
    if anchors:
        results["node_exporter_cpu_percent"] = round(sum(anchors) / len(anchors), 3)
        results["node_exporter_rss_mb"] = max(rss_anchors)
    for key, goal in GOALS.items():
        value = results.get(key)
        if isinstance(value, float):
            results[f"{key}_goal"] = goal
            results[f"{key}_meets_goal"] = value <= goal
        anchor_cpu = results.get("node_exporter_cpu_percent")
        if key.endswith("cpu_percent") and isinstance(value, float) \
                and isinstance(anchor_cpu, float) and anchor_cpu > 0:
            results[f"{key.removesuffix('_cpu_percent')}_cpu_vs_node_exporter"] = round(
                value / anchor_cpu, 2)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
