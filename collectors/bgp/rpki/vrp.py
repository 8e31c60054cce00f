"""VRP sets from the JSON that rpki-client and Routinator write, from a file or a URL.

Format: `{"metadata": {...}, "roas": [{"asn": "AS64500" | 64500, "prefix": "192.0.2.0/24",
"maxLength": 24, "ta": "ripe", "expires": 1700000000}, ...]}` (`expires`, Unix seconds,
is rpki-client's; `maxLength` absent means the prefix's own length). A file is refused as
a whole when any element is malformed: the error names the element (`roas[1234]`) or, for
broken JSON, the line and column, and the set in force stays.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collectors.bgp.rib import V4, parse_prefix
from collectors.bgp.rpki.rov import VrpIndex

try:
    import msgspec

    _decode: Callable[[bytes], Any] | None = msgspec.json.decode
except ImportError:  # pragma: no cover - msgspec is a dependency; json is the fallback
    _decode = None

_ASN_RE = re.compile(r"^(?:AS)?(\d{1,10})$", re.IGNORECASE)
MAX_ASN = 4294967295

# (family, network, length, max_length, asn) → expiry (Unix seconds)
ExpiryKey = tuple[int, int, int, int, int]


class VrpFileError(ValueError):
    """A VRP document that cannot be used; str() is one line naming where."""


@dataclass
class VrpData:
    index: VrpIndex
    generated_s: float | None = None  # when the validator produced it (its metadata)
    duplicates: int = 0  # elements equal to an earlier one (counted, not an error)
    expires: dict[ExpiryKey, int] = field(default_factory=dict)


def parse_asn(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"bad asn {value!r}")
    if isinstance(value, int):
        asn = value
    elif isinstance(value, str) and (match := _ASN_RE.match(value.strip())):
        asn = int(match.group(1))
    else:
        raise ValueError(f"bad asn {value!r} (expected AS64500 or 64500)")
    if not 0 <= asn <= MAX_ASN:
        raise ValueError(f"asn out of range: {value!r}")
    return asn


def parse_vrp(item: Any) -> tuple[int, int, int, int, int, int | None]:
    """One `roas` element → (family, network, length, max_length, asn, expires)."""
    if not isinstance(item, dict):
        raise ValueError(f"expected an object, got {type(item).__name__}")
    if "prefix" not in item or "asn" not in item:
        raise ValueError("needs prefix and asn")
    text = item["prefix"]
    if not isinstance(text, str):
        raise ValueError(f"bad prefix {text!r}")
    family, network, length = parse_prefix(text.strip())
    bits = 32 if family == V4 else 128
    addr = text.strip().partition("/")[0]
    if network != _address_int(family, addr):
        raise ValueError(f"prefix {text!r} has host bits set")
    max_length = item.get("maxLength", length)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not (
            length <= max_length <= bits):
        raise ValueError(f"bad maxLength {max_length!r} for {text} (between {length} and "
                         f"{bits})")
    asn = parse_asn(item["asn"])
    expires = item.get("expires")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
        raise ValueError(f"bad expires {expires!r} (Unix seconds)")
    return family, network, length, max_length, asn, expires


def _address_int(family: int, addr: str) -> int:
    af = socket.AF_INET if family == V4 else socket.AF_INET6
    return int.from_bytes(socket.inet_pton(af, addr), "big")


def _generated(metadata: Any) -> float | None:
    if not isinstance(metadata, dict):
        return None
    value = metadata.get("generated")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    for key in ("buildtime", "generatedTime"):
        text = metadata.get(key)
        if isinstance(text, str):
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def load_document(raw: bytes) -> Any:
    """Decode JSON; a syntax error names its line and column."""
    if _decode is not None:
        try:
            return _decode(raw)
        except msgspec.DecodeError:
            pass  # let json say where
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise VrpFileError(f"not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise VrpFileError(f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def parse_vrp_json(raw: bytes,
                   keep_expiry: Callable[[int, int, int], bool] | None = None) -> VrpData:
    """The whole document → a new index, or VrpFileError naming the first bad element.

    `keep_expiry(family, network, length)` says whose `expires` to keep (ours: the
    expiries of 500k VRPs would cost more than the index)."""
    document = load_document(raw)
    if not isinstance(document, dict) or not isinstance(document.get("roas"), list):
        raise VrpFileError('expected an object with a "roas" array')
    data = VrpData(VrpIndex(), _generated(document.get("metadata")))
    data.index.start_bulk()
    v4_add = data.index.v4.add
    v6_add = data.index.v6.add
    for position, item in enumerate(document["roas"]):
        try:
            family, network, length, max_length, asn, expires = parse_vrp(item)
        except (ValueError, TypeError, OSError) as exc:
            raise VrpFileError(f"roas[{position}]: {exc}") from None
        add = v4_add if family == V4 else v6_add
        if not add(network, length, max_length, asn):
            data.duplicates += 1
        if expires is not None and keep_expiry is not None and keep_expiry(
                family, network, length):
            key = (family, network, length, max_length, asn)
            data.expires[key] = min(expires, data.expires.get(key, expires))
    data.index.end_bulk()
    return data


def write_vrp_json(path: Any, vrps: list[dict[str, Any]], generated_s: float | None = None
                   ) -> None:
    """A VRP document as rpki-client writes it (tests, bench)."""
    metadata: dict[str, Any] = {}
    if generated_s is not None:
        metadata = {"generated": int(generated_s),
                    "buildtime": datetime.fromtimestamp(int(generated_s), UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ")}
    text = json.dumps({"metadata": metadata, "roas": vrps})
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        out.write(text)
    os.replace(tmp, path)
