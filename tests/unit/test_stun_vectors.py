"""All four test vectors of RFC 5769, byte for byte (tests/data/stun/rfc5769_*.hex)."""

from __future__ import annotations

from pathlib import Path

import pytest

from punch.stun import (
    AttributeType,
    Message,
    MessageClass,
    Method,
    decode,
    encode,
    long_term_key,
    verify_integrity,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data" / "stun"
SHORT_TERM_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def vector(name: str) -> bytes:
    return bytes.fromhex((DATA / f"rfc5769_{name}.hex").read_text().strip())


def without_trailers(message: Message) -> Message:
    trailers = {AttributeType.MESSAGE_INTEGRITY, AttributeType.FINGERPRINT}
    kept = tuple(a for a in message.attributes if a[0] not in trailers)
    return Message(message.method, message.message_class, message.transaction_id, kept)


def same_but_padding(ours: bytes, theirs: bytes, padding_at: list[range]) -> bool:
    """RFC 5769 pads with spaces where RFC 8489 pads with zeros; compare everything else."""
    if len(ours) != len(theirs):
        return False
    skip = {i for r in padding_at for i in r}
    return all(a == b for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if i not in skip)


def test_sample_request_2_1() -> None:
    data = vector("request")
    message = decode(data)
    assert (message.method, message.message_class, message.transaction_id) == (
        Method.BINDING,
        MessageClass.REQUEST,
        TXID,
    )
    assert message.text(AttributeType.SOFTWARE) == "STUN test client"
    assert message.integer(AttributeType.PRIORITY) == 0x6E0001FF
    assert message.integer(AttributeType.ICE_CONTROLLED) == 0x932FF9B151263B36
    assert message.text(AttributeType.USERNAME) == "evtj:h6vY"
    assert message.integer(AttributeType.FINGERPRINT) == 0xE57A3BCF
    assert verify_integrity(data, SHORT_TERM_PASSWORD)
    assert not verify_integrity(data, b"wrong password")
    # Re-encoding gives the vector again, but for USERNAME's 3 padding bytes (spaces there, zeros here),
    # which MESSAGE-INTEGRITY covers and FINGERPRINT covers: so those two differ as well.
    ours = encode(without_trailers(message), integrity_key=SHORT_TERM_PASSWORD)
    assert ours[:80] == data[:73] + b"\x00\x00\x00" + data[76:80]
    assert verify_integrity(ours, SHORT_TERM_PASSWORD)
    assert decode(ours).attributes[:4] == message.attributes[:4]


@pytest.mark.parametrize(
    ("name", "address"),
    [("response_ipv4", ("192.0.2.1", 32853)), ("response_ipv6", ("2001:db8:1234:5678:11:2233:4455:6677", 32853))],
)
def test_sample_responses_2_2_and_2_3(name: str, address: tuple[str, int]) -> None:
    data = vector(name)
    message = decode(data)
    assert (message.method, message.message_class, message.transaction_id) == (
        Method.BINDING,
        MessageClass.SUCCESS,
        TXID,
    )
    assert message.text(AttributeType.SOFTWARE) == "test vector"
    assert message.address(AttributeType.XOR_MAPPED_ADDRESS) == address
    assert verify_integrity(data, SHORT_TERM_PASSWORD)
    ours = encode(without_trailers(message), integrity_key=SHORT_TERM_PASSWORD)
    # SOFTWARE "test vector" is 11 bytes: the vector pads with one space (offset 35), we with a zero.
    assert same_but_padding(ours[:-32], data[:-32], [range(35, 36)])
    assert verify_integrity(ours, SHORT_TERM_PASSWORD)


def test_sample_request_with_long_term_credentials_2_4() -> None:
    data = vector("request_long_term")
    message = decode(data)
    assert message.transaction_id == bytes.fromhex("78ad3433c6ad72c029da412e")
    username = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"  # "matorikkusu"
    assert message.text(AttributeType.USERNAME) == username
    assert message.text(AttributeType.NONCE) == "f//499k954d6OL34oL9FSTvy64sA"
    assert message.text(AttributeType.REALM) == "example.org"
    assert not message.has(AttributeType.FINGERPRINT)
    # The password "The\u00adM\u00aatr\u2168" is "TheMatrIX" after SASLprep (RFC 5769 §2.4).
    key = long_term_key(username, "example.org", "TheMatrIX")
    assert verify_integrity(data, key)
    assert encode(without_trailers(message), integrity_key=key, fingerprint=False) == data
