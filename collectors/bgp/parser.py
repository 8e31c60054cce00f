"""ExaBGP API JSON (4.2 and 5.0 shapes) → normalized messages.

Both versions write one JSON object per line. What differs (measured, see
tests/test_bgp_parser.py for the captured lines):
- 4.2: `"exabgp": "4.0.1"`, `"as-path": [4134, 174]` (an AS_SET as a nested list);
- 5.0: `"exabgp": "5.0.0"`, `"as-path": {"0": {"element": "as-sequence", "value": [...]}}`
  and `neighbor.router-id`.
IPv6 announcements may carry the same prefixes under two next hops (global and link-local):
they are reported once, with the global next hop.

The parser never raises: a line it cannot use becomes a message of kind `bad` with the
reason, and the caller counts it. Families other than IPv4/IPv6 unicast are `skipped`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collectors.bgp.rib import V4, V6

try:  # 3x faster than json for ExaBGP's lines; the parse is most of a full table's cost
    import msgspec

    _fast_loads: Callable[[bytes | str], Any] | None = msgspec.json.decode
except ImportError:  # pragma: no cover - msgspec is a dependency; json is the fallback
    _fast_loads = None


def loads(text: bytes | str) -> Any:
    """JSON → Python. msgspec when present; anything it refuses goes to json, whose
    answer (a value or ValueError) is authoritative, so both give the same result."""
    if _fast_loads is not None:
        try:
            return _fast_loads(text)
        except ValueError:
            pass
    return json.loads(text)


FAMILIES = {"ipv4 unicast": V4, "ipv6 unicast": V6}

KIND_STATE = "state"
KIND_UPDATE = "update"
KIND_EOR = "eor"
KIND_NOTIFICATION = "notification"
KIND_ACK = "ack"
KIND_OTHER = "other"  # valid but not of interest (keepalive, open, refresh, signal...)
KIND_BAD = "bad"


@dataclass(slots=True)
class Message:
    kind: str
    peer: str = ""
    time_s: float = 0.0
    version: str = ""
    state: str = ""  # state messages: connected | up | down | ...
    reason: str = ""  # down reason, notification text, or why a line is bad
    ack_ok: bool = True
    family: int = 0  # eor
    # update: (family, next hop, NLRI items) and (family, NLRI items); an item is
    # {"nlri": "prefix", ...} (ExaBGP) or a prefix string; see nlri_text()
    announce: list[tuple[int, str, list[Any]]] = field(default_factory=list)
    withdraw: list[tuple[int, list[Any]]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    unknown_families: list[str] = field(default_factory=list)


def bad(reason: str) -> Message:
    return Message(KIND_BAD, reason=reason)


def nlri_text(item: Any) -> str:
    """One NLRI item → its prefix text; TypeError/KeyError when it is neither shape."""
    text = item["nlri"] if type(item) is dict else item
    if type(text) is not str:
        raise TypeError("nlri is not a string")
    return text


def _nlri_list(items: Any) -> list[str]:
    """[{"nlri": "p"}, ...] (or plain strings) → ["p", ...]; TypeError when neither."""
    out = []
    for item in items:
        nlri = item["nlri"] if isinstance(item, dict) else item
        if not isinstance(nlri, str):
            raise TypeError("nlri is not a string")
        out.append(nlri)
    return out


def _update(message: Message, update: dict[str, Any]) -> Message:
    attributes = update.get("attribute")
    if attributes is not None:
        if not isinstance(attributes, dict):
            return bad("attribute is not an object")
        message.attributes = attributes
    announce = update.get("announce")
    if announce is not None:
        if not isinstance(announce, dict):
            return bad("announce is not an object")
        for family_name, by_next_hop in announce.items():
            family = FAMILIES.get(family_name)
            if family is None:
                message.unknown_families.append(str(family_name))
                continue
            if not isinstance(by_next_hop, dict):
                return bad(f"announce {family_name} is not an object")
            if len(by_next_hop) > 1 and family == V6:
                # Same prefixes under global and link-local next hops: keep each once,
                # preferring a global next hop.
                groups = sorted(((str(nh), _nlri_list(items)) for nh, items in by_next_hop.items()),
                                key=lambda g: g[0].lower().startswith("fe80"))
                seen: set[str] = set()
                for nh, prefixes in groups:
                    fresh = [p for p in prefixes if p not in seen]
                    seen.update(fresh)
                    if fresh:
                        message.announce.append((family, nh, fresh))
                continue
            for nh, items in by_next_hop.items():
                if not isinstance(items, list):
                    return bad(f"announce {family_name} {nh}: not a list")
                # items stay raw ({"nlri": ...} or strings): the RIB reads them in its loop
                message.announce.append((family, str(nh), items))
    withdraw = update.get("withdraw")
    if withdraw is not None:
        if not isinstance(withdraw, dict):
            return bad("withdraw is not an object")
        for family_name, items in withdraw.items():
            family = FAMILIES.get(family_name)
            if family is None:
                message.unknown_families.append(str(family_name))
                continue
            if not isinstance(items, list):
                return bad(f"withdraw {family_name} is not a list")
            message.withdraw.append((family, items))
    return message


_UNDECODED: Any = object()


def parse_line(line: bytes | str, data: Any = _UNDECODED) -> Message:
    """One API line → Message (`data`: the line already decoded). Never raises."""
    try:
        return _parse(line, data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        return bad(f"{type(exc).__name__}: {exc}"[:200])


def _parse(line: bytes | str, data: Any) -> Message:
    if data is _UNDECODED:
        text = line.strip()
        if not text:
            return Message(KIND_OTHER)
        if text in (b"done", "done"):
            return Message(KIND_ACK, ack_ok=True)
        if text in (b"error", "error"):
            return Message(KIND_ACK, ack_ok=False)
        data = loads(text)
    if not isinstance(data, dict):
        return bad("not a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        return bad("no type")
    neighbor = data.get("neighbor")
    peer = ""
    if isinstance(neighbor, dict):
        address = neighbor.get("address")
        if isinstance(address, dict) and isinstance(address.get("peer"), str):
            peer = address["peer"]
    time_s = data.get("time", 0.0)
    if not isinstance(time_s, int | float) or isinstance(time_s, bool):
        time_s = 0.0
    version = data.get("exabgp", "")
    message = Message(KIND_OTHER, peer=peer, time_s=float(time_s), version=str(version))
    if kind == "notification" and isinstance(data.get("notification"), str):
        message.reason = data["notification"]  # ExaBGP itself: {"notification": "shutdown"}
        return message
    if kind in ("state", "update", "notification") and not peer:
        return bad(f"{kind} without neighbor.address.peer")
    if kind == "state":
        assert isinstance(neighbor, dict)
        state = neighbor.get("state")
        if not isinstance(state, str):
            return bad("state message without state")
        message.kind = KIND_STATE
        message.state = state
        reason = neighbor.get("reason", "")
        message.reason = reason if isinstance(reason, str) else json.dumps(reason)
        return message
    if kind == "notification":
        assert isinstance(neighbor, dict)
        note = neighbor.get("notification")
        message.kind = KIND_NOTIFICATION
        if isinstance(note, dict):
            text_note = note.get("message") or ""
            message.reason = (
                f"notification ({note.get('code')},{note.get('subcode')}) {text_note}".strip()
            )
        else:
            message.reason = "notification"
        return message
    if kind == "update":
        assert isinstance(neighbor, dict)
        body = neighbor.get("message")
        if not isinstance(body, dict):
            return bad("update without message")
        eor = body.get("eor")
        if eor is not None:
            if not isinstance(eor, dict):
                return bad("eor is not an object")
            family = FAMILIES.get(f"{eor.get('afi')} {eor.get('safi')}")
            message.kind = KIND_EOR
            if family is None:
                message.unknown_families.append(f"{eor.get('afi')} {eor.get('safi')}")
            else:
                message.family = family
            return message
        update = body.get("update")
        if not isinstance(update, dict):
            return bad("update without update object")
        message.kind = KIND_UPDATE
        return _update(message, update)
    return message


_INT_ONLY = {int}
_LIST_ONLY = {list}
_PAIR_OR_TRIPLE = {2, 3}
_ASN_MAX = 2**32


def _plain_sequence(values: Any) -> bool:
    """A non-empty list of AS numbers (checked at C speed: this runs per UPDATE)."""
    return (type(values) is list and bool(values) and set(map(type, values)) == _INT_ONLY
            and min(values) >= 0 and max(values) < _ASN_MAX)


def as_path_of(attributes: dict[str, Any]) -> tuple[str, int, int]:
    """ExaBGP as-path (either shape) → (text, origin AS, path length).

    Origin AS is the last AS of a trailing AS_SEQUENCE; 0 when the path is empty or ends
    in an AS_SET (no single origin, as in RPKI origin validation).
    """
    raw = attributes.get("as-path")
    if raw is None:
        return "", 0, 0
    # fast paths: one AS_SEQUENCE, 5.0 and 4.2 shapes
    if type(raw) is dict and len(raw) == 1:
        segment = raw.get("0")
        if type(segment) is dict and segment.get("element") == "as-sequence":
            values: Any = segment.get("value")
            if _plain_sequence(values):
                return " ".join(map(str, values)), values[-1], len(values)
    elif type(raw) is list and not attributes.get("as-set") and _plain_sequence(raw):
        return " ".join(map(str, raw)), raw[-1], len(raw)
    return _as_path_general(raw, attributes)


def _as_path_general(raw: Any, attributes: dict[str, Any]) -> tuple[str, int, int]:
    segments: list[tuple[bool, list[int]]] = []  # (is_set, asns)
    if isinstance(raw, list):  # 4.2: flat list; a nested list is an AS_SET
        sequence: list[int] = []
        for item in raw:
            if isinstance(item, list):
                if sequence:
                    segments.append((False, sequence))
                    sequence = []
                segments.append((True, [_asn(x) for x in item]))
            else:
                sequence.append(_asn(item))
        if sequence:
            segments.append((False, sequence))
        as_set = attributes.get("as-set")  # 4.2 reports a trailing AS_SET on its own
        if as_set:
            if not isinstance(as_set, list):
                raise TypeError("as-set is not a list")
            segments.append((True, [_asn(x) for x in as_set]))
    elif isinstance(raw, dict):  # 5.0: {"0": {"element": ..., "value": [...]}}
        for index in sorted(raw, key=lambda k: int(k)):
            segment = raw[index]
            element = segment["element"]
            values = [_asn(x) for x in segment["value"]]
            if element in ("as-sequence", "confed-sequence"):
                segments.append((False, values))
            elif element in ("as-set", "confed-set"):
                segments.append((True, values))
            else:
                raise ValueError(f"unknown as-path element {element!r}")
    else:
        raise TypeError("as-path is neither a list nor an object")
    parts: list[str] = []
    length = 0
    for is_set, values in segments:
        if is_set:
            parts.append("{" + ",".join(map(str, values)) + "}")
            length += 1
        else:
            parts.extend(map(str, values))
            length += len(values)
    origin = 0
    if segments and not segments[-1][0] and segments[-1][1]:
        origin = segments[-1][1][-1]
    return " ".join(parts), origin, length


def _asn(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise ValueError(f"bad AS number {value!r}")
    return value


def communities_of(attributes: dict[str, Any], key: str) -> str:
    """[[4134, 100], ...] → '4134:100 ...' ('' when absent)."""
    raw = attributes.get(key)
    if not raw:
        return ""
    if not isinstance(raw, list):
        raise TypeError(f"{key} is not a list")
    if set(map(type, raw)) == _LIST_ONLY and set(map(len, raw)) <= _PAIR_OR_TRIPLE:
        return " ".join([":".join(map(str, item)) for item in raw])  # the usual shape
    out = []
    for item in raw:
        if isinstance(item, list):
            out.append(":".join(str(_asn(x)) for x in item))
        elif isinstance(item, str):
            out.append(item)
        else:
            raise TypeError(f"bad {key} entry")
    return " ".join(out)


def int_attr(attributes: dict[str, Any], key: str) -> int:
    value = attributes.get(key)
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"bad {key} {value!r}")
    return value
