"""The lab: an agent host multi-homed to N carriers, in network namespaces.

See tests/lab/README.md for the topology and the API. Everything made is recorded in a
state file as it is made, so `down()` (or `python -m tests.lab down`) removes exactly
that: processes by PID, namespaces by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.bird import BgpPeer, Bird, BirdUnreachable
from tests.lab.netns import in_netns, netns_list, netns_pids, ns_argv, run
from tests.lab.routes import (
    TARGET_AS,
    WATCH_PREFIX,
    Route,
    mrt_routes_file,
    synthetic,
    write_bird_routes,
)
from tests.lab.servers import InfluxDBv1, VictoriaMetrics
from tests.lab.traffic import TrafficGenerator, TrafficResult
from tests.lab.wait import TRANSIENT, NotYet, WaitTimeout, wait_until

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCAL_AS = 64512
ANNOUNCE = ["198.51.100.0/24"]
WATCH = [WATCH_PREFIX]
COMMON_TARGET = "203.0.113.10"
COMMON_TARGET6 = "2001:db8:ffff::10"
TRANSIT_IX6 = "2001:db8:ff::fe"
SINK = "192.0.2.1"
SINK_NET = "192.0.2.0/24"
TRANSIT_IX = "100.66.0.254"
RESERVED_NAMES = {"lo", "ix", "agent", "tr", "tgt", "dl"}


@dataclass
class CarrierSpec:
    name: str
    asn: int
    delay_ms: float = 10.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    link_mbps: float = 100.0


DEFAULT_CARRIERS = (
    CarrierSpec("telecom", 4134, delay_ms=10.0, link_mbps=100.0),
    CarrierSpec("unicom", 4837, delay_ms=25.0, link_mbps=100.0),
    CarrierSpec("mobile", 9808, delay_ms=40.0, link_mbps=50.0),
)


def parse_carriers(text: str) -> list[CarrierSpec]:
    """`name:asn[:delay_ms[:link_mbps[:jitter_ms[:loss_pct]]]]`, comma-separated, e.g.
    `telecom:4134:10,unicom:4837:25,mobile:9808:40:50`."""
    carriers = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) < 2:
            raise ValueError(f"bad carrier {item!r}: name:asn[:delay_ms[:link_mbps[:jitter_ms"
                             "[:loss_pct]]]]")
        spec = CarrierSpec(parts[0], int(parts[1]))
        for attr, value in zip(("delay_ms", "link_mbps", "jitter_ms", "loss_pct"), parts[2:],
                               strict=False):
            setattr(spec, attr, float(value))
        carriers.append(spec)
    return carriers


@dataclass
class LabSpec:
    carriers: list[CarrierSpec] = field(
        default_factory=lambda: [CarrierSpec(**asdict(c)) for c in DEFAULT_CARRIERS])
    routes: str = "synthetic"  # synthetic | mrt
    n_routes: int = 1000
    servers: bool = True  # InfluxDB 1.6.7 + VictoriaMetrics on the agent ns loopback

    @classmethod
    def from_env(cls) -> LabSpec:
        """Defaults, overridden by LAB_ROUTES, LAB_N_ROUTES and LAB_CARRIERS."""
        spec = cls()
        # without the server binaries the lab still comes up (lab.influxdb is None)
        spec.servers = bool(shutil.which("influxd") and shutil.which("victoria-metrics"))
        spec.routes = os.environ.get("LAB_ROUTES", spec.routes)
        spec.n_routes = int(os.environ.get("LAB_N_ROUTES", spec.n_routes))
        if os.environ.get("LAB_CARRIERS"):
            spec.carriers = parse_carriers(os.environ["LAB_CARRIERS"])
        return spec

    def validate(self) -> None:
        if not 1 <= len(self.carriers) <= 200:
            raise ValueError("1 to 200 carriers")
        names = [c.name for c in self.carriers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate carrier names: {names}")
        for c in self.carriers:
            if not c.name.isidentifier() or len(c.name) > 15 or c.name in RESERVED_NAMES:
                raise ValueError(f"bad carrier name {c.name!r} (identifier, <= 15 chars)")
        if self.routes not in ("synthetic", "mrt"):
            raise ValueError(f"routes must be synthetic or mrt, got {self.routes!r}")


@dataclass
class Carrier:
    """One carrier as tests see it (see README)."""

    name: str
    asn: int
    index: int
    ns: str
    delay_ms: float
    jitter_ms: float
    loss_pct: float
    link_mbps: float
    routes_v4: int = 0
    routes_v6: int = 0

    @property
    def uplink(self) -> str:
        return self.name

    @property
    def source(self) -> str:
        return f"100.64.{self.index}.2"

    @property
    def gateway(self) -> str:
        return f"100.64.{self.index}.1"

    @property
    def source6(self) -> str:
        return f"2001:db8:{self.index:x}::2"

    @property
    def gateway6(self) -> str:
        return f"2001:db8:{self.index:x}::1"

    @property
    def net(self) -> str:
        return f"100.64.{self.index}.0/24"

    @property
    def ix_address(self) -> str:
        return f"100.66.0.{self.index}"

    @property
    def ix_address6(self) -> str:
        return f"2001:db8:ff::{self.index:x}"

    @property
    def table(self) -> int:
        return 100 + self.index

    @property
    def target(self) -> str:
        return f"203.0.113.{10 + self.index}"

    @property
    def targets(self) -> list[str]:
        return [COMMON_TARGET, self.target]

    @property
    def net6(self) -> str:
        return f"2001:db8:{self.index:x}::/64"

    @property
    def target6(self) -> str:
        return f"2001:db8:ffff::{0x10 + self.index:x}"

    @property
    def targets6(self) -> list[str]:
        return [COMMON_TARGET6, self.target6]

    def expected_routes(self) -> tuple[int, int]:
        """(ipv4, ipv6) prefixes this carrier's BIRD sends the agent (route set only)."""
        return self.routes_v4, self.routes_v6


def _kill_pids(pids: Sequence[int], timeout: float = 5.0) -> None:
    """SIGTERM to all, wait (reaping our children), SIGKILL what is left after timeout."""
    live = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            live.append(pid)
        except ProcessLookupError:
            pass

    def all_gone(_left: float) -> bool:
        for pid in list(live):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    live.remove(pid)
                    continue
            except ChildProcessError:
                pass
            if not _alive(pid):
                live.remove(pid)
        return not live

    with contextlib.suppress(WaitTimeout):  # then SIGKILL
        wait_until(all_gone, timeout, "processes to exit on SIGTERM", interval_s=0.02)
    for pid in live:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _kill_pid(pid: int, timeout: float = 5.0) -> None:
    _kill_pids([pid], timeout)


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (an orphan's zombie may wait long for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Lab:
    def __init__(self, spec: LabSpec | None = None, workdir: Path | str | None = None,
                 prefix: str | None = None, state_file: Path | str | None = None) -> None:
        self.spec = spec or LabSpec()
        self.spec.validate()
        self.prefix = prefix or f"el{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.workdir = Path(workdir) if workdir else Path(f"/run/egress-agent-lab/{self.prefix}")
        self.state_file = Path(state_file) if state_file else self.workdir / "state.json"
        self.agent_ns = f"{self.prefix}-agent"
        self.transit_ns = f"{self.prefix}-transit"
        self.target_ns = f"{self.prefix}-target"
        self.carriers = [
            Carrier(c.name, c.asn, i, f"{self.prefix}-{c.name}", c.delay_ms, c.jitter_ms,
                    c.loss_pct, c.link_mbps)
            for i, c in enumerate(self.spec.carriers, start=1)
        ]
        self.local_as = LOCAL_AS
        self.announce_prefixes = list(ANNOUNCE)
        self.watch = list(WATCH)
        self.target = COMMON_TARGET
        self.target6 = COMMON_TARGET6
        self.sink = SINK
        self.birds: dict[str, Bird] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.influxdb: InfluxDBv1 | None = None
        self.victoria_metrics: VictoriaMetrics | None = None
        self.namespaces: list[str] = []
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------ properties

    @property
    def targets(self) -> list[str]:
        return [COMMON_TARGET] + [c.target for c in self.carriers]

    @property
    def targets6(self) -> list[str]:
        return [COMMON_TARGET6] + [c.target6 for c in self.carriers]

    @property
    def influxdb_url(self) -> str:
        return "http://127.0.0.1:8086"

    @property
    def victoria_metrics_url(self) -> str:
        return "http://127.0.0.1:8428"

    def carrier(self, name: str) -> Carrier:
        for c in self.carriers:
            if c.name == name:
                return c
        raise KeyError(f"no carrier {name!r} (have {[c.name for c in self.carriers]})")

    # ------------------------------------------------------------ state

    def _save_state(self) -> None:
        pids = {}
        for key, proc in self.procs.items():
            pids[key] = [proc.pid, _start_time(proc.pid)]
        for name, bird in self.birds.items():
            if bird.pid:
                pids[f"bird-{name}"] = [bird.pid, _start_time(bird.pid)]
        for server in (self.influxdb, self.victoria_metrics):
            if server is not None and server.pid and server.running():
                pids[server.name] = [server.pid, _start_time(server.pid)]
        state = {
            "prefix": self.prefix,
            "workdir": str(self.workdir),
            "namespaces": self.namespaces,
            "pids": pids,
            "agent_ns": self.agent_ns,
            "carriers": [
                {"name": c.name, "asn": c.asn, "ns": c.ns, "uplink": c.uplink,
                 "source": c.source, "gateway": c.gateway, "table": c.table,
                 "target": c.target, "delay_ms": c.delay_ms, "jitter_ms": c.jitter_ms,
                 "loss_pct": c.loss_pct, "link_mbps": c.link_mbps,
                 "routes": [c.routes_v4, c.routes_v6], "bird_ctl": str(self.birds[c.name].ctl)
                 if c.name in self.birds else None}
                for c in self.carriers
            ],
            "target": COMMON_TARGET,
            "influxdb_url": self.influxdb_url if self.influxdb else None,
            "victoria_metrics_url": self.victoria_metrics_url if self.victoria_metrics else None,
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_file)

    # ------------------------------------------------------------ up

    def _ns_add(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self._save_state()

    def _batch(self, ns: str, commands: list[str]) -> None:
        """`ip -batch` in a namespace; lines starting with "-6 " go to an `ip -6` batch."""
        v4 = [c for c in commands if not c.startswith("-6 ")]
        v6 = [c[3:] for c in commands if c.startswith("-6 ")]
        run(["ip", "-n", ns, "-batch", "-"], input="\n".join(v4) + "\n")
        if v6:
            run(["ip", "-6", "-n", ns, "-batch", "-"], input="\n".join(v6) + "\n")

    def _sysctl(self, ns: str, values: dict[str, str]) -> None:
        def write() -> None:
            for key, value in values.items():
                path = Path("/proc/sys") / key.replace(".", "/")
                path.write_text(value)
            # interfaces made before `default` changed keep DAD on: link-local addresses
            # would stay tentative ~1 s after link up, and the first ND of a probe fails
            # and IPv6 addresses would vanish on link down (set_link) without keep_addr_on_down
            for conf in Path("/proc/sys/net/ipv6/conf").iterdir():
                (conf / "accept_dad").write_text("0")
                (conf / "dad_transmits").write_text("0")
                (conf / "keep_addr_on_down").write_text("1")

        in_netns(ns, write)

    def _veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        run(["ip", "link", "add", "name", name_a, "netns", ns_a, "type", "veth",
             "peer", "name", name_b, "netns", ns_b])

    def up(self, owned: bool = True) -> Lab:
        """Build it. `owned`: the lab dies with this process (`python -m tests.lab gc`
        removes it if this process is killed before `down()`); the CLI passes False."""
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        _register(self.prefix, self.state_file, os.getpid() if owned else None)
        try:
            self._up_network()
            self.timings["network_s"] = time.monotonic() - t0
            self._up_processes()
            self.timings["up_s"] = time.monotonic() - t0
        except BaseException:
            self.down()
            raise
        return self

    def _up_network(self) -> None:
        for ns in [self.agent_ns, self.transit_ns, self.target_ns, *(c.ns for c in self.carriers)]:
            self._ns_add(ns)
        # links: agent <-> carrier, carrier <-> transit (IX bridge), transit <-> target
        for c in self.carriers:
            self._veth(self.agent_ns, c.uplink, c.ns, "agent")
            self._veth(c.ns, "ix", self.transit_ns, f"c{c.index}")
        self._veth(self.transit_ns, "tgt", self.target_ns, "tr")
        forwarding = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
                      "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
                      "net.ipv4.icmp_ratelimit": "0", "net.ipv6.icmp.ratelimit": "0",
                      "net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}

        # agent namespace
        cmds = ["link set dev lo up"]
        for c in self.carriers:
            cmds += [
                f"addr add {c.source}/24 dev {c.uplink}",
                f"addr add {c.source6}/64 dev {c.uplink} nodad",
                f"link set dev {c.uplink} up",
                f"route add {c.net} dev {c.uplink} src {c.source} table {c.table}",
                f"route add default via {c.gateway} dev {c.uplink} table {c.table}",
                f"-6 route add default via {c.gateway6} dev {c.uplink} table {c.table}",
                f"rule add from {c.source} lookup {c.table} pref {1000 + c.index}",
                f"rule add oif {c.uplink} lookup {c.table} pref {2000 + c.index}",
                f"-6 rule add from {c.source6} lookup {c.table} pref {1000 + c.index}",
                f"-6 rule add oif {c.uplink} lookup {c.table} pref {2000 + c.index}",
            ]
        first = self.carriers[0]
        cmds += [f"route add default via {first.gateway} dev {first.uplink}",
                 f"-6 route add default via {first.gateway6} dev {first.uplink}"]
        self._sysctl(self.agent_ns, {"net.ipv4.ping_group_range": "0 2147483647",
                                     "net.ipv6.conf.all.accept_dad": "0",
                                     "net.ipv6.conf.default.accept_dad": "0",
                                     "net.ipv4.conf.all.rp_filter": "0",
                                     "net.ipv4.conf.default.rp_filter": "0"})
        self._batch(self.agent_ns, cmds)

        # carrier namespaces
        for c in self.carriers:
            self._sysctl(c.ns, forwarding)
            cmds = [
                "link set dev lo up",
                f"addr add {c.gateway}/24 dev agent",
                f"addr add {c.gateway6}/64 dev agent nodad",
                "link set dev agent up",
                f"addr add {c.ix_address}/24 dev ix",
                f"addr add {c.ix_address6}/64 dev ix nodad",
                "link set dev ix up",
                f"route add default via {TRANSIT_IX} dev ix",
                f"-6 route add default via {TRANSIT_IX6} dev ix",
                f"route add blackhole {SINK_NET}",
            ]
            for other in self.carriers:
                if other is not c:
                    cmds.append(f"route add {other.net} via {other.ix_address} dev ix")
            self._batch(c.ns, cmds + self._uplink_routes(c))

        # transit: IX bridge, delay line tun, link to the targets
        self._sysctl(self.transit_ns, forwarding)
        cmds = ["link set dev lo up", "link add ix type bridge", "link set ix up",
                f"addr add {TRANSIT_IX}/24 dev ix", f"addr add {TRANSIT_IX6}/64 dev ix nodad"]
        for c in self.carriers:
            cmds += [f"link set dev c{c.index} master ix", f"link set c{c.index} up",
                     f"route add {c.net} via {c.ix_address} dev ix",
                     f"-6 route add {c.net6} via {c.ix_address6} dev ix"]
        cmds += [
            "tuntap add dev dl mode tun", "link set dev dl up",
            "addr add 203.0.113.1/30 dev tgt", "link set dev tgt up",
            "route add 203.0.113.0/24 via 203.0.113.2 dev tgt",
            # from the IX towards the targets: into the delay line (the way back is not
            # delayed, so it does not pass through it: two more hand-offs to a process
            # added 0.25 ms to every RTT)
            "route add 203.0.113.0/24 dev dl table 10",
            "rule add iif ix lookup 10 pref 100",
            "addr add 2001:db8:fffe::1/64 dev tgt nodad",
            "-6 route add 2001:db8:ffff::/64 via 2001:db8:fffe::2 dev tgt",
            "-6 route add 2001:db8:ffff::/64 dev dl table 10",
            "-6 rule add iif ix lookup 10 pref 100",
        ]
        self._batch(self.transit_ns, cmds)
        self._sysctl(self.transit_ns, {"net.ipv4.conf.dl.rp_filter": "0",
                                       "net.ipv4.conf.tgt.rp_filter": "0",
                                       "net.ipv4.conf.ix.rp_filter": "0"})

        # targets
        self._sysctl(self.target_ns, {"net.ipv4.icmp_ratelimit": "0",
                                      "net.ipv6.icmp.ratelimit": "0",
                                      "net.ipv4.ping_group_range": "0 2147483647"})
        cmds = ["link set dev lo up", "addr add 203.0.113.2/30 dev tr", "link set dev tr up",
                "route add default via 203.0.113.1 dev tr",
                "addr add 2001:db8:fffe::2/64 dev tr nodad",
                "-6 route add default via 2001:db8:fffe::1 dev tr"]
        cmds += [f"addr add {t}/32 dev lo" for t in self.targets]
        cmds += [f"addr add {t}/128 dev lo nodad" for t in self.targets6]
        self._batch(self.target_ns, cmds)

        # uplink caps: tbf at link_mbps on both ends
        for c in self.carriers:
            self._tbf(self.agent_ns, c.uplink, c.link_mbps)
            self._tbf(c.ns, "agent", c.link_mbps)

    def _tbf(self, ns: str, dev: str, mbps: float) -> None:
        burst = max(32 * 1024, int(mbps * 1e6 / 8 * 0.004))
        run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
             "rate", f"{int(mbps * 1000)}kbit", "burst", str(burst), "latency", "50ms"])

    def _delay_config(self) -> dict[str, Any]:
        return {
            "carriers": [{"net": c.net, "net6": c.net6, "delay_ms": c.delay_ms,
                          "jitter_ms": c.jitter_ms,
                          "loss_pct": c.loss_pct} for c in self.carriers],
            "only_via": {**{c.target: c.net for c in self.carriers},
                         **{c.target6: c.net6 for c in self.carriers}},
        }

    def _spawn(self, key: str, ns: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{key}.log", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(ns_argv(ns, argv), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        self.procs[key] = proc
        self._save_state()
        return proc

    def _up_processes(self) -> None:
        # delay line and target services
        delay_config = json.dumps(self._delay_config())
        (self.workdir / "delayline.json").write_text(delay_config)
        self._spawn("delayline", self.transit_ns,
                    [sys.executable, str(HERE / "delayline.py"), "--tun", "dl",
                     "--config", str(self.workdir / "delayline.json")])
        self._spawn("targets", self.target_ns,
                    [sys.executable, str(HERE / "targets.py"), "--answer", COMMON_TARGET,
                     "--udp-bind", ",".join(self.targets + self.targets6)])
        # BIRDs
        mrt_file: Path | None = None
        mrt_count = 0
        if self.spec.routes == "mrt":
            mrt_file, mrt_count = mrt_routes_file(self.carriers[0].asn)
        for c in self.carriers:
            cdir = self.workdir / c.name
            cdir.mkdir(parents=True, exist_ok=True)
            routes4, routes6 = cdir / "routes4.conf", cdir / "routes6.conf"
            if mrt_file is not None:
                routes4 = mrt_file
                routes6.write_text("")
                extra = cdir / "extra4.conf"
                c.routes_v4, c.routes_v6 = mrt_count, 0
                write_bird_routes([Route(WATCH_PREFIX, (TARGET_AS,), ((c.asn, 100),))], extra)
                # the watch prefix in a second include (the cached file stays shared)
                routes4 = self._join_includes(cdir, mrt_file, extra)
                c.routes_v4 += 1
            else:
                route_set = synthetic(c.asn, self.spec.n_routes)
                write_bird_routes(route_set.v4, routes4)
                write_bird_routes(route_set.v6, routes6)
                c.routes_v4, c.routes_v6 = route_set.counts()
            peers = [BgpPeer("agent", c.gateway, c.source, LOCAL_AS, c.gateway6, "agent")]
            for other in self.carriers:
                if other is not c:
                    peers.append(BgpPeer(f"ix_{other.name}", c.ix_address, other.ix_address,
                                         other.asn, c.ix_address6, "carrier"))
            bird = Bird(c.ns, c.asn, c.gateway, cdir, peers, routes4, routes6)
            bird.write_config()
            bird.start()
            self.birds[c.name] = bird
            self._save_state()
        # servers on the agent namespace's loopback
        if self.spec.servers:
            self.influxdb = InfluxDBv1(data_dir=self.workdir / "influxdb", netns=self.agent_ns,
                                       port=8086, rpc_port=8088)
            self.influxdb.start()
            self.influxdb.create_database("egress")
            self._save_state()
            self.victoria_metrics = VictoriaMetrics(data_dir=self.workdir / "vm",
                                                    netns=self.agent_ns, port=8428)
            self.victoria_metrics.start()
            self._save_state()
        self._wait_delay_line(delay_config)
        self._warm_up()
        for bird in self.birds.values():
            bird.wait_ready(timeout=120 if mrt_file else 30)
        self._save_state()

    def _warm_up(self) -> None:
        """One ping per carrier to its targets, so every hop has resolved its neighbours
        (else the very first probe through a fresh lab can be lost: a TTL-expired ICMP
        error from the transit waits on ARP and is dropped)."""
        # veth carrier changes reach the bridge through linkwatch, up to ~1 s late
        def forwarding(left: float) -> bool:
            ports = json.loads(run(["bridge", "-n", self.transit_ns, "-j", "link", "show"],
                                   timeout=left).stdout or "[]")
            if len(ports) == len(self.carriers) and all(
                    p.get("state") == "forwarding" for p in ports):
                return True
            raise NotYet(f"bridge ports: {[(p.get('ifname'), p.get('state')) for p in ports]}")

        wait_until(forwarding, 5.0, f"all {len(self.carriers)} ports of the IX bridge in "
                   f"{self.transit_ns} to forward", interval_s=0.02)
        procs = [subprocess.Popen(ns_argv(self.agent_ns, [
            "ping", "-n", "-q", "-c", "1", "-W", "2", "-I", c.source, t]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for c in self.carriers for t in c.targets]
        procs += [subprocess.Popen(ns_argv(self.agent_ns, [
            "ping", "-6", "-n", "-q", "-c", "1", "-W", "2", "-I", c.source6, t]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for c in self.carriers for t in [c.gateway6, *c.targets6]]

        def pings_done(_left: float) -> bool:
            running = [" ".join(p.args[-3:]) for p in procs if p.poll() is None]
            if running:
                raise NotYet(f"{len(running)} of {len(procs)} still running: {running}")
            return True

        try:  # each ping gives up after 2 s (-W 2)
            wait_until(pings_done, 10.0, "the warm-up pings to finish", interval_s=0.01)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def _wait_delay_line(self, config: str, timeout: float = 5.0) -> None:
        """Until the delay line has loaded `config` (after each load it writes what it
        loaded to delayline.json.loaded)."""
        loaded = self.workdir / "delayline.json.loaded"
        log = self.workdir / "delayline.log"
        proc = self.procs["delayline"]

        def has_loaded(_left: float) -> bool:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the delay line exited with {proc.returncode}: {tail}")
            if loaded.read_text() == config:  # absent (OSError): not yet
                return True
            raise NotYet(f"{loaded} holds an older config (a failed reload says why in {log})")

        wait_until(has_loaded, timeout, "the delay line to load its new config",
                   interval_s=0.005)

    @staticmethod
    def _join_includes(cdir: Path, *files: Path) -> Path:
        joined = cdir / "routes4-all.conf"
        joined.write_text("".join(f'include "{f}";\n' for f in files))
        return joined

    def wait_carrier_mesh(self, timeout: float = 20.0) -> None:
        """Until every carrier-to-carrier session is Established (a BIRD that does not
        answer yet, e.g. just restarted or busy loading its table, is "not yet")."""

        def established(left: float) -> bool:
            end = time.monotonic() + left
            pending = []
            for name, bird in self.birds.items():
                states = bird.protocol_states(timeout=max(end - time.monotonic(), 0.001))
                pending += [f"{name}:{proto} {state}" for proto, state in states.items()
                            if proto.startswith("ix_") and state != "Established"]
            if pending:
                raise NotYet(f"not Established: {pending}")
            return True

        wait_until(established, timeout, "every carrier-to-carrier BGP session to be "
                   "Established", interval_s=0.2, transient=(*TRANSIENT, BirdUnreachable))

    # ------------------------------------------------------------ down

    def down(self) -> None:
        """Stop every process by PID and delete every namespace by name. Idempotent."""
        pids = [p.pid for p in self.procs.values() if p.poll() is None]
        pids += [b.proc.pid for b in self.birds.values() if b.proc and b.proc.poll() is None]
        for server in (self.influxdb, self.victoria_metrics):
            if server is not None and server.proc is not None and server.proc.poll() is None:
                pids.append(server.proc.pid)
        _kill_pids(pids)
        for proc in self.procs.values():
            proc.poll()
        for bird in self.birds.values():
            bird.stop()
        for server in (self.influxdb, self.victoria_metrics):
            if server is not None:
                server.stop()
        _down_from_state(self.state_file, quiet=True)
        _unregister(self.prefix)
        self.birds.clear()
        self.procs.clear()
        self.namespaces.clear()

    # ------------------------------------------------------------ run-time helpers

    def birdc(self, carrier: str, *command: str) -> str:
        words = command[0].split() if len(command) == 1 else list(command)
        return self.birds[carrier].birdc(*words)

    def announce(self, carrier: str, prefix: str, as_path: Sequence[int] = (),
                 communities: Sequence[tuple[int, int]] = ()) -> None:
        """Inject `prefix` at `carrier`: the agent sees [carrier_as, *as_path] from it."""
        self.birds[carrier].announce(Route(prefix, tuple(as_path), tuple(communities)))

    def withdraw(self, carrier: str, prefix: str) -> None:
        self.birds[carrier].withdraw(prefix)

    def carrier_route(self, carrier: str, prefix: str) -> list[int] | None:
        """The AS path of the carrier's best route for exactly `prefix`, as the carrier
        holds it (a looking glass: without the carrier's own AS), or None if it has none."""
        proc = run(["birdc", "-s", str(self.birds[carrier].ctl), "show", "route", prefix,
                    "all"], check=False)
        in_best = False
        for line in proc.stdout.splitlines():
            if line.startswith("\t"):
                if in_best and "BGP.as_path:" in line:
                    return [int(x) for x in line.split(":", 1)[1].split()]
            elif "[" in line and "]" in line:
                if in_best:
                    return []  # the best route had no AS path
                in_best = " * " in line.split("]", 1)[1] + " "
        return [] if in_best else None

    def stop_bird(self, carrier: str) -> None:
        self.birds[carrier].stop()
        self._save_state()

    def start_bird(self, carrier: str) -> None:
        bird = self.birds[carrier]
        bird.start()
        bird.wait_ready()
        self._save_state()

    @staticmethod
    def _uplink_routes(c: Carrier) -> list[str]:
        """Carrier routes through its `agent` link (the kernel drops them on link down)."""
        return [f"route replace {prefix} via {c.source} dev agent" for prefix in ANNOUNCE]

    def set_link(self, carrier: str, up: bool) -> None:
        """Carrier side of the uplink down/up (the agent's interface loses carrier).
        Addresses stay (keep_addr_on_down); routes over the link come back on up."""
        c = self.carrier(carrier)
        run(["ip", "-n", c.ns, "link", "set", "dev", "agent", "up" if up else "down"])
        if up:
            self._batch(c.ns, self._uplink_routes(c))

    def set_delay(self, carrier: str, delay_ms: float | None = None,
                  jitter_ms: float | None = None, loss_pct: float | None = None) -> None:
        c = self.carrier(carrier)
        if delay_ms is not None:
            c.delay_ms = delay_ms
        if jitter_ms is not None:
            c.jitter_ms = jitter_ms
        if loss_pct is not None:
            c.loss_pct = loss_pct
        config = json.dumps(self._delay_config())
        (self.workdir / "delayline.json").write_text(config)
        self.procs["delayline"].send_signal(signal.SIGHUP)
        self._wait_delay_line(config)

    def delay_line_stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """What the delay line added since the last call: how many packets it held, how
        late they left against their due time (`late_ms_median`, `_p99`, `_max`), how many
        it dropped, and how many it could only time from when it read them (`unstamped`)."""
        stats = self.workdir / "delayline.json.stats"
        stats.unlink(missing_ok=True)
        self.procs["delayline"].send_signal(signal.SIGUSR1)

        def written(_left: float) -> dict[str, Any]:
            try:
                return dict(json.loads(stats.read_text()))
            except FileNotFoundError:
                raise NotYet(f"no {stats}") from None

        return wait_until(written, timeout, "the delay line's stats", interval_s=0.005)

    def exec_in_agent_ns(self, argv: Sequence[str], timeout: float = 60.0,
                         check: bool = False) -> subprocess.CompletedProcess[str]:
        return run(list(argv), netns=self.agent_ns, check=check, timeout=timeout)

    def popen_in_agent_ns(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(ns_argv(self.agent_ns, list(argv)), **kwargs)

    def counters(self, carrier: str) -> dict[str, int]:
        """Carrier-side counters of the uplink (`agent` in the carrier namespace)."""
        c = self.carrier(carrier)
        out = run(["ip", "-n", c.ns, "-s", "-j", "link", "show", "agent"]).stdout
        stats = json.loads(out)[0]["stats64"]
        return {
            "rx_bytes": stats["rx"]["bytes"], "rx_packets": stats["rx"]["packets"],
            "tx_bytes": stats["tx"]["bytes"], "tx_packets": stats["tx"]["packets"],
            "rx_dropped": stats["rx"]["dropped"], "tx_dropped": stats["tx"]["dropped"],
        }

    def traffic_generator(self, carrier: str, mbps: float, direction: str = "up",
                          payload_bytes: int = 1400) -> TrafficGenerator:
        """A generator (not started): up = agent → sink behind the carrier (carrier-side
        rx), down = carrier → agent source address (carrier-side tx)."""
        c = self.carrier(carrier)
        if direction == "up":
            ns, bind, dest = self.agent_ns, c.source, (SINK, 9)
        elif direction == "down":
            ns, bind, dest = c.ns, c.gateway, (c.source, 9)
        else:
            raise ValueError("direction is up or down")

        def make() -> socket.socket:
            def inner() -> socket.socket:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                sock.bind((bind, 0))
                return sock

            return in_netns(ns, inner)

        return TrafficGenerator(make, dest, mbps, payload_bytes)

    def traffic(self, carrier: str, mbps: float, seconds: float = 3.0,
                direction: str = "up", payload_bytes: int = 1400) -> TrafficResult:
        """Push `mbps` for `seconds` and measure it on the carrier side."""
        gen = self.traffic_generator(carrier, mbps, direction, payload_bytes)
        key = "rx_bytes" if direction == "up" else "tx_bytes"
        before = self.counters(carrier)[key]
        t0 = time.monotonic()
        gen.start(seconds)
        gen.join()
        time.sleep(0.05)  # let the queue drain
        elapsed = time.monotonic() - t0
        after = self.counters(carrier)[key]
        return TrafficResult(asked_mbps=mbps, seconds=min(elapsed, seconds)
                             if elapsed - seconds < 0.2 else seconds,
                             sent_bytes=gen.sent_bytes, carrier_bytes=after - before,
                             packets=gen.packets)

    def agent_config(self, path: Path | str, source: Path | str | None = None) -> Path:
        """config/lab.toml with data_dir and control_socket under this lab's workdir."""
        text = Path(source or REPO / "config" / "lab.toml").read_text()
        text = text.replace("/tmp/egress-agent-lab/data", str(self.workdir / "agent-data"))
        text = text.replace("/tmp/egress-agent-lab/control.sock",
                            str(self.workdir / "agent-control.sock"))
        out = Path(path)
        out.write_text(text)
        return out

    def describe(self) -> str:
        lines = [f"lab {self.prefix}: namespaces {', '.join(self.namespaces)}",
                 f"  agent ns {self.agent_ns}; targets {', '.join(self.targets)}"]
        for c in self.carriers:
            lines.append(
                f"  {c.name:<8} AS{c.asn:<6} ns {c.ns}  uplink {c.uplink}  src {c.source}"
                f"  gw {c.gateway}  table {c.table}  target {c.target}  delay {c.delay_ms} ms"
                f"  jitter {c.jitter_ms} ms  loss {c.loss_pct} %  link {c.link_mbps} Mbit/s"
                f"  routes v4 {c.routes_v4} v6 {c.routes_v6}"
                f"  bird pid {self.birds[c.name].pid if c.name in self.birds else '-'}")
        if self.influxdb:
            lines.append(f"  influxdb {self.influxdb_url} (pid {self.influxdb.pid}), "
                         f"victoria-metrics {self.victoria_metrics_url} "
                         f"(pid {self.victoria_metrics.pid if self.victoria_metrics else '-'}),"
                         " on the agent ns loopback")
        lines.append(f"  workdir {self.workdir}; state {self.state_file}")
        if self.timings:
            lines.append("  " + ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items()))
        return "\n".join(lines)


def _down_from_state(state_file: Path, quiet: bool = False) -> list[str]:
    """Remove what a state file records: PIDs (if still the same process), then any
    process left in its namespaces, then the namespaces. Returns what was removed."""
    removed: list[str] = []
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return removed
    pids = []
    for key, (pid, start) in state.get("pids", {}).items():
        if start is not None and _start_time(pid) == start:
            pids.append(pid)
            removed.append(f"{key} pid {pid}")
    _kill_pids(pids)
    existing = set(netns_list())
    for ns in state.get("namespaces", []):
        if ns not in existing:
            continue
        stray = netns_pids(ns)
        _kill_pids(stray)
        removed.extend(f"pid {pid} in {ns}" for pid in stray)
        run(["ip", "netns", "del", ns], check=False)
        removed.append(f"netns {ns}")
    state["namespaces"] = []
    state["pids"] = {}
    state_file.write_text(json.dumps(state, indent=2))
    if not quiet:
        for line in removed:
            print(f"removed {line}")
    return removed


def down_state(state_file: Path | str) -> list[str]:
    removed = _down_from_state(Path(state_file))
    for entry in REGISTRY.glob("*.json"):
        try:
            if json.loads(entry.read_text()).get("state_file") == str(Path(state_file)):
                entry.unlink()
        except (OSError, ValueError):
            pass
    return removed


REGISTRY = Path("/run/egress-agent-lab/registry")


def _register(prefix: str, state_file: Path, owner: int | None) -> None:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    (REGISTRY / f"{prefix}.json").write_text(json.dumps({
        "state_file": str(state_file), "owner_pid": owner,
        "owner_start": _start_time(owner) if owner else None}))


def _unregister(prefix: str) -> None:
    (REGISTRY / f"{prefix}.json").unlink(missing_ok=True)


def gc_labs() -> list[str]:
    """Take down labs whose owning process is gone (a test run that was SIGKILLed).
    Labs without an owner (made by `python -m tests.lab up`) stay until `down`."""
    removed = []
    for entry in sorted(REGISTRY.glob("*.json")) if REGISTRY.exists() else []:
        try:
            info = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        owner = info.get("owner_pid")
        if owner is None:
            continue
        if _alive(owner) and _start_time(owner) == info.get("owner_start"):
            continue
        removed += _down_from_state(Path(info["state_file"]), quiet=True)
        entry.unlink(missing_ok=True)
        removed.append(f"lab {entry.stem}")
    return removed


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
