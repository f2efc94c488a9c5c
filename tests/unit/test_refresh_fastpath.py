"""The keepalive fast path in C (punch/_fastpath.c) against its Python reference (punch.rendezvous.refresh and
.signed): the same values read from any bytes, the same verdict on any signature, the same answer bytes. Skipped
where punch._fastpath is not built."""

from __future__ import annotations

import hmac
import os
import struct
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from punch import SOFTWARE
from punch.rendezvous.refresh import (
    PYTHON_CODEC,
    Refresh,
    codec,
    pack_source,
    parse_refresh,
    read_refresh,
    refresh_answer,
    software_attribute,
)
from punch.rendezvous.signed import signed_with
from punch.stun import MAGIC_COOKIE, AttributeType
from punch.stun.fastpath import Accelerator
from punch.stun.wire import Mapping

pytestmark = pytest.mark.unit

T = AttributeType
TOKEN = bytes(range(16))
SOFTWARE_ATTRIBUTE = software_attribute(SOFTWARE)


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)


def register(*attributes: tuple[int, bytes], txid: bytes = bytes(range(12)), kind: int = 0x0281) -> bytes:
    """A Register with ``attributes``, a MESSAGE-INTEGRITY-SHA256 (any value: reading does not check it) and a
    right FINGERPRINT."""
    body = b"".join(tlv(k, v) for k, v in attributes) + tlv(T.MESSAGE_INTEGRITY_SHA256, bytes(range(32)))
    head = struct.pack("!HHI", kind, len(body) + 8, MAGIC_COOKIE) + txid
    crc = zlib.crc32(head + body) ^ 0x5354554E
    return head + body + tlv(T.FINGERPRINT, crc.to_bytes(4, "big"))


def candidate_v4(port: int, ip: bytes) -> bytes:
    return struct.pack("!BBH", 0, 1, port ^ (MAGIC_COOKIE >> 16)) + bytes(
        a ^ b for a, b in zip(ip, MAGIC_COOKIE.to_bytes(4, "big"), strict=True)
    )


PEER = (T.PEER_ID, b"peer-10")
LEASE = (T.LEASE, (30).to_bytes(4, "big"))
V4 = (T.CANDIDATE, candidate_v4(5000, bytes([10, 0, 0, 1])))
V6 = (T.CANDIDATE, struct.pack("!BBH", 0, 2, 7) + bytes(range(16)))
KEY = (T.PUBLIC_KEY, bytes(range(100, 132)))
CASES = {
    "plain": register(PEER, V4, LEASE),
    "IPv6 candidate, NAT-MAPPING": register(PEER, V6, LEASE, (T.NAT_MAPPING, b"\x02\x00\x00\x00")),
    "unknown NAT-MAPPING value": register(PEER, LEASE, (T.NAT_MAPPING, b"\x09\x00\x00\x00")),
    "PUBLIC-KEY": register(PEER, V4, LEASE, KEY),
    "two PUBLIC-KEYs": register(PEER, LEASE, KEY, KEY),
    "PUBLIC-KEY of 31 bytes": register(PEER, LEASE, (T.PUBLIC_KEY, bytes(31))),
    "no candidate": register(PEER, LEASE),
    "eight candidates": register(PEER, *[V4] * 8, LEASE),
    "nine candidates": register(PEER, *[V4] * 9, LEASE),
    "PEER-ID of 128 bytes": register((T.PEER_ID, b"p" * 128), LEASE),
    "PEER-ID of 129 bytes": register((T.PEER_ID, b"p" * 129), LEASE),
    "empty PEER-ID": register((T.PEER_ID, b""), LEASE),
    "PEER-ID not UTF-8": register((T.PEER_ID, b"\xff\xfe"), LEASE),
    "PEER-ID an encoded surrogate": register((T.PEER_ID, b"\xed\xa0\x80"), LEASE),
    "PEER-ID overlong UTF-8": register((T.PEER_ID, b"\xc0\xaf"), LEASE),
    "PEER-ID not ASCII": register((T.PEER_ID, "pähkinä-🥜".encode()), LEASE),
    "two PEER-IDs": register(PEER, PEER, LEASE),
    "no PEER-ID": register(V4, LEASE),
    "no LEASE": register(PEER, V4),
    "LEASE 0 (a goodbye)": register(PEER, (T.LEASE, bytes(4))),
    "LEASE 2**32 - 1": register(PEER, (T.LEASE, b"\xff" * 4)),
    "two LEASEs": register(PEER, LEASE, LEASE),
    "LEASE of 3 bytes": register(PEER, (T.LEASE, b"\x00\x00\x1e")),
    "two NAT-MAPPINGs": register(PEER, LEASE, (T.NAT_MAPPING, bytes(4)), (T.NAT_MAPPING, bytes(4))),
    "NAT-MAPPING of 1 byte": register(PEER, LEASE, (T.NAT_MAPPING, b"\x01")),
    "candidate of family 1, 20 bytes": register(PEER, (T.CANDIDATE, b"\x00\x01" + bytes(18)), LEASE),
    "candidate of family 3": register(PEER, (T.CANDIDATE, b"\x00\x03" + bytes(6)), LEASE),
    "candidate of 7 bytes": register(PEER, (T.CANDIDATE, bytes(7)), LEASE),
    "SOFTWARE": register(PEER, LEASE, (T.SOFTWARE, b"x")),
    "an unknown optional attribute": register(PEER, LEASE, (0xC0FF, b"")),
    "Connect": register(PEER, LEASE, kind=0x0282),
    "Register success": register(PEER, LEASE, kind=0x0381),
    "bad FINGERPRINT": register(PEER, LEASE)[:-1] + b"\x00",
    "bad cookie": (lambda d: d[:4] + b"\x21\x12\xa4\x43" + d[8:])(register(PEER, LEASE)),
    "length field short": (lambda d: d[:2] + (len(d) - 24).to_bytes(2, "big") + d[4:])(register(PEER, LEASE)),
    "MESSAGE-INTEGRITY-SHA256 of 20 bytes": (lambda d: d[: len(d) - 42] + b"\x00\x14" + d[len(d) - 40 :])(
        register(PEER, LEASE)
    ),
    "empty": b"",
    "a header only": register()[:20],
}


@pytest.mark.parametrize("name", CASES)
def test_c_reads_every_case_as_python_does(fast: Accelerator, name: str) -> None:
    assert fast.parse_refresh(CASES[name]) == read_refresh(CASES[name])


def test_the_cases_cover_both_outcomes() -> None:
    read = {name: read_refresh(data) for name, data in CASES.items()}
    assert read["plain"] == ("peer-10", b"\x04\x13\x88\x0a\x00\x00\x01", 30, None, None)
    assert read["PUBLIC-KEY"] == ("peer-10", b"\x04\x13\x88\x0a\x00\x00\x01", 30, None, bytes(range(100, 132)))
    v6 = read["IPv6 candidate, NAT-MAPPING"]
    assert v6 is not None
    assert (v6[1][:3], len(v6[1]), v6[3]) == (b"\x10\x21\x15", 19, 2)  # port 7 XOR 0x2112
    assert read["PEER-ID not ASCII"] == ("pähkinä-🥜", b"", 30, None, None)
    assert read["LEASE 2**32 - 1"] == ("peer-10", b"", 2**32 - 1, None, None)
    assert parse_refresh(CASES["unknown NAT-MAPPING value"]) == Refresh("peer-10", b"", 30, Mapping.UNKNOWN, b"")
    assert [name for name, r in read.items() if r is not None] == [
        "plain",
        "IPv6 candidate, NAT-MAPPING",
        "unknown NAT-MAPPING value",
        "PUBLIC-KEY",
        "no candidate",
        "eight candidates",
        "PEER-ID of 128 bytes",
        "PEER-ID not ASCII",
        "LEASE 2**32 - 1",
    ]


def test_c_wants_bytes(fast: Accelerator) -> None:
    with pytest.raises(TypeError, match=r"^parse_refresh\(\) takes bytes, not bytearray$"):
        fast.parse_refresh(bytearray(CASES["plain"]))  # type: ignore[arg-type]


ATTRIBUTE = st.one_of(
    st.tuples(st.just(int(T.PEER_ID)), st.one_of(st.text(max_size=40).map(str.encode), st.binary(max_size=130))),
    st.tuples(st.just(int(T.LEASE)), st.one_of(st.binary(min_size=4, max_size=4), st.binary(max_size=8))),
    st.tuples(st.just(int(T.NAT_MAPPING)), st.binary(max_size=6)),
    st.tuples(st.just(int(T.PUBLIC_KEY)), st.binary(min_size=30, max_size=34)),
    st.tuples(
        st.just(int(T.CANDIDATE)),
        st.one_of(
            st.tuples(
                st.binary(min_size=1, max_size=1), st.sampled_from([b"\x01", b"\x02"]), st.binary(max_size=18)
            ).map(lambda parts: b"".join(parts)),
            st.binary(max_size=24),
        ),
    ),
    st.tuples(st.sampled_from([int(T.SOFTWARE), 0x7FFF, 0xC0FF, int(T.FINGERPRINT)]), st.binary(max_size=8)),
)


VALID_CANDIDATE = st.one_of(
    st.tuples(st.binary(min_size=1, max_size=1), st.just(b"\x01"), st.binary(min_size=6, max_size=6)),
    st.tuples(st.binary(min_size=1, max_size=1), st.just(b"\x02"), st.binary(min_size=18, max_size=18)),
).map(lambda parts: (int(T.CANDIDATE), b"".join(parts)))
# Mostly a keepalive (PEER-ID, candidates, LEASE, NAT-MAPPING in any order), often with something wrong added.
REGISTER_ATTRIBUTES = st.tuples(
    st.tuples(st.just(int(T.PEER_ID)), st.text(min_size=1, max_size=40).map(str.encode)),
    st.tuples(st.just(int(T.LEASE)), st.binary(min_size=4, max_size=4)),
    st.lists(VALID_CANDIDATE, max_size=9),
    st.lists(st.tuples(st.just(int(T.NAT_MAPPING)), st.binary(min_size=4, max_size=4)), max_size=1),
    st.lists(ATTRIBUTE, max_size=2),
).flatmap(lambda parts: st.permutations([parts[0], parts[1], *parts[2], *parts[3], *parts[4]]))


@settings(max_examples=1500, deadline=None)
@given(
    attributes=st.one_of(REGISTER_ATTRIBUTES, st.lists(ATTRIBUTE, max_size=10)),
    txid=st.binary(min_size=12, max_size=12),
    damage=st.one_of(
        st.none(),
        st.tuples(st.just("flip"), st.integers(0, 400), st.integers(1, 255)),
        st.tuples(st.just("cut"), st.integers(0, 400), st.just(0)),
    ),
)
def test_c_reads_any_register_as_python_does(
    fast: Accelerator, attributes: list[tuple[int, bytes]], txid: bytes, damage: tuple[str, int, int] | None
) -> None:
    data = register(*attributes, txid=txid)
    if damage is not None and damage[1] < len(data):
        what, at, bits = damage
        data = data[:at] + bytes([data[at] ^ bits]) + data[at + 1 :] if what == "flip" else data[:at]
    assert fast.parse_refresh(data) == read_refresh(data)


@settings(max_examples=2000, deadline=None)
@given(data=st.binary(max_size=200))
def test_c_reads_any_bytes_as_python_does(fast: Accelerator, data: bytes) -> None:
    assert fast.parse_refresh(data) == read_refresh(data)


OBSERVED = b"\x04\x9c\x40" + bytes([198, 51, 100, 10])  # 198.51.100.10:40000 packed
SOURCES = [("198.51.100.10", 40000), ("127.0.0.1", 0), ("2001:db8::10", 3478), ("::ffff:192.0.2.1", 65535)]


@settings(max_examples=1000, deadline=None)
@given(
    txid=st.binary(min_size=12, max_size=12),
    source=st.sampled_from(SOURCES),
    lease=st.integers(0, 2**32 - 1),
    token=st.binary(min_size=16, max_size=16),
    software=st.sampled_from([SOFTWARE_ATTRIBUTE, b"", software_attribute("x" * 100)]),
)
def test_c_answers_byte_for_byte_as_python_does(
    fast: Accelerator, txid: bytes, source: tuple[str, int], lease: int, token: bytes, software: bytes
) -> None:
    data = register(PEER, LEASE, txid=txid)
    observed = pack_source(source)
    assert observed is not None
    assert fast.refresh_answer(data, observed, lease, token, software) == refresh_answer(
        data, observed, lease, token, software
    )


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((b"x" * 19, OBSERVED, 30, TOKEN, b""), ValueError, "data is 19 bytes, shorter than a STUN header"),
        (
            (CASES["plain"], b"\x04\x00", 30, TOKEN, b""),
            ValueError,
            "observed is 2 bytes, expected one packed IPv4 or IPv6 address",
        ),
        (
            (CASES["plain"], OBSERVED * 2, 30, TOKEN, b""),
            ValueError,
            "observed is 14 bytes, expected one packed IPv4 or IPv6 address",
        ),
        ((CASES["plain"], OBSERVED, 30, TOKEN[:15], b""), ValueError, "token is 15 bytes, expected 16"),
        (
            (CASES["plain"], OBSERVED, 30, TOKEN, b"abc"),
            ValueError,
            "tail is 3 bytes, expected a multiple of 4 up to 1024",
        ),
        ((CASES["plain"], OBSERVED, 2**32, TOKEN, b""), OverflowError, "lease does not fit in LEASE (0 to 4294967295)"),
        ((CASES["plain"], OBSERVED, -1, TOKEN, b""), OverflowError, "lease does not fit in LEASE (0 to 4294967295)"),
        (
            (CASES["plain"], "198.51.100.10", 30, TOKEN, b""),
            TypeError,
            "refresh_answer() takes (data: bytes, observed: bytes, lease: int, token: bytes, software: bytes)",
        ),
    ],
)
def test_c_refuses_what_it_cannot_answer(
    fast: Accelerator, arguments: tuple[object, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        fast.refresh_answer(*arguments)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_the_packed_observed_address_is_pack_sources() -> None:
    assert pack_source(SOURCES[0]) == OBSERVED


def test_the_codec_is_c_where_built_and_python_without(fast: Accelerator) -> None:
    assert codec(None) is PYTHON_CODEC
    built = codec(fast)
    assert built == (fast.parse_refresh, fast.signed_with, fast.refresh_answer)
    data = register(PEER, V4, LEASE, txid=os.urandom(12))
    observed = pack_source(SOURCES[2])
    assert observed is not None
    assert built.read(data) == PYTHON_CODEC.read(data)
    assert built.answer(data, observed, 30, TOKEN, SOFTWARE_ATTRIBUTE) == PYTHON_CODEC.answer(
        data, observed, 30, TOKEN, SOFTWARE_ATTRIBUTE
    )


def signed(data: bytes, key: bytes) -> bytes:
    """``data`` (a header, a body and the 44-byte trailer) with its MESSAGE-INTEGRITY-SHA256 made right for key."""
    at = len(data) - 44
    covered = data[:2] + (at + 16).to_bytes(2, "big") + data[4:at]
    return data[: at + 4] + hmac.digest(key, covered, "sha256") + data[at + 36 :]


@pytest.fixture(params=[True, False], ids=["SHA extensions where the CPU has them", "portable C"])
def sha256(fast: Accelerator, request: pytest.FixtureRequest) -> Iterator[str]:
    """Each of the C module's SHA-256 implementations in turn (the fast one is chosen at import)."""
    used = fast.sha256(request.param)
    assert used in (("sha-ni", "portable") if request.param else ("portable",))
    yield used
    fast.sha256(True)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=300).map(lambda b: b + bytes(-len(b) % 4)),
    key=st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=130)),  # tokens; keys past a block
    right=st.booleans(),
    flip=st.integers(0, 400),
)
def test_c_checks_signatures_as_python_does(
    fast: Accelerator, sha256: str, body: bytes, key: bytes, right: bool, flip: int
) -> None:
    data = struct.pack("!HHI", 0x0281, len(body) + 44, MAGIC_COOKIE) + bytes(12) + body + bytes(44)
    if right:
        data = signed(data, key)
    if flip < len(data) and not right:
        data = data[:flip] + bytes([data[flip] ^ 1]) + data[flip + 1 :]
    assert fast.signed_with(data, key) == signed_with(data, key)
    if right:
        assert fast.signed_with(data, key)
        assert not fast.signed_with(data, key + b"x")


def test_a_real_keepalive_is_signed_for_its_token_only(fast: Accelerator) -> None:
    data = signed(CASES["plain"], TOKEN)
    assert fast.signed_with(data, TOKEN)
    assert not fast.signed_with(data, bytes(16))
    assert fast.signed_with(data[:-1] + b"\x00", TOKEN)  # the FINGERPRINT is not covered (it is checked apart)
    assert not fast.signed_with(data[:30] + bytes([data[30] ^ 1]) + data[31:], TOKEN)


@pytest.mark.parametrize("size", [0, 20, 63])
def test_too_short_to_carry_a_signature_is_not_signed(fast: Accelerator, size: int) -> None:
    assert not fast.signed_with(bytes(size), TOKEN)


def test_signed_with_wants_bytes(fast: Accelerator) -> None:
    with pytest.raises(TypeError) as raised:
        fast.signed_with(bytearray(64), TOKEN)  # type: ignore[arg-type]
    assert str(raised.value) == "signed_with() takes (data: bytes, key: bytes)"
