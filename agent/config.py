"""Configuration: the TOML file (docs/configuration.md) into typed, validated models.

Every error is collected with its key path so the operator sees all of them at once
(`FILE: key.path: reason`); nothing is applied unless the whole file is valid.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_CONFIG_PATH = Path("/etc/egress-agent/agent.toml")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
}
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")
_METHOD_RE = re.compile(r"^(icmp|tcp:\d{1,5}|dns(:[^\s]+)?|http(:/[^\s]*)?)$")

KNOWN_COLLECTORS = ("agent", "host", "disk", "links", "billing", "bgp", "probes")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """All problems of one file; str() is one `FILE: key.path: reason` line per problem."""

    def __init__(self, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {key}: {reason}" for key, reason in problems))


def parse_duration(text: str) -> float:
    """'500ms' → 0.5 seconds. Raises ValueError on anything else."""
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"bad duration {text!r} (use e.g. 500ms, 10s, 5m, 1h, 7d)")
    return float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]


def parse_size(value: int | str) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("size must not be negative")
        return value
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"bad size {value!r} (use bytes or e.g. 512MiB, 2GB)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def valid_method(method: str) -> bool:
    if not _METHOD_RE.match(method):
        return False
    if method.startswith("tcp:"):
        return 1 <= int(method[4:]) <= 65535
    return True


def valid_target(target: str) -> bool:
    """An IP address or a syntactically valid host name (resolved when probed)."""
    try:
        ipaddress.ip_address(target)
        return True
    except ValueError:
        return bool(_HOSTNAME_RE.match(target)) and not target.replace(".", "").isdigit()


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class AgentConfig:
    hostname: str
    interval_s: float = 10.0
    data_dir: Path = Path("/var/lib/egress-agent")
    control_socket: Path = Path("/run/egress-agent/control.sock")
    spool_max_bytes: int = 1 << 30
    retention_s: float = 7 * 86400.0
    fsync: str = "batch"  # batch | interval | never
    fsync_interval_s: float = 1.0  # with fsync = "interval"
    log_level: str = "info"
    log_format: str = "text"  # text | json
    collectors: tuple[str, ...] = KNOWN_COLLECTORS


@dataclass(frozen=True)
class CarrierBgpConfig:
    peer: IPAddress
    peer_as: int
    local_address: IPAddress
    hold_time_s: int = 90


@dataclass(frozen=True)
class CarrierConfig:
    name: str
    interface: str
    source: IPAddress | None = None
    source6: IPAddress | None = None
    committed_mbps: float | None = None
    table: int | None = None  # policy-routing table of this carrier (routing checks)
    bgp: CarrierBgpConfig | None = None


# ---- [bgp.ris_live] (collectors/bgp/rislive): a block of its own, see _read_ris_live

RIS_LIVE_DEFAULT_URL = "wss://ris-live.ripe.net/v1/ws/?client=egress-agent"


@dataclass(frozen=True)
class RisLiveConfig:
    url: str = RIS_LIVE_DEFAULT_URL
    client: str | None = None  # sets the URL's ?client= (the default URL has egress-agent)
    proxy: str = "env"  # env (https_proxy & co.) | none | http(s)://HOST:PORT | socks5://...
    warmup_s: float = 600.0  # no visibility judged lost before this long after connecting
    hijack_min_peers: int = 3  # vantage points that make a foreign origin a hijack event
    drop_fraction: float = 0.5  # via a carrier below this share of its usual level: lost
    min_usual_peers: int = 3  # usual levels below this are not judged
    baseline_s: float = 3600.0  # the usual level: the highest count over this window
    silence_timeout_s: float = 300.0  # no message at all for this long: feed silent, reconnect
    ping_interval_s: float = 30.0  # RIS Live `ping` messages (answered by `pong`)
    reconnect_min_s: float = 1.0  # back-off after a failed or lost connection, doubling
    reconnect_max_s: float = 120.0
    interval_s: float | None = None  # bgp_visibility / bgp_feed points; default bgp.interval


@dataclass(frozen=True)
class RpkiConfig:
    """[bgp.rpki]: where VRPs come from (collectors/bgp/rpki). Sources in order of
    preference: the RTR caches as listed, then vrp_file, then vrp_url."""

    rtr: tuple[tuple[str, int], ...] = ()  # (host, port)
    vrp_file: Path | None = None
    vrp_url: str | None = None
    refresh_s: float = 60.0  # file/URL check; RTR version 0 refresh (version 1: the cache's)
    stale_after_s: float = 7200.0  # file/URL data older than this is stale
    timeout_s: float = 10.0  # RTR connect, URL fetch


@dataclass(frozen=True)
class BgpConfig:
    local_as: int
    router_id: ipaddress.IPv4Address
    announce: tuple[IPNetwork, ...] = ()
    watch: tuple[IPNetwork, ...] = ()
    exabgp: str = "exabgp"
    interval_s: float | None = None  # bgp_session/bgp_prefix points; default agent.interval
    ris_live: RisLiveConfig | None = None  # [bgp.ris_live]: vantage points from RIPE RIS Live
    rpki: RpkiConfig | None = None


@dataclass(frozen=True)
class ProbeConfig:
    name: str
    target: str
    methods: tuple[str, ...] = ("icmp",)
    interval_s: float = 10.0
    count: int = 10
    timeout_s: float = 1.0
    carriers: tuple[str, ...] = ("*",)
    traceroute: bool = False


@dataclass(frozen=True)
class QualityConfig:
    rtt_degraded_ms: float = 100.0
    loss_degraded_pct: float = 2.0
    loss_down_pct: float = 50.0
    jitter_degraded_ms: float = 30.0


@dataclass(frozen=True)
class LinksConfig:
    interval_s: float | None = None
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ("lo",)


@dataclass(frozen=True)
class BillingConfig:
    rate: str = "max"  # max | rx | tx
    interval_s: float = 300.0  # how often `billing` is written


@dataclass(frozen=True)
class TracerouteConfig:
    interval_s: float = 300.0
    method: str = "icmp"  # icmp | udp
    max_hops: int = 30
    timeout_s: float = 1.0


@dataclass(frozen=True)
class InfluxDBConfig:
    url: str
    org: str
    bucket: str
    token_file: Path | None = None
    batch_size: int = 5000
    gzip: bool = True
    timeout_s: float = 10.0
    max_retry_delay_s: float = 60.0


@dataclass(frozen=True)
class InfluxDBv1Config:
    url: str
    database: str
    retention_policy: str | None = None
    username: str | None = None
    password_file: Path | None = None
    batch_size: int = 5000
    gzip: bool = False
    timeout_s: float = 10.0
    max_retry_delay_s: float = 60.0


@dataclass(frozen=True)
class PrometheusConfig:
    listen: str = "127.0.0.1:9273"


@dataclass(frozen=True)
class AlertmanagerConfig:
    urls: tuple[str, ...]
    resend_interval_s: float = 60.0
    timeout_s: float = 10.0
    max_retry_delay_s: float = 60.0


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    receiver: str = "egress-agent"
    timeout_s: float = 10.0
    max_retry_delay_s: float = 60.0


@dataclass(frozen=True)
class OutputsConfig:
    influxdb: InfluxDBConfig | None = None
    influxdb_v1: InfluxDBv1Config | None = None
    prometheus: PrometheusConfig | None = None
    alertmanager: AlertmanagerConfig | None = None
    webhook: WebhookConfig | None = None


@dataclass(frozen=True)
class AlertRule:
    """One built-in condition (agent/alerts/schema.py) as configured."""

    name: str
    enabled: bool = True
    for_s: float = 0.0
    params: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str) -> Any:
        return dict(self.params)[key]


def _default_rules() -> tuple[AlertRule, ...]:
    from agent.alerts.schema import CONDITIONS

    return tuple(
        AlertRule(name, True, spec.for_s,
                  tuple((k, p.default if p.kind != "duration" else parse_duration(p.default))
                        for k, p in spec.params.items()))
        for name, spec in CONDITIONS.items()
    )


@dataclass(frozen=True)
class AlertsConfig:
    enabled: bool = True
    rules: tuple[AlertRule, ...] = field(default_factory=_default_rules)

    def rule(self, name: str) -> AlertRule:
        return next(r for r in self.rules if r.name == name)


@dataclass(frozen=True)
class Config:
    path: str
    agent: AgentConfig
    carriers: tuple[CarrierConfig, ...] = ()
    bgp: BgpConfig | None = None
    probes: tuple[ProbeConfig, ...] = ()
    quality: QualityConfig = field(default_factory=QualityConfig)
    links: LinksConfig = field(default_factory=LinksConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)
    traceroute: TracerouteConfig = field(default_factory=TracerouteConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)

    def carrier(self, name: str) -> CarrierConfig | None:
        return next((c for c in self.carriers if c.name == name), None)

    def probe_carriers(self, probe: ProbeConfig) -> tuple[CarrierConfig, ...]:
        if "*" in probe.carriers:
            return self.carriers
        return tuple(c for c in self.carriers if c.name in probe.carriers)


# ---------------------------------------------------------------- reading

T = TypeVar("T")
_MISSING: Any = object()


class _Table:
    """Reads one TOML table, recording each problem under its key path."""

    def __init__(self, data: Any, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        self.ok = isinstance(data, dict)
        if not self.ok:
            problems.append((path, f"expected a table, got {type(data).__name__}"))
        self.data: dict[str, Any] = data if self.ok else {}
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, reason: str) -> None:
        self.problems.append((self.key(name), reason))

    def get(self, name: str, convert: Callable[[Any], T], default: Any = _MISSING) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if default is _MISSING:
                self.error(name, "required key is missing")
                return None
            return default
        try:
            return convert(self.data[name])
        except (ValueError, TypeError) as exc:
            self.error(name, str(exc))
            return default if default is not _MISSING else None

    def sub(self, name: str, required: bool = False) -> _Table | None:
        self.seen.add(name)
        if name not in self.data:
            if required:
                self.error(name, "required table is missing")
            return None
        return _Table(self.data[name], self.key(name), self.problems)

    def array_of_tables(self, name: str) -> list[_Table]:
        self.seen.add(name)
        value = self.data.get(name, [])
        if not isinstance(value, list):
            self.error(name, "expected an array of tables ([[...]])")
            return []
        return [
            _Table(item, f"{self.key(name)}[{i}]", self.problems) for i, item in enumerate(value)
        ]

    def finish(self) -> None:
        for name in self.data:
            if name not in self.seen:
                self.error(name, "unknown key")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _nonempty_str(value: Any) -> str:
    text = _str(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return convert


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return float(value)


def _pct(value: Any) -> float:
    number = _positive_number(value)
    if number > 100:
        raise ValueError(f"must be a percentage (0-100], got {value}")
    return number


def _duration(min_s: float = 0.001, max_s: float = 366 * 86400.0) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        seconds = parse_duration(_str(value))
        if not min_s <= seconds <= max_s:
            raise ValueError(f"must be between {min_s:g}s and {max_s:g}s, got {value!r}")
        return seconds

    return convert


def _address(value: Any) -> IPAddress:
    try:
        return ipaddress.ip_address(_str(value))
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None


def _ipv4(value: Any) -> ipaddress.IPv4Address:
    address = _address(value)
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"must be an IPv4 address: {value!r}")
    return address


def _prefix_list(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        raise TypeError("expected an array of prefixes")
    prefixes = []
    for item in value:
        try:
            prefixes.append(ipaddress.ip_network(_str(item), strict=True))
        except ValueError as exc:
            raise ValueError(f"bad prefix {item!r}: {exc}") from None
    return tuple(prefixes)


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array of strings, got {type(value).__name__}")
    return tuple(_str(item) for item in value)


def _choice(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _str(value)
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text

    return convert


def _url(value: Any) -> str:
    text = _str(value)
    if not re.match(r"^https?://[^\s/]+", text):
        raise ValueError(f"not an http(s) URL: {text!r}")
    return text.rstrip("/")


def _listen(value: Any) -> str:
    text = _str(value)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


def _methods(value: Any) -> tuple[str, ...]:
    methods = _str_list(value)
    if not methods:
        raise ValueError("at least one method is needed")
    for method in methods:
        if not valid_method(method):
            raise ValueError(
                f"unknown method {method!r} (icmp, tcp:PORT, dns[:QNAME], http[:PATH])"
            )
    return methods


def _target(value: Any) -> str:
    text = _str(value)
    if not valid_target(text):
        raise ValueError(f"not an IP address or host name: {text!r}")
    return text


def _collectors(value: Any) -> tuple[str, ...]:
    names = _str_list(value)
    for name in names:
        if name not in KNOWN_COLLECTORS:
            raise ValueError(f"unknown collector {name!r} (known: {', '.join(KNOWN_COLLECTORS)})")
    return names


def _read_agent(root: _Table) -> AgentConfig:
    table = root.sub("agent") or _Table({}, "agent", root.problems)
    agent = AgentConfig(
        hostname=table.get("hostname", _nonempty_str, socket.gethostname()),
        interval_s=table.get("interval", _duration(0.1, 86400), 10.0),
        data_dir=Path(table.get("data_dir", _nonempty_str, "/var/lib/egress-agent")),
        control_socket=Path(
            table.get("control_socket", _nonempty_str, "/run/egress-agent/control.sock")
        ),
        spool_max_bytes=table.get("spool_max_bytes", parse_size, 1 << 30),
        retention_s=table.get("retention", _duration(60, 366 * 86400), 7 * 86400.0),
        fsync=table.get("fsync", _choice("batch", "interval", "never"), "batch"),
        fsync_interval_s=table.get("fsync_interval", _duration(0.01, 60), 1.0),
        log_level=table.get("log_level", _choice("debug", "info", "warning", "error"), "info"),
        log_format=table.get("log_format", _choice("text", "json"), "text"),
        collectors=table.get("collectors", _collectors, KNOWN_COLLECTORS),
    )
    table.finish()
    return agent


def _read_carriers(root: _Table) -> tuple[CarrierConfig, ...]:
    carriers = []
    names: set[str] = set()
    for table in root.array_of_tables("carriers"):
        name = table.get("name", _nonempty_str)
        if name in names:
            table.error("name", f"duplicate carrier name {name!r}")
        names.add(name)
        bgp = None
        bgp_table = table.sub("bgp")
        if bgp_table is not None:
            bgp = CarrierBgpConfig(
                peer=bgp_table.get("peer", _address),
                peer_as=bgp_table.get("peer_as", _int_range(1, 4294967295)),
                local_address=bgp_table.get("local_address", _address),
                hold_time_s=bgp_table.get("hold_time", _int_range(3, 65535), 90),
            )
            bgp_table.finish()
        carriers.append(
            CarrierConfig(
                name=name,
                interface=table.get("interface", _nonempty_str),
                source=table.get("source", _address, None),
                source6=table.get("source6", _address, None),
                committed_mbps=table.get("committed_mbps", _positive_number, None),
                table=table.get("table", _int_range(1, 2**32 - 1), None),
                bgp=bgp,
            )
        )
        table.finish()
    return tuple(carriers)


def _read_bgp(root: _Table) -> BgpConfig | None:
    table = root.sub("bgp")
    if table is None:
        return None
    bgp = BgpConfig(
        local_as=table.get("local_as", _int_range(1, 4294967295)),
        router_id=table.get("router_id", _ipv4),
        announce=table.get("announce", _prefix_list, ()),
        watch=table.get("watch", _prefix_list, ()),
        exabgp=table.get("exabgp", _nonempty_str, "exabgp"),
        interval_s=table.get("interval", _duration(0.1, 86400), None),
        ris_live=_read_ris_live(table),
        rpki=_read_rpki(table),
    )
    table.finish()
    return bgp


def _ws_url(value: Any) -> str:
    text = _str(value)
    if not re.match(r"^wss?://[^\s/?#]+", text) or any(c.isspace() for c in text):
        raise ValueError(f"not a ws:// or wss:// URL: {text!r}")
    return text


def _proxy(value: Any) -> str:
    text = _str(value)
    if text in ("env", "none") or re.match(r"^(https?|socks5h?|socks4a?)://[^\s/]+$", text):
        return text
    raise ValueError(f"expected \"env\", \"none\" or a proxy URL such as "
                     f"http://HOST:PORT or socks5://HOST:PORT, got {text!r}")


def _fraction(value: Any) -> float:
    number = _positive_number(value)
    if number >= 1:
        raise ValueError(f"must be a fraction between 0 and 1 (exclusive), got {value}")
    return number


def _read_ris_live(bgp: _Table) -> RisLiveConfig | None:
    """`[bgp.ris_live]`: RIPE RIS Live vantage points (collectors/bgp/rislive)."""
    table = bgp.sub("ris_live")
    if table is None:
        return None
    d = RisLiveConfig()
    ris = RisLiveConfig(
        url=table.get("url", _ws_url, d.url),
        client=table.get("client", _nonempty_str, d.client),
        proxy=table.get("proxy", _proxy, d.proxy),
        warmup_s=table.get("warmup", _duration(0, 7 * 86400), d.warmup_s),
        hijack_min_peers=table.get("hijack_min_peers", _int_range(1, 100000),
                                   d.hijack_min_peers),
        drop_fraction=table.get("drop_fraction", _fraction, d.drop_fraction),
        min_usual_peers=table.get("min_usual_peers", _int_range(1, 100000), d.min_usual_peers),
        baseline_s=table.get("baseline", _duration(1, 30 * 86400), d.baseline_s),
        silence_timeout_s=table.get("silence_timeout", _duration(0.05, 86400),
                                    d.silence_timeout_s),
        ping_interval_s=table.get("ping_interval", _duration(0.05, 3600), d.ping_interval_s),
        reconnect_min_s=table.get("reconnect_min", _duration(0.01, 3600), d.reconnect_min_s),
        reconnect_max_s=table.get("reconnect_max", _duration(0.01, 86400), d.reconnect_max_s),
        interval_s=table.get("interval", _duration(0.1, 86400), None),
    )
    if (ris.reconnect_min_s or 0) > (ris.reconnect_max_s or 0):
        table.error("reconnect_min", "must not exceed reconnect_max")
    if (ris.ping_interval_s or 0) >= (ris.silence_timeout_s or 0):
        table.error("ping_interval", "must be shorter than silence_timeout (a pong is a "
                    "message: pings keep a quiet but healthy feed from looking silent)")
    table.finish()
    return ris


# ---------------------------------------------------------------- [bgp.rpki]


def _host_port(value: Any) -> tuple[str, int]:
    """'rpki.example.net:323', '192.0.2.1:8282' or '[2001:db8::1]:323'."""
    text = _str(value).strip()
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in {text!r}") from None
    elif ":" in host:
        raise ValueError(f"write an IPv6 cache as [ADDRESS]:PORT, got {text!r}")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if not valid_target(host):
        raise ValueError(f"not an address or host name: {host!r}")
    return host, int(port)


def _host_port_list(value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array of \"HOST:PORT\", got {type(value).__name__}")
    caches = []
    for position, item in enumerate(value):
        try:
            caches.append(_host_port(item))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"[{position}]: {exc}") from None
    if len(set(caches)) != len(caches):
        raise ValueError("the same cache is listed twice")
    return tuple(caches)


def _read_rpki(bgp: _Table) -> RpkiConfig | None:
    table = bgp.sub("rpki")
    if table is None:
        return None
    vrp_file = table.get("vrp_file", _nonempty_str, None)
    rpki = RpkiConfig(
        rtr=table.get("rtr", _host_port_list, ()),
        vrp_file=Path(vrp_file) if vrp_file else None,
        vrp_url=table.get("vrp_url", _url, None),
        refresh_s=table.get("refresh", _duration(1, 86400), 60.0),
        stale_after_s=table.get("stale_after", _duration(60, 30 * 86400), 7200.0),
        timeout_s=table.get("timeout", _duration(0.1, 600), 10.0),
    )
    if table.ok and not (rpki.rtr or rpki.vrp_file or rpki.vrp_url) and not any(
            key in table.data for key in ("rtr", "vrp_file", "vrp_url")):
        table.problems.append((table.path, "needs a VRP source: rtr, vrp_file or vrp_url"))
    elif table.ok and table.data.get("rtr") == [] and not (rpki.vrp_file or rpki.vrp_url):
        table.error("rtr", "empty, and no vrp_file or vrp_url either")
    table.finish()
    return rpki


def _read_probes(root: _Table, carrier_names: set[str]) -> tuple[ProbeConfig, ...]:
    probes = []
    names: set[str] = set()
    for table in root.array_of_tables("probes"):
        name = table.get("name", _nonempty_str)
        if name in names:
            table.error("name", f"duplicate probe name {name!r}")
        names.add(name)
        carriers = table.get("carriers", _str_list, ("*",))
        for carrier in carriers or ():
            if carrier != "*" and carrier not in carrier_names:
                table.error("carriers", f"unknown carrier {carrier!r}")
        probes.append(
            ProbeConfig(
                name=name,
                target=table.get("target", _target),
                methods=table.get("methods", _methods, ("icmp",)),
                interval_s=table.get("interval", _duration(0.1, 86400), 10.0),
                count=table.get("count", _int_range(1, 10000), 10),
                timeout_s=table.get("timeout", _duration(0.001, 60), 1.0),
                carriers=carriers,
                traceroute=table.get("traceroute", _bool, False),
            )
        )
        table.finish()
    return tuple(probes)


def _read_quality(root: _Table) -> QualityConfig:
    table = root.sub("quality")
    if table is None:
        return QualityConfig()
    quality = QualityConfig(
        rtt_degraded_ms=table.get("rtt_degraded_ms", _positive_number, 100.0),
        loss_degraded_pct=table.get("loss_degraded_pct", _pct, 2.0),
        loss_down_pct=table.get("loss_down_pct", _pct, 50.0),
        jitter_degraded_ms=table.get("jitter_degraded_ms", _positive_number, 30.0),
    )
    if quality.loss_degraded_pct > quality.loss_down_pct:
        table.error("loss_degraded_pct", "must not exceed loss_down_pct")
    table.finish()
    return quality


def _read_links(root: _Table) -> LinksConfig:
    table = root.sub("links")
    if table is None:
        return LinksConfig()
    links = LinksConfig(
        interval_s=table.get("interval", _duration(0.1, 86400), None),
        include=table.get("include", _str_list, ("*",)),
        exclude=table.get("exclude", _str_list, ("lo",)),
    )
    table.finish()
    return links


def _read_billing(root: _Table) -> BillingConfig:
    table = root.sub("billing")
    if table is None:
        return BillingConfig()
    billing = BillingConfig(
        rate=table.get("rate", _choice("max", "rx", "tx"), "max"),
        interval_s=table.get("interval", _duration(1, 86400), 300.0),
    )
    table.finish()
    return billing


def _read_traceroute(root: _Table) -> TracerouteConfig:
    table = root.sub("traceroute")
    if table is None:
        return TracerouteConfig()
    traceroute = TracerouteConfig(
        interval_s=table.get("interval", _duration(1, 86400), 300.0),
        method=table.get("method", _choice("icmp", "udp"), "icmp"),
        max_hops=table.get("max_hops", _int_range(1, 64), 30),
        timeout_s=table.get("timeout", _duration(0.01, 10), 1.0),
    )
    table.finish()
    return traceroute


def _delivery_options(t: _Table, gzip_default: bool) -> dict[str, Any]:
    """Keys every InfluxDB output shares."""
    return {
        "batch_size": t.get("batch_size", _int_range(1, 1_000_000), 5000),
        "gzip": t.get("gzip", _bool, gzip_default),
        "timeout_s": t.get("timeout", _duration(0.1, 600), 10.0),
        "max_retry_delay_s": t.get("max_retry_delay", _duration(0.1, 3600), 60.0),
    }


def _secret_file(t: _Table, key: str, inline_key: str, where: str) -> Path | None:
    """The path of a secret; the secret itself in the config is refused (it would end up in
    backups, diffs and `ps`)."""
    if inline_key in t.data:
        t.seen.add(inline_key)
        t.error(inline_key, f"put the {inline_key} in {where}, not in the config")
    value = t.get(key, _nonempty_str, None)
    return Path(value) if value else None


def _read_outputs(root: _Table) -> OutputsConfig:
    table = root.sub("outputs")
    if table is None:
        return OutputsConfig()
    influxdb = influxdb_v1 = prometheus = None
    t = table.sub("influxdb")
    if t is not None:
        influxdb = InfluxDBConfig(
            url=t.get("url", _url),
            org=t.get("org", _nonempty_str),
            bucket=t.get("bucket", _nonempty_str),
            token_file=_secret_file(t, "token_file", "token", "token_file or $INFLUX_TOKEN"),
            **_delivery_options(t, gzip_default=True),
        )
        t.finish()
    t = table.sub("influxdb_v1")
    if t is not None:
        influxdb_v1 = InfluxDBv1Config(
            url=t.get("url", _url),
            database=t.get("database", _nonempty_str),
            retention_policy=t.get("retention_policy", _nonempty_str, None),
            username=t.get("username", _nonempty_str, None),
            password_file=_secret_file(t, "password_file", "password", "password_file"),
            **_delivery_options(t, gzip_default=False),
        )
        t.finish()
    t = table.sub("prometheus")
    if t is not None:
        prometheus = PrometheusConfig(listen=t.get("listen", _listen, "127.0.0.1:9273"))
        t.finish()
    alertmanager = webhook = None
    t = table.sub("alertmanager")
    if t is not None:
        alertmanager = AlertmanagerConfig(
            urls=t.get("urls", _url_list),
            resend_interval_s=t.get("resend_interval", _duration(1, 3600), 60.0),
            timeout_s=t.get("timeout", _duration(0.1, 600), 10.0),
            max_retry_delay_s=t.get("max_retry_delay", _duration(0.1, 3600), 60.0),
        )
        t.finish()
    t = table.sub("webhook")
    if t is not None:
        webhook = WebhookConfig(
            url=t.get("url", _url),
            receiver=t.get("receiver", _nonempty_str, "egress-agent"),
            timeout_s=t.get("timeout", _duration(0.1, 600), 10.0),
            max_retry_delay_s=t.get("max_retry_delay", _duration(0.1, 3600), 60.0),
        )
        t.finish()
    table.finish()
    return OutputsConfig(influxdb=influxdb, influxdb_v1=influxdb_v1, prometheus=prometheus,
                         alertmanager=alertmanager, webhook=webhook)


def _url_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty array of http(s) URLs")
    return tuple(_url(item) for item in value)


def _alert_param(param: Any) -> Callable[[Any], Any]:
    """The converter of one tunable key of a condition (agent/alerts/schema.py)."""
    if param.kind == "duration":
        return _duration(param.lo, param.hi)
    if param.kind == "choice":
        return _choice(*param.choices)
    if param.kind == "int":
        return _int_range(int(param.lo), int(param.hi))

    def number(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        if not param.lo <= value <= param.hi:
            raise ValueError(f"must be between {param.lo:g} and {param.hi:g}, got {value}")
        return float(value)

    return number


def _read_alerts(root: _Table) -> AlertsConfig:
    from agent.alerts.schema import CONDITIONS

    table = root.sub("alerts")
    if table is None:
        return AlertsConfig()
    enabled = table.get("enabled", _bool, True)
    rules = []
    for name in table.data:
        if name == "enabled":
            continue
        if name not in CONDITIONS:
            table.seen.add(name)
            table.error(name, f"unknown condition (known: {', '.join(CONDITIONS)})")
    for name, spec in CONDITIONS.items():
        sub = table.sub(name) if name in table.data else None
        source = sub if sub is not None else _Table({}, table.key(name), [])
        params = []
        for key, param in spec.params.items():
            default = param.default
            if param.kind == "duration":
                default = parse_duration(default)
            params.append((key, source.get(key, _alert_param(param), default)))
        rule = AlertRule(
            name=name,
            enabled=source.get("enabled", _bool, True),
            for_s=source.get("for", _duration(0, 7 * 86400), spec.for_s),
            params=tuple(params),
        )
        values = dict(rule.params)
        if name == "utilization" and values["warning_pct"] > values["critical_pct"]:
            source.error("warning_pct", "must not exceed critical_pct")
        source.finish()
        rules.append(rule)
    table.finish()
    return AlertsConfig(enabled=enabled, rules=tuple(rules))


def parse_config(data: dict[str, Any], path: str = "<config>") -> Config:
    """Validate a parsed TOML document; raises ConfigError listing every problem."""
    problems: list[tuple[str, str]] = []
    root = _Table(data, "", problems)
    agent = _read_agent(root)
    carriers = _read_carriers(root)
    bgp = _read_bgp(root)
    probes = _read_probes(root, {c.name for c in carriers})
    config = Config(
        path=path,
        agent=agent,
        carriers=carriers,
        bgp=bgp,
        probes=probes,
        quality=_read_quality(root),
        links=_read_links(root),
        billing=_read_billing(root),
        traceroute=_read_traceroute(root),
        outputs=_read_outputs(root),
        alerts=_read_alerts(root),
    )
    root.finish()
    if problems:
        raise ConfigError(path, problems)
    return config


def default_config_path() -> Path:
    env = os.environ.get("EGRESS_AGENT_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate a config file; every failure is a ConfigError."""
    file_path = Path(path) if path is not None else default_config_path()
    try:
        raw = file_path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(file_path), [("(file)", exc.strerror or str(exc))]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(file_path), [("(file)", "not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file_path), [("(toml)", str(exc))]) from None
    return parse_config(data, str(file_path))


def secret_file_keys(config: Config) -> dict[str, str]:
    """The files holding secrets, as path text → the key naming them."""
    keys = {}
    if config.outputs.influxdb and config.outputs.influxdb.token_file:
        keys[str(config.outputs.influxdb.token_file)] = "outputs.influxdb.token_file"
    if config.outputs.influxdb_v1 and config.outputs.influxdb_v1.password_file:
        keys[str(config.outputs.influxdb_v1.password_file)] = "outputs.influxdb_v1.password_file"
    return keys


def secret_file_warnings(config: Config) -> list[str]:
    """Files holding secrets (or the config itself) that other users can read."""
    paths = [Path(config.path), *map(Path, secret_file_keys(config))]
    warnings = []
    for index, path in enumerate(paths):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & 0o004 and index > 0:
            warnings.append(f"{path}: holds a secret and is readable by other users (chmod 600)")
    return warnings
