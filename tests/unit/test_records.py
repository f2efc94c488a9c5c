"""What a shared registry stores and what servers pass each other (punch.rendezvous.records): every record decodes
to what was encoded, keys that one script touches share a hash slot, and damaged records are refused by name."""

from __future__ import annotations

import re

import pytest

from punch.rendezvous.records import (
    Envelope,
    RecordError,
    decode_match,
    decode_wish,
    encode_match,
    encode_wish,
    inbox_key,
    registration_fields,
    registration_key,
    session_key,
    stored_of,
    unpack_fields,
    wish_keys,
)
from punch.rendezvous.registry import Registry, Wish
from punch.stun.wire import KeyShare, Mapping

pytestmark = pytest.mark.unit

A = ("198.51.100.10", 40000)
B = ("192.0.2.14", 40001)


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: the first {...} that is not empty."""
    found = re.search(r"\{([^}]+)\}", key)
    assert found is not None, key
    return found.group(1)


def test_a_pairs_two_wishes_share_a_slot_and_differ_from_other_pairs() -> None:
    mine, theirs = wish_keys("10", "14")
    assert (mine, theirs) == wish_keys("14", "10")[::-1]
    assert hash_tag(mine) == hash_tag(theirs)
    assert hash_tag(mine) != hash_tag(wish_keys("10", "15")[0])
    assert mine != theirs


@pytest.mark.parametrize("peer_id", ["10", "a}b{c", "{x}", "ümlaut", "x" * 128])
def test_any_id_gets_a_tag_of_its_own_and_stays_in_its_key(peer_id: str) -> None:
    key = registration_key(peer_id)
    assert key.endswith(peer_id)
    assert re.fullmatch(r"[0-9a-f]{12}", hash_tag(key))
    assert hash_tag(inbox_key(peer_id)) != hash_tag(registration_key(peer_id + "!"))


def test_a_session_as_stored_decodes_to_the_same_session() -> None:
    registry = Registry()
    registry.register(
        "10", A, (("10.0.10.2", 40000),), 30, now=0, mapping=Mapping.ENDPOINT_DEPENDENT, public_key=b"k" * 32
    )
    registry.register("14", B, (), 30, now=0, mapping=Mapping.ENDPOINT_INDEPENDENT, public_key=b"K" * 32)
    registry.want("10", "14", now=1, share=KeyShare(b"s" * 32, b"g" * 64), rtt_us=1500, transaction=b"t" * 12)
    match = registry.want("14", "10", now=1, share=KeyShare(b"S" * 32, b"G" * 64), transaction=b"T" * 12)
    assert match is not None
    servers = ("east", "west")
    shared = type(match)(**{**{f: getattr(match, f) for f in match.__slots__}, "servers": servers, "mover": "14"})
    decoded = decode_match(encode_match(shared), expires=99.0)
    assert [i for _, i in decoded.introductions()] == [i for _, i in shared.introductions()]
    assert [(r.peer_id, r.credentials) for r, _ in decoded.introductions()] == [
        (r.peer_id, r.credentials) for r, _ in shared.introductions()
    ]
    assert (decoded.connects, decoded.mover, decoded.servers) == (shared.connects, "14", servers)
    assert decoded.opener.expires == decoded.prober.expires == 99.0
    assert decoded.server_of("10") == shared.server_of("10")


def test_a_wish_and_an_envelope_decode_to_what_was_encoded() -> None:
    for wish in (Wish(KeyShare(b"s" * 32, b"g" * 64), 1234, b"t" * 12), Wish(KeyShare(b"", b""), None, b"")):
        assert decode_wish(encode_wish(wish)) == wish
    envelope = Envelope("14", b"\x00\x01stun", b"session")
    assert Envelope.decode(envelope.encode()) == envelope


def test_a_stored_registration_reads_back_with_the_readers_clock() -> None:
    registration = Registry().register("10", A, (B,), 30, now=0, public_key=b"k" * 32)
    fields = {k.encode(): v for k, v in registration_fields(registration, "east").items()}
    stored = stored_of("10", fields, ttl_ms=12_500, now=100.0)
    assert stored.server == "east"
    assert stored.registration.expires == 112.5
    assert (stored.registration.token, stored.registration.candidates()) == (registration.token, (A, B))


@pytest.mark.parametrize(
    ("data", "count", "message"),
    [
        (b"\x00\x00", 1, "a record ends inside a field's length"),
        (b"\x00\x00\x00\x09abc", 1, "a record's field says 9 bytes, 3 are left"),
        (b"\x00\x00\x00\x01a", 2, "a record holds 1 fields, not 2"),
    ],
)
def test_a_damaged_record_is_refused_saying_where(data: bytes, count: int, message: str) -> None:
    with pytest.raises(RecordError) as refused:
        unpack_fields(data, count)
    assert str(refused.value) == message


def test_a_damaged_stored_registration_or_session_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="the stored registration of 10 does not decode"):
        stored_of("10", {b"e": b""}, ttl_ms=1, now=0)
    with pytest.raises(RecordError):
        decode_match(b"\x00\x00\x00\x01a", expires=0)
    assert session_key(b"\x01" * 16).endswith("{" + "01" * 16 + "}")
