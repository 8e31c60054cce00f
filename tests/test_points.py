"""Line protocol: escaping per InfluxDB version, checked by an independent parser."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import points as points_module
from agent.points import EncodeStats, LineEncoder, Point, escape_identifier


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on `sep` not preceded by an escaping backslash (scanner semantics of InfluxDB)."""
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str, version: int, specials: str = ",= ") -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in specials or (version == 2 and nxt == "\\"):
                out.append(nxt)
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes and not escaped by a backslash."""
    parts, current, in_quotes, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            in_quotes = not in_quotes
        if ch == sep and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def parse_line(line: str, version: int) -> Point:
    """An independent reading of one line, as InfluxDB's scanner would read it."""
    assert "\n" not in line
    key = _split_unescaped(line, " ")[0]  # quotes are literal in the series key
    sections = _split_outside_quotes(line[len(key) + 1 :], " ")
    assert len(sections) in (1, 2), sections
    fields_text = sections[0]
    ts = sections[1] if len(sections) == 2 else "0"
    key_parts = _split_unescaped(key, ",")
    measurement = _unescape(key_parts[0], version, ", ")
    tags = {}
    for part in key_parts[1:]:
        k, v = _split_unescaped(part, "=")
        tags[_unescape(k, version)] = _unescape(v, version)
    fields: dict[str, object] = {}
    for part in _split_outside_quotes(fields_text, ","):
        k_raw = _split_unescaped(part, "=")[0]
        v = part[len(k_raw) + 1 :]
        k = _unescape(k_raw, version)
        if v.startswith('"'):
            fields[k] = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif v in ("true", "false"):
            fields[k] = v == "true"
        elif v.endswith("i"):
            fields[k] = int(v[:-1])
        else:
            fields[k] = float(v)
    return Point(measurement, tags, fields, int(ts))


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"),
    min_size=1, max_size=12,
).filter(lambda s: not s.startswith("_") and s.strip() == s and s != "" and "\\" not in s[-1:])
hostile = st.text(
    alphabet=st.sampled_from([*list('ab ,="\\x'), "é", "\t"]), min_size=1, max_size=10
)
field_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"),
            max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(
    measurement=st.sampled_from(["link", "probe", "bgp_event", "m with space", "m,comma"]),
    tags=st.dictionaries(st.sampled_from(["host", "interface", "carrier", "a b", "k=v"]),
                         hostile, max_size=4),
    fields=st.dictionaries(st.sampled_from(["rx_bytes", "f", "x y", "p=q", "s,t"]),
                           field_values, min_size=1, max_size=4),
    ts=st.integers(min_value=1, max_value=2**62),
)
def test_v2_roundtrip(measurement: str, tags: dict[str, str], fields: dict[str, object],
                      ts: int) -> None:
    encoder = LineEncoder(version=2)
    line = encoder.encode(Point(measurement, dict(tags), dict(fields), ts))  # type: ignore[arg-type]
    assert line is not None and "\n" not in line
    parsed = parse_line(line, 2)
    assert parsed.measurement == measurement
    assert parsed.tags == {k: v for k, v in tags.items() if v != ""}
    assert parsed.time_ns == ts
    assert parsed.fields.keys() == fields.keys()
    for key, value in fields.items():
        got = parsed.fields[key]
        if isinstance(value, float):
            assert math.isclose(got, value, rel_tol=0, abs_tol=0) or got == value  # type: ignore[arg-type]
        else:
            assert got == value and type(got) is type(value)


@settings(max_examples=300, deadline=None)
@given(tags=st.dictionaries(st.sampled_from(["interface", "carrier"]), hostile, max_size=2))
def test_v1_tags_survive_or_are_counted(tags: dict[str, str]) -> None:
    """1.x: every tag value arrives intact unless it had a backslash 1.x cannot carry,
    in which case it is changed (never splits the line) and counted."""
    encoder = LineEncoder(version=1)
    line = encoder.encode(Point("link", dict(tags), {"v": 1}, 1))
    assert line is not None and "\n" not in line
    parsed = parse_line(line, 1)
    expected = {k: v for k, v in tags.items() if v != ""}
    if encoder.stats.sanitized_values == 0:
        assert parsed.tags == expected
    else:
        assert parsed.tags.keys() == expected.keys()


def test_v1_interface_name_with_specials_is_exact() -> None:
    encoder = LineEncoder(version=1)
    line = encoder.encode(Point("link", {"interface": 'e,x=1 "q"\\y'}, {"v": 1}, 5))
    assert line == 'link,interface=e\\,x\\=1\\ "q"\\y v=1i 5'
    assert encoder.stats.sanitized_values == 0


def test_v1_backslash_before_special_is_replaced_and_counted() -> None:
    stats = EncodeStats()
    assert escape_identifier("a\\,b", 1, stats) == "a/\\,b"
    assert escape_identifier("end\\", 1, stats) == "end/"
    assert stats.sanitized_values == 2
    stats = EncodeStats()
    assert escape_identifier("end\\", 2, stats) == "end\\\\"
    assert stats.sanitized_values == 0


@pytest.mark.parametrize("version", [1, 2])
def test_newline_never_splits_a_line(version: int) -> None:
    encoder = LineEncoder(version=version)  # type: ignore[arg-type]
    line = encoder.encode(
        Point("bgp_event", {"community": "a\nb\rc"}, {"detail": "x\ny"}, 1)
    )
    assert line is not None and "\n" not in line and "\r" not in line
    assert encoder.stats.sanitized_values == 1


def test_field_kinds_and_unencodable_values() -> None:
    encoder = LineEncoder()
    line = encoder.encode(Point("m", {}, {"i": 3, "f": 1.5, "b": True, "s": 'say "hi"\\',
                                          "nan": float("nan")}, 7))
    assert line == 'm i=3i,f=1.5,b=true,s="say \\"hi\\"\\\\" 7'
    assert encoder.stats.dropped_fields == 1
    assert encoder.encode(Point("m", {}, {"inf": float("inf")}, 1)) is None
    assert encoder.stats.dropped_points == 1


def test_empty_tag_value_is_omitted() -> None:
    assert LineEncoder().encode(Point("m", {"a": "", "b": "x"}, {"v": 1}, 1)) == "m,b=x v=1i 1"


def assert_c_equals_python(batch: list[Point], version: int) -> None:
    """The C loop (encode_body) against the pure-Python encoder (encode_lines): same bytes,
    same line count, same counters."""
    fast = LineEncoder(version=version)  # type: ignore[arg-type]
    slow = LineEncoder(version=version)  # type: ignore[arg-type]
    body, lines = fast.encode_body(batch)
    expected = slow.encode_lines(batch)
    assert body == "\n".join(expected).encode()
    assert lines == len(expected)
    assert fast.stats == slow.stats


any_points = st.lists(
    st.builds(
        Point,
        measurement=st.sampled_from(["link", "m x", "a,b"]),
        tags=st.dictionaries(st.sampled_from(["interface", "c", "k=v"]), hostile, max_size=3),
        fields=st.dictionaries(
            st.sampled_from(["rx_bytes", "f", "x y"]),
            st.one_of(field_values, st.just(float("nan")), st.just(float("-inf")),
                      st.integers(min_value=2**63, max_value=2**70)),
            max_size=3,
        ),
        time_ns=st.integers(min_value=0, max_value=2**62),
    ),
    max_size=20,
)


@pytest.mark.skipif(points_module._lineproto is None, reason="C encoder not built")
@settings(max_examples=300, deadline=None)
@given(batch=any_points, version=st.sampled_from([1, 2]))
def test_c_encoder_equals_python_encoder(batch: list[Point], version: int) -> None:
    assert_c_equals_python(batch, version)


def test_integer_beyond_int64_is_dropped_not_sent() -> None:
    encoder = LineEncoder()
    line = encoder.encode(Point("m", {}, {"big": 2**63, "ok": 2**63 - 1}, 1))
    assert line == f"m ok={2**63 - 1}i 1"
    assert encoder.stats.dropped_fields == 1


plain_names = st.text(alphabet=st.sampled_from([*"abcxyz_-.:/", "é", "ø", "中", "\t"]),
                      min_size=0, max_size=6)
mixed_points = st.lists(
    st.builds(
        Point,
        measurement=st.sampled_from(["link", "bgp_prefix", "m,x", "é"]),
        tags=st.dictionaries(st.one_of(plain_names, hostile), st.one_of(plain_names, hostile),
                             max_size=20),
        fields=st.dictionaries(st.one_of(plain_names, hostile), field_values,
                               min_size=1, max_size=4),
        time_ns=st.sampled_from([0, 1, 1_700_000_000_000_000_000]),
    ),
    max_size=30,
)


@pytest.mark.skipif(points_module._lineproto is None, reason="C encoder not built")
@settings(max_examples=300, deadline=None)
@given(batch=mixed_points, version=st.sampled_from([1, 2]))
def test_c_plain_series_path_equals_python(batch: list[Point], version: int) -> None:
    """Names with nothing to escape are written by C directly (sorted by UTF-8 bytes, more
    than 16 tags and anything to escape fall back to the Python-escaped cache): the
    bytes must not differ from the pure-Python encoder's, shared timestamps included."""
    assert_c_equals_python(batch, version)


@st.composite
def collector_batches(draw: st.DrawFn) -> list[Point]:
    """Points as a collector makes them: a few key layouts (the same key objects in the same
    dict order, often unsorted), interleaved, with values that vary point to point and may
    be empty or need escaping. The C encoder recognises a repeated layout by its key
    objects and reuses the layout's tag order."""
    plain_key = plain_names.filter(bool)
    pool = draw(st.lists(st.one_of(plain_key, plain_key, plain_key, hostile), unique=True,
                         min_size=1, max_size=8))
    layouts = draw(st.lists(
        st.tuples(
            st.sampled_from(["link", "m,x"]),
            st.lists(st.sampled_from(pool), unique=True, max_size=6),
            st.lists(st.sampled_from(pool), unique=True, min_size=1, max_size=4),
        ),
        min_size=1, max_size=3,
    ))
    batch = []
    for _ in range(draw(st.integers(2, 12))):
        measurement, tag_keys, field_keys = draw(st.sampled_from(layouts))
        tags = {key: draw(st.one_of(plain_names, plain_names, st.just(""), hostile))
                for key in tag_keys}
        fields = {key: draw(field_values) for key in field_keys}
        batch.append(Point(measurement, tags, fields, 1_700_000_000_000_000_000))
    return batch


@pytest.mark.skipif(points_module._lineproto is None, reason="C encoder not built")
@settings(max_examples=300, deadline=None)
@given(batch=collector_batches(), version=st.sampled_from([1, 2]))
def test_c_repeated_layouts_equal_python(batch: list[Point], version: int) -> None:
    assert_c_equals_python(batch, version)


@pytest.mark.skipif(points_module._lineproto is None, reason="C encoder not built")
def test_c_repeated_unsorted_layout_is_sorted_every_time() -> None:
    def point(measurement: str, interface: str, carrier: str) -> Point:
        return Point(measurement, {"interface": interface, "carrier": carrier, "host": "h"},
                     {"rx": 1, "drops": 2}, 5)

    batch = [point("link", "eth0", "c1"), point("link", "eth1", ""), point("link", "eth2", "c2"),
             point("m,x", "eth3", "c3"), point("link", "eth 4", "c4"), point("link", "eth5", "c5")]
    body, lines = LineEncoder().encode_body(batch)
    assert body.decode().split("\n") == [
        "link,carrier=c1,host=h,interface=eth0 rx=1i,drops=2i 5",
        "link,host=h,interface=eth1 rx=1i,drops=2i 5",
        "link,carrier=c2,host=h,interface=eth2 rx=1i,drops=2i 5",
        "m\\,x,carrier=c3,host=h,interface=eth3 rx=1i,drops=2i 5",
        "link,carrier=c4,host=h,interface=eth\\ 4 rx=1i,drops=2i 5",
        "link,carrier=c5,host=h,interface=eth5 rx=1i,drops=2i 5",
    ]
    assert lines == 6


def _short_decimals() -> st.SearchStrategy[float]:
    """Floats written with few digits: the C fast path's domain, edges included."""
    return st.one_of(
        st.builds(lambda m, k: m / 10**k, st.integers(-(10**16), 10**16),
                  st.integers(0, 20)),
        st.builds(float, st.integers(-(2**54), 2**54)),
        st.sampled_from([1e-4, 9.999999999999999e-05, 0.00010000000000000002, 2.0**53,
                         2.0**53 - 1, 1e15, 1e15 - 0.5, 1e16, -0.0, 0.0, 5e-324, 0.1 + 0.2]),
    )


@pytest.mark.skipif(points_module._lineproto is None, reason="C encoder not built")
@settings(max_examples=3000, deadline=None)
@given(value=st.one_of(_short_decimals(), st.floats(allow_nan=False, allow_infinity=False)))
def test_c_float_text_is_python_repr(value: float) -> None:
    text = points_module._lineproto.format_float(value)
    assert text is None or text == repr(value)


@pytest.mark.skipif(points_module._lineproto is None, reason="C encoder not built")
def test_c_float_fast_path_covers_common_values() -> None:
    """The fast path must actually run for counters and rates written with few decimals
    (else the test above passes vacuously)."""
    fast = points_module._lineproto.format_float
    for value in (0.5, 1234.25, -17.0, 0.000125, 99.9, 12345678901.5):
        assert fast(value) == repr(value)
    assert fast(1 / 3) is None  # 16 digits: left to Python's own repr


@pytest.mark.parametrize("use_c", [True, False])
def test_stamp_points_adds_time_and_host_only_where_missing(
    use_c: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if use_c and points_module._lineproto is None:
        pytest.skip("C encoder not built")
    if not use_c:
        monkeypatch.setattr(points_module, "_lineproto", None)
    batch = [Point("m", {}, {"v": 1}), Point("m", {"host": "other"}, {"v": 1}, 5)]
    points_module.stamp_points(batch, 42, "me")
    assert [(p.tags, p.time_ns) for p in batch] == [({"host": "me"}, 42), ({"host": "other"}, 5)]


def test_plain_tags_sort_like_python_prefixes_and_non_ascii_included() -> None:
    tags = {"ab": "1", "é": "2", "a": "3", "z": "4", "": "5", "a\u00e9": "6", "中": "7"}
    body, _ = LineEncoder().encode_body([Point("m", tags, {"v": 1}, 9)])
    assert body.decode() == "m,=5,a=3,ab=1,aé=6,z=4,é=2,中=7 v=1i 9"
    assert body.decode() == LineEncoder().encode_lines([Point("m", tags, {"v": 1}, 9)])[0]
