"""The value types of the config file, as reusable annotated types.

Each type is `Annotated[T, PlainValidator(...)]`: the validator converts a TOML value
(durations such as "500ms", sizes such as "512MiB", addresses, prefixes, URLs) or raises
ValueError with the reason printed after `FILE: key.path:`. A value of the converted type
given from Python (tests, CLI defaults) is taken as it is.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, PlainValidator, ValidationInfo

from agent.config.base import from_toml

T = TypeVar("T")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
}
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")


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


def valid_target(target: str) -> bool:
    """An IP address or a syntactically valid host name (resolved when probed)."""
    try:
        ipaddress.ip_address(target)
        return True
    except ValueError:
        return bool(_HOSTNAME_RE.match(target)) and not target.replace(".", "").isdigit()


def toml_value(convert: Callable[[Any], Any],
               native: type | tuple[type, ...] | None = None) -> PlainValidator:
    """The validator of one type: `convert` reads the TOML value; from Python, a value
    that is already `native` is kept."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        if value is None and not from_toml(info):
            return None
        if native is not None and not from_toml(info) and isinstance(value, native) \
                and not isinstance(value, bool):
            return value
        return convert(value)

    return PlainValidator(validate)


# ---------------------------------------------------------------- converters


def to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def to_nonempty_str(value: Any) -> str:
    text = to_str(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def to_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type(value).__name__}")
    return value


def to_int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return convert


def to_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return float(value)


def to_number_range(lo: float, hi: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        number = to_number(value)
        if not lo <= number <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}, got {value}")
        return number

    return convert


def to_positive_number(value: Any) -> float:
    number = to_number(value)
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return number


def to_pct(value: Any) -> float:
    number = to_positive_number(value)
    if number > 100:
        raise ValueError(f"must be a percentage (0-100], got {value}")
    return number


def to_fraction(value: Any) -> float:
    number = to_positive_number(value)
    if number >= 1:
        raise ValueError(f"must be a fraction between 0 and 1 (exclusive), got {value}")
    return number


def to_duration(min_s: float = 0.001, max_s: float = 366 * 86400.0) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        seconds = parse_duration(to_str(value))
        if not min_s <= seconds <= max_s:
            raise ValueError(f"must be between {min_s:g}s and {max_s:g}s, got {value!r}")
        return seconds

    return convert


def to_choice(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = to_str(value)
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text

    return convert


def to_address(value: Any) -> IPAddress:
    text = to_str(value)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None


def to_ipv4(value: Any) -> ipaddress.IPv4Address:
    address = to_address(value)
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"must be an IPv4 address: {value!r}")
    return address


def to_prefixes(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError("expected an array of prefixes")
    prefixes = []
    for item in value:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            prefixes.append(item)
            continue
        text = to_str(item)
        try:
            prefixes.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ValueError(f"bad prefix {item!r}: {exc}") from None
    return tuple(prefixes)


def to_str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected an array of strings, got {type(value).__name__}")
    return tuple(to_str(item) for item in value)


def to_url(value: Any) -> str:
    text = to_str(value)
    if not re.match(r"^https?://[^\s/]+", text):
        raise ValueError(f"not an http(s) URL: {text!r}")
    return text.rstrip("/")


def to_url_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("expected a non-empty array of http(s) URLs")
    return tuple(to_url(item) for item in value)


def to_listen(value: Any) -> str:
    text = to_str(value)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


def to_target(value: Any) -> str:
    text = to_str(value)
    if not valid_target(text):
        raise ValueError(f"not an IP address or host name: {text!r}")
    return text


def to_path(value: Any) -> Path:
    return Path(to_nonempty_str(value))


def to_tables(value: Any) -> Any:
    """An array of tables (`[[name]]`); the tables themselves are validated by pydantic."""
    if not isinstance(value, list | tuple):
        raise ValueError("expected an array of tables ([[...]])")
    return value


# ---------------------------------------------------------------- annotated types

Str = Annotated[str, toml_value(to_str)]
NonEmptyStr = Annotated[str, toml_value(to_nonempty_str)]
Bool = Annotated[bool, PlainValidator(to_bool)]
PositiveNumber = Annotated[float, toml_value(to_positive_number, (int, float))]
Pct = Annotated[float, toml_value(to_pct, (int, float))]
Fraction = Annotated[float, toml_value(to_fraction, (int, float))]
Size = Annotated[int, toml_value(parse_size)]
Address = Annotated[IPAddress, toml_value(
    to_address, (ipaddress.IPv4Address, ipaddress.IPv6Address))]
IPV4 = Annotated[ipaddress.IPv4Address, toml_value(to_ipv4, ipaddress.IPv4Address)]
Prefixes = Annotated[tuple[IPNetwork, ...], toml_value(to_prefixes)]
StrList = Annotated[tuple[str, ...], toml_value(to_str_list)]
Url = Annotated[str, toml_value(to_url)]
UrlList = Annotated[tuple[str, ...], toml_value(to_url_list)]
Listen = Annotated[str, toml_value(to_listen)]
Target = Annotated[str, toml_value(to_target)]
FilePath = Annotated[Path, toml_value(to_path, Path)]
# `Annotated[tuple[Model, ...], ARRAY_OF_TABLES]`: `[[name]]`, each table a Model.
ARRAY_OF_TABLES = BeforeValidator(to_tables)


def duration(min_s: float = 0.001, max_s: float = 366 * 86400.0) -> PlainValidator:
    """`Annotated[float, duration(lo, hi)]`: a duration string, in seconds."""
    return toml_value(to_duration(min_s, max_s), (int, float))


def int_range(lo: int, hi: int) -> PlainValidator:
    """`Annotated[int, int_range(lo, hi)]`."""
    return toml_value(to_int_range(lo, hi))


def choice(*choices: str) -> PlainValidator:
    """`Annotated[str, choice("a", "b")]`."""
    return toml_value(to_choice(*choices))
