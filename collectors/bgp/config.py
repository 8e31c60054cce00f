"""`[bgp]` with `[bgp.ris_live]` and `[bgp.rpki]`: the tables of the bgp package."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import model_validator

from agent.config import Section
from agent.config.base import Problems, validate_with
from agent.config.types import (
    IPV4,
    FilePath,
    Fraction,
    NonEmptyStr,
    Prefixes,
    Url,
    duration,
    int_range,
    to_str,
    toml_value,
    valid_target,
)
from agent.registry import Table

RIS_LIVE_DEFAULT_URL = "wss://ris-live.ripe.net/v1/ws/?client=egress-agent"


def to_ws_url(value: Any) -> str:
    text = to_str(value)
    if not re.match(r"^wss?://[^\s/?#]+", text) or any(c.isspace() for c in text):
        raise ValueError(f"not a ws:// or wss:// URL: {text!r}")
    return text


def to_proxy(value: Any) -> str:
    text = to_str(value)
    if text in ("env", "none") or re.match(r"^(https?|socks5h?|socks4a?)://[^\s/]+$", text):
        return text
    raise ValueError(f"expected \"env\", \"none\" or a proxy URL such as "
                     f"http://HOST:PORT or socks5://HOST:PORT, got {text!r}")


def to_host_port(value: Any) -> tuple[str, int]:
    """'rpki.example.net:323', '192.0.2.1:8282' or '[2001:db8::1]:323'."""
    text = to_str(value).strip()
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


def to_host_port_list(value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array of \"HOST:PORT\", got {type(value).__name__}")
    caches = []
    for position, item in enumerate(value):
        try:
            caches.append(to_host_port(item))
        except ValueError as exc:
            raise ValueError(f"[{position}]: {exc}") from None
    if len(set(caches)) != len(caches):
        raise ValueError("the same cache is listed twice")
    return tuple(caches)


Peers = Annotated[int, int_range(1, 100000)]


class RisLiveConfig(Section):
    """[bgp.ris_live]: vantage points from RIPE RIS Live (collectors/bgp/rislive)."""

    url: Annotated[str, toml_value(to_ws_url)] = RIS_LIVE_DEFAULT_URL
    client: NonEmptyStr | None = None  # sets the URL's ?client= (the default URL has one)
    # env (https_proxy & co.) | none | http(s)://HOST:PORT | socks5://...
    proxy: Annotated[str, toml_value(to_proxy)] = "env"
    # no visibility judged lost before this long after connecting
    warmup_s: Annotated[float, duration(0, 7 * 86400)] = 600.0
    hijack_min_peers: Peers = 3  # vantage points that make a foreign origin a hijack event
    drop_fraction: Fraction = 0.5  # via a carrier below this share of its usual level: lost
    min_usual_peers: Peers = 3  # usual levels below this are not judged
    # the usual level: the highest count over this window
    baseline_s: Annotated[float, duration(1, 30 * 86400)] = 3600.0
    # no message at all for this long: feed silent, reconnect
    silence_timeout_s: Annotated[float, duration(0.05, 86400)] = 300.0
    ping_interval_s: Annotated[float, duration(0.05, 3600)] = 30.0  # answered by `pong`
    # back-off after a failed or lost connection, doubling
    reconnect_min_s: Annotated[float, duration(0.01, 3600)] = 1.0
    reconnect_max_s: Annotated[float, duration(0.01, 86400)] = 120.0
    # bgp_visibility / bgp_feed points; default bgp.interval
    interval_s: Annotated[float | None, duration(0.1, 86400)] = None

    @model_validator(mode="after")
    def _timers(self) -> RisLiveConfig:
        problems = []
        if self.reconnect_min_s > self.reconnect_max_s:
            problems.append(("reconnect_min", "must not exceed reconnect_max"))
        if self.ping_interval_s >= self.silence_timeout_s:
            problems.append(("ping_interval", "must be shorter than silence_timeout (a pong "
                             "is a message: pings keep a quiet but healthy feed from looking "
                             "silent)"))
        if problems:
            raise Problems(problems)
        return self


class RpkiConfig(Section):
    """[bgp.rpki]: where VRPs come from (collectors/bgp/rpki). Sources in order of
    preference: the RTR caches as listed, then vrp_file, then vrp_url."""

    rtr: Annotated[tuple[tuple[str, int], ...], toml_value(to_host_port_list)] = ()
    vrp_file: FilePath | None = None
    vrp_url: Url | None = None
    # file/URL check; RTR version 0 refresh (version 1: the cache's)
    refresh_s: Annotated[float, duration(1, 86400)] = 60.0
    # file/URL data older than this is stale
    stale_after_s: Annotated[float, duration(60, 30 * 86400)] = 7200.0
    timeout_s: Annotated[float, duration(0.1, 600)] = 10.0  # RTR connect, URL fetch

    @model_validator(mode="wrap")
    @classmethod
    def _a_source(cls, data: Any, handler: Any) -> Any:
        """Judged on the table as written, so it is reported whatever else is wrong."""
        problems = []
        if isinstance(data, dict) and not any(k in data for k in ("rtr", "vrp_file", "vrp_url")):
            problems.append(("", "needs a VRP source: rtr, vrp_file or vrp_url"))
        elif isinstance(data, dict) and data.get("rtr") == [] and not (
                data.get("vrp_file") or data.get("vrp_url")):
            problems.append(("rtr", "empty, and no vrp_file or vrp_url either"))
        return validate_with(handler, data, problems)


class BgpConfig(Section):
    local_as: Annotated[int, int_range(1, 4294967295)]
    router_id: IPV4
    announce: Prefixes = ()
    watch: Prefixes = ()
    exabgp: NonEmptyStr = "exabgp"
    # bgp_session/bgp_prefix points; default agent.interval
    interval_s: Annotated[float | None, duration(0.1, 86400)] = None
    ris_live: RisLiveConfig | None = None
    rpki: RpkiConfig | None = None




# The table this package owns, and what its group reads (its reload slice).
TABLES = {"bgp": Table(BgpConfig | None, None)}
READS = ("agent.interval_s", "bgp", "carriers")
