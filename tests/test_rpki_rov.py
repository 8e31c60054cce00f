"""RFC 6811 validation, the VRP index and the JSON reader: pure, no I/O.

The table of routes with known answers (tests/rpki_support.py) is shared with the StayRTR
and file tests (tests/test_rpki_rtr.py) so every path into the index gives the same counts.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.bgp.rib import V4, V6, format_prefix, parse_prefix
from collectors.bgp.rpki.rov import INVALID, NOT_FOUND, VALID, FamilyIndex, VrpIndex
from collectors.bgp.rpki.vrp import VrpFileError, parse_asn, parse_vrp_json
from tests.rpki_support import ROUTES, VRPS, brute, build, roas_json, validate


@pytest.mark.parametrize(("prefix", "origin", "expected"), ROUTES)
def test_known_answers(prefix: str, origin: int, expected: int) -> None:
    index = build()
    assert validate(index, prefix, origin) == expected
    assert brute(VRPS, prefix, origin) == expected


class _Attrs(NamedTuple):
    origin_as: int


def test_whole_table_counts_and_batches_agree() -> None:
    index = build()
    for family in (V4, V6):
        routes = {}
        for prefix, origin, _ in ROUTES:
            f, network, length = parse_prefix(prefix)
            if f == family:
                routes[(network << 8) | length] = _Attrs(origin)
        counts = index.family(family).count_routes(routes.items())
        expected = [0, 0, 0]
        for key, attrs in routes.items():
            expected[index.family(family).validate(key >> 8, key & 0xFF, attrs.origin_as)] += 1
        assert counts == expected
    # one UPDATE's keys (one origin) through count_keys: /24 valid, /25 invalid, /23 not found
    keys = [parse_prefix(p)[1] << 8 | parse_prefix(p)[2] for p, o, _ in ROUTES
            if o == 64500 and ":" not in p]
    assert index.v4.count_keys(keys, 64500) == [1, 1, 1]


def test_add_remove_are_exact_and_restore_buckets() -> None:
    index = build()
    empty = FamilyIndex(32)
    table = index.v4
    assert not table.add(*parse_prefix("192.0.2.0/24")[1:], 24, 64500)  # duplicate
    assert len(index) == len(VRPS)
    for prefix, max_length, asn in VRPS:
        family, network, length = parse_prefix(prefix)
        assert index.family(family).remove(network, length, max_length, asn)
        assert not index.family(family).remove(network, length, max_length, asn)
    assert len(index) == 0
    assert not any(table.by_length) and table.buckets == {}
    assert index.v6.buckets == {} and table.length_counts == empty.length_counts
    assert validate(index, "192.0.2.0/24", 64500) == NOT_FOUND


def test_withdrawing_one_of_two_ases_on_a_prefix() -> None:
    index = build([("192.0.2.0/24", 24, 64500), ("192.0.2.0/24", 24, 64501)])
    assert validate(index, "192.0.2.0/24", 64501) == VALID
    _, network, length = parse_prefix("192.0.2.0/24")
    assert index.v4.remove(network, length, 24, 64501)
    assert validate(index, "192.0.2.0/24", 64501) == INVALID
    assert validate(index, "192.0.2.0/24", 64500) == VALID


def test_very_short_vrps_are_probed_for_every_route() -> None:
    # a /0 AS0 (IPv4) and a /8 (IPv6: shorter than its 32-bit buckets by more than 16)
    index = build([("0.0.0.0/0", 0, 0), ("2000::/3", 3, 0), ("2001:db8::/32", 32, 64500)])
    assert validate(index, "192.0.2.0/24", 64500) == INVALID
    assert validate(index, "2001:db8::/32", 64500) == VALID
    assert validate(index, "2a00::/12", 64500) == INVALID
    assert validate(index, "::/0", 64500) == NOT_FOUND


def _prefixes(bits: int) -> st.SearchStrategy[str]:
    def make(pair: tuple[int, int]) -> str:
        value, length = pair
        net = ipaddress.ip_network((value, length), strict=False)
        return str(net)

    # few distinct networks so that routes and VRPs overlap often
    return st.tuples(st.sampled_from([0, 1 << (bits - 1), 0xC0000000 << (bits - 32),
                                      0xC0A80000 << (bits - 32)]),
                     st.integers(0, bits)).map(make)


@settings(max_examples=300, deadline=None)
@given(vrps=st.lists(st.tuples(_prefixes(32), st.integers(0, 32), st.sampled_from([0, 1, 2])),
                     max_size=12),
       routes=st.lists(st.tuples(_prefixes(32), st.sampled_from([0, 1, 2])), max_size=12))
def test_against_brute_force(vrps: list[tuple[str, int, int]],
                             routes: list[tuple[str, int]]) -> None:
    vrps = [(p, max(m, int(p.split("/")[1])), a) for p, m, a in vrps]
    index = VrpIndex()
    for prefix, max_length, asn in vrps:
        _, network, length = parse_prefix(prefix)
        index.v4.add(network, length, max_length, asn)
    for prefix, origin in routes:
        assert validate(index, prefix, origin) == brute(vrps, prefix, origin)


# ---------------------------------------------------------------- the JSON reader


def test_json_reader_reads_rpki_client_and_routinator_shapes() -> None:
    doc = {"metadata": {"generated": 1_700_000_000}, "roas": roas_json()}
    data = parse_vrp_json(json.dumps(doc).encode(), keep_expiry=lambda f, n, ln: True)
    assert len(data.index) == len(VRPS) and data.duplicates == 0
    assert data.generated_s == 1_700_000_000
    for prefix, origin, expected in ROUTES:
        assert validate(data.index, prefix, origin) == expected
    _, network, length = parse_prefix("192.0.2.0/24")
    assert data.expires[(V4, network, length, 24, 64500)] == 1_900_000_000
    # Routinator: no expires, generatedTime; maxLength absent means the prefix length
    doc2 = {"metadata": {"generatedTime": "2024-01-01T00:00:00Z"},
            "roas": [{"asn": "AS64500", "prefix": "192.0.2.0/24", "ta": "arin"}]}
    data2 = parse_vrp_json(json.dumps(doc2).encode())
    assert data2.generated_s == 1704067200.0
    assert validate(data2.index, "192.0.2.0/24", 64500) == VALID
    assert validate(data2.index, "192.0.2.0/25", 64500) == INVALID


@pytest.mark.parametrize(("element", "reason"), [
    ({"asn": "AS64500", "prefix": "192.0.2.0/24", "maxLength": 23}, "bad maxLength 23"),
    ({"asn": "AS64500", "prefix": "192.0.2.0/24", "maxLength": 33}, "bad maxLength 33"),
    ({"asn": "AS64500", "prefix": "192.0.2.1/24", "maxLength": 24}, "host bits set"),
    ({"asn": "ASX", "prefix": "192.0.2.0/24", "maxLength": 24}, "bad asn 'ASX'"),
    ({"asn": 4294967296, "prefix": "192.0.2.0/24", "maxLength": 24}, "asn out of range"),
    ({"asn": 1, "prefix": "192.0.2.0/33", "maxLength": 24}, "out of range"),
    ({"asn": 1, "prefix": "not a prefix"}, "not a prefix"),
    ({"prefix": "192.0.2.0/24"}, "needs prefix and asn"),
    ("192.0.2.0/24", "expected an object"),
    ({"asn": 1, "prefix": "192.0.2.0/24", "expires": "soon"}, "bad expires"),
])
def test_malformed_element_is_named_by_index(element: Any, reason: str) -> None:
    roas = roas_json()
    roas.insert(7, element)
    with pytest.raises(VrpFileError) as raised:
        parse_vrp_json(json.dumps({"roas": roas}).encode())
    assert str(raised.value).startswith("roas[7]: ")
    assert reason in str(raised.value)


def test_broken_json_names_line_and_column() -> None:
    text = json.dumps({"roas": roas_json()}, indent=1)
    broken = text.replace('"maxLength": 24', '"maxLength": 24,,', 1)
    line = text[:text.index('"maxLength": 24')].count("\n") + 1
    with pytest.raises(VrpFileError, match=rf"^line {line} column \d+: "):
        parse_vrp_json(broken.encode())
    with pytest.raises(VrpFileError, match='"roas" array'):
        parse_vrp_json(b'{"vrps": []}')


def test_duplicates_are_counted() -> None:
    roas = roas_json() + roas_json()[:3]
    data = parse_vrp_json(json.dumps({"roas": roas}).encode())
    assert data.duplicates == 3 and len(data.index) == len(VRPS)


def test_parse_asn() -> None:
    assert parse_asn("AS64500") == parse_asn("as64500") == parse_asn(64500) == 64500
    with pytest.raises(ValueError):
        parse_asn(True)


# ---------------------------------------------------------------- the C loop


def test_c_loop_is_built() -> None:
    """scripts/setup builds it (pip install -e); without a compiler the Python loop runs
    (this test then says so by skipping)."""
    from collectors.bgp.rpki import rov

    if rov._rov is None:
        pytest.skip("collectors/bgp/rpki/_rov.c not built (no compiler, or "
                    "EGRESS_AGENT_PURE_PYTHON set)")


@settings(max_examples=300, deadline=None)
@given(vrps=st.lists(st.tuples(_prefixes(32), st.integers(0, 32), st.sampled_from([0, 1, 2])),
                     max_size=12),
       routes=st.lists(st.tuples(_prefixes(32), st.sampled_from([0, 1, 2])), max_size=12),
       memo_seed=st.lists(st.tuples(_prefixes(32), st.integers(0, 2), st.integers(0, 2)),
                          max_size=4),
       lookup=st.booleans(), fixed=st.sampled_from([None, 0, 1, 2]))
def test_c_loop_equals_the_python_loop(vrps: list[tuple[str, int, int]],
                                       routes: list[tuple[str, int]],
                                       memo_seed: list[tuple[str, int, int]],
                                       lookup: bool, fixed: int | None) -> None:
    from collectors.bgp.rpki import rov

    if rov._rov is None:
        pytest.skip("C loop not built")
    index = VrpIndex()
    for prefix, max_length, asn in vrps:
        _, network, length = parse_prefix(prefix)
        index.v4.add(network, length, max(length, max_length), asn)
    table = {}
    for prefix, origin in routes:
        _, network, length = parse_prefix(prefix)
        table[(network << 8) | length] = _Attrs(origin)
    memo: dict[int, int] = {}
    for prefix, origin, state in memo_seed:  # answers remembered for other origins
        _, network, length = parse_prefix(prefix)
        memo[(network << 8) | length] = (origin + 10) << 2 | state
    items: Any = list(table) if fixed is not None else list(table.items())
    origin = fixed if fixed is not None else -1
    memo_c, memo_py = dict(memo), dict(memo)
    got_c = index.v4.count_memo(items, memo_c, origin, lookup)
    got_py = index.v4.count_memo_python(items, memo_py, origin, lookup)
    assert got_c == got_py and memo_c == memo_py
    # and both agree with the RFC for the routes themselves
    if fixed is None and not memo:
        expected = [0, 0, 0]
        for key, attrs in table.items():
            fixed_vrps = [(p, max(m, int(p.split("/")[1])), a) for p, m, a in vrps]
            expected[brute(fixed_vrps, format_prefix(V4, key), attrs.origin_as)] += 1
        assert got_c == expected


def test_withdrawn_long_prefixes_leave_bits_until_the_rebuild() -> None:
    """A withdrawn long VRP leaves its length's bit in its bucket (a wasted probe, never a
    wrong answer); the masks are rebuilt once such bits pile up, and equal the masks of
    an index built from what remains."""
    index = VrpIndex()
    table = index.v4
    prefixes = [f"10.0.{i}.0/24" for i in range(256)] + [f"10.0.{i}.0/23" for i in
                                                        range(0, 256, 2)]
    for prefix in prefixes:
        _, network, length = parse_prefix(prefix)
        table.add(network, length, 24, 64500)
    for prefix in prefixes[:200]:
        _, network, length = parse_prefix(prefix)
        assert table.remove(network, length, 24, 64500)
        assert validate(index, prefix, 64500) == VALID  # the /23 still covers it
    fresh = VrpIndex()
    for prefix in prefixes[200:]:
        _, network, length = parse_prefix(prefix)
        fresh.v4.add(network, length, 24, 64500)
    assert table._stale_bits == 200  # below the rebuild threshold
    table.rebuild_buckets()
    assert table.buckets == fresh.v4.buckets and table._stale_bits == 0
    for prefix in [*prefixes, "10.0.7.0/24", "10.1.0.0/24"]:
        assert validate(index, prefix, 64500) == validate(fresh, prefix, 64500)
    # past the threshold the rebuild happens by itself
    many = VrpIndex()
    for i in range(3000):
        many.v4.add((10 << 24) | (i << 8), 24, 24, 1)
    for i in range(1100):
        many.v4.remove((10 << 24) | (i << 8), 24, 24, 1)
    assert many.v4._stale_bits < 1100


def test_bulk_load_shares_equal_payloads() -> None:
    doc = {"roas": [{"asn": 64500, "prefix": f"10.{i}.0.0/16", "maxLength": 24}
                    for i in range(10)]}
    data = parse_vrp_json(json.dumps(doc).encode())
    payloads = [vrps[n] for vrps in data.index.v4.by_length for n in vrps]
    assert len(payloads) == 10 and len({id(p) for p in payloads}) == 1
    assert data.index.v4._payloads is None  # only while loading


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.tuples(_prefixes(32), st.integers(0, 9)), max_size=30),
       buckets=st.sets(st.sampled_from([0, 0x8000, 0xC000, 0xC0A8, 0x0A00]), max_size=3),
       pairs=st.booleans())
def test_c_select_equals_python(keys: list[tuple[str, int]], buckets: set[int],
                                pairs: bool) -> None:
    from collectors.bgp.rpki import rov

    if rov._rov is None:
        pytest.skip("C loop not built")
    table = {}
    for prefix, value in keys:
        _, network, length = parse_prefix(prefix)
        table[(network << 8) | length] = value
    index = VrpIndex()
    got = index.v4.select(table, buckets, pairs)
    kshift = 8 + 16
    expected = [(k, v) for k, v in table.items() if k >> kshift in buckets] if pairs else [
        k for k in table if k >> kshift in buckets]
    assert got == expected


def test_c_loop_over_many_routes_equals_the_python_loop() -> None:
    """Past 16,384 routes the C loop reads the bucket masks from an array and keeps probe
    tuples and memo values in small tables of its own: the same answers and memo as the
    Python loop, over a table with many masks, probe lists, origins and states."""
    import random

    from collectors.bgp.rpki import rov

    if rov._rov is None:
        pytest.skip("C loop not built")
    rng = random.Random(6811)
    index = VrpIndex()
    for _ in range(3000):
        length = rng.choice([8, 12, 16, 19, 20, 22, 23, 24])
        network = rng.getrandbits(length) << (32 - length)
        index.v4.add(network, length, rng.randint(length, 24), rng.choice([0, 1, 2, 3, 64500]))
    table: dict[int, _Attrs] = {}
    while len(table) < 40_000:
        length = rng.choice([16, 20, 22, 24, 24, 24])
        network = rng.getrandbits(length) << (32 - length)
        table[(network << 8) | length] = _Attrs(rng.choice([1, 2, 3, 64500, 65001]))
    for lookup in (False, True):
        memo_c: dict[int, int] = {}
        memo_py: dict[int, int] = {}
        if lookup:  # half of them remembered, some for another origin
            for key in list(table)[::2]:
                memo_c[key] = memo_py[key] = (table[key].origin_as + (key & 1)) << 2 | VALID
        got_c = index.v4.count_memo(table.items(), memo_c, -1, lookup)
        got_py = index.v4.count_memo_python(table.items(), memo_py, -1, lookup)
        assert got_c == got_py and memo_c == memo_py
        assert sum(got_c) == 40_000 and min(got_c) > 1000  # every state well represented
