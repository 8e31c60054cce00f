"""A plain BGP speaker for lab tests: ExaBGP 5.0 in the agent namespace, peering with
every carrier, announcing our prefixes, its received routes summarised into a JSON file.

Not the agent's BGP collector: ground truth that the lab's BIRDs send what they should.

    with PlainSpeaker(lab, workdir) as sp:
        sp.wait_eor(timeout=60)        # End-of-RIB from every carrier, both families
        sp.routes("telecom")           # {"10.0.0.0/24": [4134, 3356, 8919], ...}
        sp.counts("telecom")           # (ipv4, ipv6)
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.lab.netns import ns_argv
from tests.lab.wait import NotYet, wait_until

if TYPE_CHECKING:
    from tests.lab.lab import Lab

COLLECTOR = r'''
import json, os, select, sys, time
out = sys.argv[1]
peers = {}
routes = {}
dirty = {"summary": True, "routes": True, "at": 0.0}
def dump(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)
def save(force=False, idle=False):
    # summary (state, EOR, counts) at most every 0.3 s; the full routes (O(table)) only
    # when the stream is idle or on EOR / state change, so a full table stays cheap
    now = time.monotonic()
    if dirty["routes"] and (force or idle):
        dump(out + ".routes", routes)
        dirty["routes"] = False
    if dirty["summary"] and (force or idle or now - dirty["at"] >= 0.3):
        for addr, p in peers.items():
            p["counts"] = {fam: len(t) for fam, t in routes.get(addr, {}).items()}
            p["routes_saved"] = not dirty["routes"]
        dump(out, peers)
        dirty["summary"] = False
        dirty["at"] = now
def peer(addr):
    routes.setdefault(addr, {"ipv4": {}, "ipv6": {}})
    return peers.setdefault(addr, {"state": None, "eor": [], "updates": 0, "withdrawals": 0})
def path_of(attr):
    p = attr.get("as-path", [])
    if isinstance(p, dict):
        seq = []
        for seg in p.values():
            seq.extend(seg.get("value", []))
        return seq
    return list(p)
def lines():
    buf = b""
    while True:
        ready, _, _ = select.select([0], [], [], 0.1)
        if not ready:
            save(idle=True)
            continue
        chunk = os.read(0, 1 << 20)
        if not chunk:
            return
        buf += chunk
        *complete, buf = buf.split(b"\n")
        yield from complete
for line in lines():
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    n = msg.get("neighbor", {})
    addr = n.get("address", {}).get("peer")
    if not addr:
        continue
    p = peer(addr)
    dirty["summary"] = True
    force = False
    if msg.get("type") == "state":
        p["state"] = n.get("state")
        if n.get("state") == "down":
            routes[addr] = {"ipv4": {}, "ipv6": {}}
            p["eor"] = []
            dirty["routes"] = True
        force = True
    elif msg.get("type") == "update":
        m = n.get("message", {})
        if "eor" in m:
            p["eor"].append(m["eor"].get("afi"))
            force = True
        upd = m.get("update", {})
        attr = upd.get("attribute", {})
        for fam, hops in upd.get("announce", {}).items():
            table = routes[addr]["ipv6" if fam.startswith("ipv6") else "ipv4"]
            path = path_of(attr)
            for nlris in hops.values():
                for nlri in nlris:
                    table[nlri["nlri"] if isinstance(nlri, dict) else nlri] = path
                    p["updates"] += 1
                    dirty["routes"] = True
        for fam, nlris in upd.get("withdraw", {}).items():
            table = routes[addr]["ipv6" if fam.startswith("ipv6") else "ipv4"]
            for nlri in nlris:
                table.pop(nlri["nlri"] if isinstance(nlri, dict) else nlri, None)
                p["withdrawals"] += 1
                dirty["routes"] = True
    save(force)
save(True)
'''


def exabgp_binary() -> str | None:
    venv = Path(sys.executable).parent / "exabgp"
    if venv.exists():
        return str(venv)
    return shutil.which("exabgp")


class PlainSpeaker:
    def __init__(self, lab: Lab, workdir: Path, announce: list[str] | None = None,
                 hold_time: int = 30) -> None:
        self.lab = lab
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.announce = lab.announce_prefixes if announce is None else announce
        self.hold_time = hold_time
        self.out = workdir / "received.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        collector = self.workdir / "collector.py"
        collector.write_text(COLLECTOR)
        parts = [
            "process collector {\n"
            f"  run {sys.executable} {collector} {self.out};\n"
            "  encoder json;\n}\n"
        ]
        for c in self.lab.carriers:
            statics = "".join(f"    route {p} next-hop self;\n" for p in self.announce)
            parts.append(
                f"neighbor {c.gateway} {{\n"
                f"  router-id {self.lab.carriers[0].source};\n"
                f"  local-address {c.source};\n"
                f"  local-as {self.lab.local_as};\n"
                f"  peer-as {c.asn};\n"
                f"  hold-time {self.hold_time};\n"
                "  adj-rib-in false;\n"
                "  family { ipv4 unicast; ipv6 unicast; }\n"
                "  api { processes [ collector ]; receive { parsed; update; } "
                "neighbor-changes; }\n"
                f"  static {{\n{statics}  }}\n"
                "}\n")
        return "".join(parts)

    def start(self) -> None:
        binary = exabgp_binary()
        if binary is None:
            raise FileNotFoundError("exabgp not found")
        conf = self.workdir / "exabgp.conf"
        conf.write_text(self._config())
        env = self.workdir / "exabgp.env"
        env.write_text("[exabgp.daemon]\nuser = 'root'\ndrop = false\n"
                       "[exabgp.log]\nlevel = WARNING\n")
        log = open(self.workdir / "exabgp.log", "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                ns_argv(self.lab.agent_ns, [binary, "--env-file", str(env.resolve()),
                                            "server", str(conf)]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> PlainSpeaker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.out.read_text()))
        except (OSError, ValueError):
            return {}

    def _peer(self, carrier: str) -> dict[str, Any]:
        return dict(self.state().get(self.lab.carrier(carrier).gateway, {}))

    def routes(self, carrier: str, family: str = "ipv4") -> dict[str, list[int]]:
        """Prefix → AS path as received from the carrier (as of the last idle moment)."""
        try:
            every = json.loads(Path(str(self.out) + ".routes").read_text())
        except (OSError, ValueError):
            return {}
        return dict(every.get(self.lab.carrier(carrier).gateway, {}).get(family, {}))

    def counts(self, carrier: str) -> tuple[int, int]:
        counts = self._peer(carrier).get("counts", {})
        return int(counts.get("ipv4", 0)), int(counts.get("ipv6", 0))

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        """Until predicate() is truthy (returned); WaitTimeout (a TimeoutError) with the
        sessions' state after `timeout`, RuntimeError at once if ExaBGP exits."""

        def reached(_left: float) -> Any:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"exabgp exited: "
                                   f"{(self.workdir / 'exabgp.log').read_text()[-2000:]}")
            result = predicate()
            if result:
                return result
            summary = {k: (v.get("state"), v.get("eor")) for k, v in self.state().items()}
            raise NotYet(f"state: {summary}")

        return wait_until(reached, timeout, what, interval_s=0.2)

    def wait_eor(self, timeout: float = 60.0) -> None:
        """Until every carrier session is up and sent End-of-RIB for IPv4 and IPv6."""
        def done() -> bool:
            state = self.state()
            return all(
                state.get(c.gateway, {}).get("state") == "up"
                and {"ipv4", "ipv6"} <= set(state.get(c.gateway, {}).get("eor", []))
                for c in self.lab.carriers)

        self.wait(done, timeout, "End-of-RIB from every carrier")
