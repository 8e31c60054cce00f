"""BIRD 2 of one lab carrier: config, process (by PID), birdc, run-time injection."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.lab.netns import ns_argv, run, stop_process
from tests.lab.routes import Route, bird_route
from tests.lab.wait import NotYet, wait_until


class BirdUnreachable(RuntimeError):
    """birdc could not reach BIRD's control socket (not started yet, or restarting)."""


@dataclass(frozen=True)
class BgpPeer:
    name: str  # BIRD protocol name
    local: str
    neighbor: str
    asn: int
    next_hop6: str | None  # our IPv6 next hop on this session (IPv6 over IPv4)
    role: str  # "agent" | "carrier"


class Bird:
    """One BIRD in a carrier namespace. Files live in `workdir`."""

    def __init__(self, ns: str, asn: int, router_id: str, workdir: Path,
                 peers: list[BgpPeer], routes4: Path, routes6: Path) -> None:
        self.ns = ns
        self.asn = asn
        self.router_id = router_id
        self.workdir = workdir
        self.peers = peers
        self.routes4 = routes4
        self.routes6 = routes6
        self.conf = workdir / "bird.conf"
        self.ctl = workdir / "bird.ctl"
        self.pidfile = workdir / "bird.pid"
        self.log = workdir / "bird.log"
        self.inject4 = workdir / "inject4.conf"
        self.inject6 = workdir / "inject6.conf"
        self.injected: dict[str, Route] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def write_config(self) -> None:
        self._write_injected()
        lines = [
            f'log "{self.log}" {{ warning, error, fatal, bug }};',
            f"router id {self.router_id};",
            "protocol device { scan time 10; }",
            # The big route set goes to the agent only; to other carriers only what the
            # agent announced and what was injected (as customer routes travel).
            'filter to_carriers { if proto = "routes4" || proto = "routes6" then reject; '
            "accept; }",
            f'protocol static routes4 {{ ipv4;\ninclude "{self.routes4}";\n}}',
            f'protocol static routes6 {{ ipv6;\ninclude "{self.routes6}";\n}}',
            f'protocol static inject4 {{ ipv4;\ninclude "{self.inject4}";\n}}',
            f'protocol static inject6 {{ ipv6;\ninclude "{self.inject6}";\n}}',
        ]
        for peer in self.peers:
            export = "all" if peer.role == "agent" else "filter to_carriers"
            nh6 = f" next hop address {peer.next_hop6};" if peer.next_hop6 else ""
            lines.append(
                f"protocol bgp {peer.name} {{\n"
                f"  local {peer.local} as {self.asn};\n"
                f"  neighbor {peer.neighbor} as {peer.asn};\n"
                "  connect delay time 1; connect retry time 2; error wait time 1, 8;\n"
                f"  ipv4 {{ import all; export {export}; }};\n"
                f"  ipv6 {{ import all; export {export};{nh6} }};\n"
                "}")
        self.conf.write_text("\n".join(lines) + "\n")

    def _write_injected(self) -> None:
        v4 = [r for r in self.injected.values() if not r.is_v6]
        v6 = [r for r in self.injected.values() if r.is_v6]
        self.inject4.write_text("".join(bird_route(r) for r in v4))
        self.inject6.write_text("".join(bird_route(r) for r in v6))

    def start(self) -> None:
        if self.running():
            return
        self.ctl.unlink(missing_ok=True)
        log = open(self.workdir / "bird.stderr", "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                ns_argv(self.ns, ["bird", "-f", "-c", str(self.conf), "-s", str(self.ctl),
                                  "-P", str(self.pidfile)]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until birdc answers (the route set is loaded then). While BIRD loads a big
        table one `show status` may time out: that is "not yet", as is a control socket
        that is not there or not accepting yet."""

        def ready(left: float) -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                err = (self.workdir / "bird.stderr").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"bird in {self.ns} exited: {err}")
            if not self.ctl.exists():
                raise NotYet(f"no control socket {self.ctl} yet")
            proc = run(["birdc", "-s", str(self.ctl), "show", "status"], check=False,
                       timeout=min(10.0, left))
            if proc.returncode == 0 and "Daemon is up" in proc.stdout:
                return True
            raise NotYet(f"birdc show status: exit {proc.returncode}: "
                         f"{(proc.stdout + proc.stderr).strip()}")

        wait_until(ready, timeout, f"bird in {self.ns} to answer `birdc show status`")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, timeout)
        self.proc = None

    def birdc(self, *command: str, timeout: float = 60.0) -> str:
        """birdc's output; RuntimeError when it fails (BirdUnreachable when it could not
        connect), subprocess.TimeoutExpired after `timeout`."""
        argv = ["birdc", "-s", str(self.ctl), *command]
        proc = run(argv, check=False, timeout=timeout)
        if proc.returncode != 0:
            text = proc.stderr.strip() or proc.stdout.strip()
            error = BirdUnreachable if "Unable to connect" in text else RuntimeError
            raise error(f"{' '.join(argv)}: exit {proc.returncode}: {text}")
        return proc.stdout

    def configure(self) -> None:
        out = self.birdc("configure")
        if "Reconfigured" not in out and "Reconfiguration in progress" not in out:
            raise RuntimeError(f"birdc configure in {self.ns}: {out.strip()}")

    def announce(self, route: Route) -> None:
        self.injected[route.prefix] = route
        self._write_injected()
        self.configure()

    def withdraw(self, prefix: str) -> None:
        self.injected.pop(prefix, None)
        self._write_injected()
        self.configure()

    def protocol_states(self, timeout: float = 60.0) -> dict[str, str]:
        """BGP protocol name → BIRD state info (e.g. "Established", "Active", "Connect")."""
        states = {}
        for line in self.birdc("show", "protocols", timeout=timeout).splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[1] == "BGP":
                states[fields[0]] = fields[5]
        return states

    def exported(self, protocol: str) -> tuple[int, int]:
        """(ipv4, ipv6) routes exported on a BGP protocol (from `show protocols all`)."""
        out = self.birdc("show", "protocols", "all", protocol)
        counts = [0, 0]
        channel = -1
        for line in out.splitlines():
            stripped = line.strip()
            if stripped.startswith("Channel ipv4"):
                channel = 0
            elif stripped.startswith("Channel ipv6"):
                channel = 1
            match = re.match(r"Routes:\s+\d+ imported, (?:\d+ filtered, )?(\d+) exported",
                             stripped)
            if match and channel >= 0:
                counts[channel] = int(match.group(1))
        return counts[0], counts[1]

    def imported(self, protocol: str) -> tuple[int, int]:
        out = self.birdc("show", "protocols", "all", protocol)
        counts = [0, 0]
        channel = -1
        for line in out.splitlines():
            stripped = line.strip()
            if stripped.startswith("Channel ipv4"):
                channel = 0
            elif stripped.startswith("Channel ipv6"):
                channel = 1
            match = re.match(r"Routes:\s+(\d+) imported", stripped)
            if match and channel >= 0:
                counts[channel] = int(match.group(1))
        return counts[0], counts[1]
