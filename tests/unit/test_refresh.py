"""The keepalive fast path's reading and answering of a Register, against the codec (no sockets)."""

from __future__ import annotations

import os

import pytest

from punch import SOFTWARE
from punch.rendezvous.refresh import (
    Refresh,
    answer_size,
    pack_source,
    parse_refresh,
    read_arrival,
    refresh_answer,
    software_attribute,
)
from punch.rendezvous.registry import pack_addresses
from punch.rendezvous.signed import signed_with
from punch.stun import Address, AttributeType, Message, Method, decode, encode, make_success
from punch.stun.wire import Mapping, request

pytestmark = pytest.mark.unit

TOKEN = bytes(range(16))
HOSTS = (("10.0.10.2", 40000), ("2001:db8::2", 40001))


def keepalive(*extra: tuple[int, object], lease: int = 30, hosts: tuple[Address, ...] = HOSTS) -> Message:
    return request(
        Method.REGISTER,
        (AttributeType.PEER_ID, "peer-10"),
        *((AttributeType.CANDIDATE, h) for h in hosts),
        (AttributeType.LEASE, lease),
        *extra,
    )


def test_a_signed_keepalive_is_read_from_its_bytes() -> None:
    data = encode(keepalive((AttributeType.NAT_MAPPING, 2)), integrity_sha256_key=TOKEN)
    refresh = parse_refresh(data)
    assert refresh == Refresh("peer-10", pack_addresses(HOSTS), 30, Mapping.ENDPOINT_DEPENDENT, b"")
    assert signed_with(data, TOKEN)
    assert not signed_with(data, bytes(16))


def test_an_unknown_nat_mapping_reads_as_unknown_as_on_the_general_path() -> None:
    refresh = parse_refresh(encode(keepalive((AttributeType.NAT_MAPPING, 9)), integrity_sha256_key=TOKEN))
    assert refresh is not None
    assert refresh.mapping is Mapping.UNKNOWN


@pytest.mark.parametrize(
    ("message", "signed", "why"),
    [
        (keepalive(), False, "unsigned: a first Register or its retransmission"),
        (keepalive(lease=0), True, "a goodbye"),
        (keepalive((AttributeType.SOFTWARE, "x")), True, "an attribute a keepalive does not carry"),
        (keepalive((AttributeType.PEER_ID, "peer-14")), True, "a second PEER-ID"),
        (keepalive(hosts=(("10.0.0.1", 1),) * 9), True, "more candidates than the general path keeps"),
        (request(Method.REGISTER, (AttributeType.PEER_ID, "peer-10")), True, "no LEASE (the general path's default)"),
        (request(Method.CONNECT, (AttributeType.PEER_ID, "peer-10"), (AttributeType.LEASE, 30)), True, "Connect"),
    ],
)
def test_anything_but_a_plain_signed_keepalive_goes_to_the_general_path(
    message: Message, signed: bool, why: str
) -> None:
    assert parse_refresh(encode(message, integrity_sha256_key=TOKEN if signed else None)) is None, why


def test_a_keepalive_with_a_broken_fingerprint_or_framing_goes_to_the_general_path() -> None:
    data = encode(keepalive(), integrity_sha256_key=TOKEN)
    assert parse_refresh(data[:-1] + bytes([data[-1] ^ 1])) is None  # FINGERPRINT no longer matches
    assert parse_refresh(data[:-4]) is None  # length field no longer matches
    assert parse_refresh(data[:4] + b"\x21\x12\xa4\x43" + data[8:]) is None  # cookie
    body_only = encode(keepalive(), fingerprint=False, integrity_sha256_key=TOKEN)
    assert parse_refresh(body_only) is None


def test_a_candidate_length_that_overruns_the_body_goes_to_the_general_path() -> None:
    data = bytearray(encode(keepalive(hosts=(HOSTS[0],)), integrity_sha256_key=TOKEN))
    at = data.index(b"\x4c\x03")
    data[at + 2 : at + 4] = (200).to_bytes(2, "big")
    assert parse_refresh(bytes(data)) is None


@pytest.mark.parametrize("source", [("198.51.100.10", 40000), ("2001:db8::10", 3478)])
def test_the_answer_is_byte_for_byte_what_the_codec_encodes(source: Address) -> None:
    data = encode(keepalive(), integrity_sha256_key=TOKEN)
    observed = pack_source(source)
    assert observed is not None
    expected = encode(
        make_success(
            decode(data),
            (
                (AttributeType.XOR_MAPPED_ADDRESS, source),
                (AttributeType.LEASE, 30),
                (AttributeType.REGISTRATION_TOKEN, TOKEN),
                (AttributeType.SOFTWARE, SOFTWARE),
            ),
        )
    )
    assert refresh_answer(data, observed, 30, TOKEN, software_attribute(SOFTWARE)) == expected
    assert answer_size(observed, software_attribute(SOFTWARE)) == len(expected)


def test_a_scoped_source_has_no_packed_form() -> None:
    assert pack_source(("fe80::1%eth0", 1)) is None
    assert pack_source(("192.0.2.1", 3478)) == pack_addresses([("192.0.2.1", 3478)])


def test_random_keepalives_read_back_what_was_encoded() -> None:
    for _ in range(200):
        hosts = tuple((f"10.{b[0]}.{b[1]}.{b[2]}", int.from_bytes(b[3:5], "big")) for b in [os.urandom(5)])
        lease = int.from_bytes(os.urandom(2), "big") or 1
        refresh = parse_refresh(encode(keepalive(lease=lease, hosts=hosts), integrity_sha256_key=TOKEN))
        assert refresh is not None
        assert (refresh.hosts, refresh.lease) == (pack_addresses(hosts), lease)


def test_a_first_register_is_read_from_its_bytes_and_only_an_unsigned_one() -> None:
    key = bytes(range(32))
    unsigned = encode(keepalive((AttributeType.NAT_MAPPING, 1), (AttributeType.PUBLIC_KEY, key)))
    assert read_arrival(unsigned) == ("peer-10", pack_addresses(HOSTS), 30, 1, key)
    signed = encode(keepalive(), integrity_sha256_key=TOKEN)
    assert read_arrival(signed) is None  # a keepalive: parse_refresh's
    assert parse_refresh(unsigned) is None
    assert read_arrival(encode(keepalive(), fingerprint=False)) is None  # FINGERPRINT last, or the general path
    assert read_arrival(encode(keepalive(lease=0))) is None  # a goodbye
    assert read_arrival(encode(keepalive((AttributeType.SOFTWARE, "x")))) is None  # an attribute it does not take
    damaged = bytearray(unsigned)
    damaged[-1] ^= 1
    assert read_arrival(bytes(damaged)) is None
