"""Just enough of a TURN client to load coturn's relay the way bench/relay.py loads punch's (RFC 8656).

One UDP allocation with the long-term credential mechanism (§7.2: the first Allocate is answered 401 with a
REALM and a NONCE, the second carries USERNAME, REALM, NONCE and MESSAGE-INTEGRITY), one channel bound to the
receiver (§11, which also installs its permission), then ChannelData (§12.4: a 4-byte header, the channel number
and the length, then the application data): the same payload as a punch Relay indication carries, relayed by
coturn from the allocation's relayed address to the receiver as a bare UDP datagram.

Blocking sockets with a timeout: this is a benchmark's setup, not the path being measured.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from punch.stun import Address, Message, MessageClass, encode, is_stun, new_transaction_id
from punch.stun.message import long_term_key

# RFC 8656 §17: methods; §18: attributes; RFC 8489 §14: those TURN borrows from STUN
ALLOCATE, CHANNEL_BIND = 0x003, 0x009
CHANNEL_NUMBER, XOR_PEER_ADDRESS, XOR_RELAYED_ADDRESS, REQUESTED_TRANSPORT = 0x000C, 0x0012, 0x0016, 0x0019
USERNAME, ERROR_CODE, REALM, NONCE = 0x0006, 0x0009, 0x0014, 0x0015
UDP = 17  # REQUESTED-TRANSPORT's protocol number (§18.7)
MAGIC_COOKIE = 0x2112A442
FIRST_CHANNEL = 0x4000  # channel numbers run 0x4000-0x4FFF (§12)


class TurnError(Exception):
    """A TURN answer that is missing, malformed or an error: says which request and why."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A TURN response: its class, its error code (None on success) and its attributes' raw values."""

    success: bool
    error: int | None
    attributes: dict[int, bytes]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the long-term credential mechanism needs on every request after the first (RFC 8489 §9.2)."""

    username: str
    realm: str
    nonce: str
    key: bytes


def xor_address(address: Address) -> bytes:
    """An XOR-PEER-ADDRESS value for an IPv4 address (RFC 8489 §14.2)."""
    host, port = address
    packed = int.from_bytes(socket.inet_aton(host), "big") ^ MAGIC_COOKIE
    return struct.pack("!BBHI", 0, 1, port ^ (MAGIC_COOKIE >> 16), packed)


def parse_xor_address(value: bytes) -> Address:
    """The IPv4 address in an XOR-*-ADDRESS value (RFC 8489 §14.2)."""
    if len(value) != 8 or value[1] != 1:
        raise TurnError(f"XOR address: {len(value)} bytes, family {value[1:2].hex() or '?'}; expected 8, IPv4 (01)")
    _, _, port, packed = struct.unpack("!BBHI", value)
    return socket.inet_ntoa((packed ^ MAGIC_COOKIE).to_bytes(4, "big")), port ^ (MAGIC_COOKIE >> 16)


def parse_answer(data: bytes, transaction_id: bytes) -> Answer:
    """A response to the request with ``transaction_id``; TurnError if it is not STUN or answers another one."""
    if not is_stun(data):
        raise TurnError(f"answer: {len(data)} bytes that are not a STUN message")
    if data[8:20] != transaction_id:
        raise TurnError("answer: transaction ID is not the request's")
    message_class = ((data[0] & 0x01) << 1) | ((data[1] >> 4) & 0x01)
    attributes: dict[int, bytes] = {}
    at = 20
    while at + 4 <= len(data):
        kind, length = struct.unpack_from("!HH", data, at)
        if at + 4 + length > len(data):
            raise TurnError(f"answer: attribute 0x{kind:04X} says {length} bytes, {len(data) - at - 4} follow")
        attributes.setdefault(kind, data[at + 4 : at + 4 + length])
        at += 4 + length + (-length % 4)
    error = None
    if message_class == MessageClass.ERROR:
        code = attributes.get(ERROR_CODE, b"")
        error = code[2] * 100 + code[3] if len(code) >= 4 else 0
    return Answer(message_class == MessageClass.SUCCESS, error, attributes)


def channel_data(channel: int, payload: bytes) -> bytes:
    """One ChannelData message (RFC 8656 §12.4); over UDP it needs no padding."""
    return struct.pack("!HH", channel, len(payload)) + payload


def _request(
    sock: socket.socket, server: Address, method: int, attributes: list[tuple[int, object]], key: bytes | None
) -> Answer:
    transaction_id = new_transaction_id()
    data = encode(Message(method, MessageClass.REQUEST, transaction_id, tuple(attributes)), integrity_key=key)
    for _ in range(5):  # RFC 8489 §6.2.1's retransmissions, bounded: a lost request on loopback is rare
        sock.sendto(data, server)
        try:
            while True:
                answer, source = sock.recvfrom(2048)
                if source == server and is_stun(answer) and answer[8:20] == transaction_id:
                    return parse_answer(answer, transaction_id)
        except TimeoutError:
            continue
    raise TurnError(f"method 0x{method:03X}: no answer from {server[0]}:{server[1]}")


def _signed(credentials: Credentials) -> list[tuple[int, object]]:
    """USERNAME, REALM and NONCE (text: punch's codec encodes them), which MESSAGE-INTEGRITY then covers."""
    return [
        (USERNAME, credentials.username),
        (REALM, credentials.realm),
        (NONCE, credentials.nonce),
    ]


def allocate(sock: socket.socket, server: Address, username: str, password: str) -> tuple[Address, Credentials]:
    """A UDP allocation for ``sock`` on ``server``: its relayed address, and the credentials for later requests."""
    sock.settimeout(0.5)
    transport: list[tuple[int, object]] = [(REQUESTED_TRANSPORT, bytes([UDP, 0, 0, 0]))]
    challenge = _request(sock, server, ALLOCATE, transport, None)
    if challenge.error != 401 or REALM not in challenge.attributes or NONCE not in challenge.attributes:
        raise TurnError(f"Allocate: expected 401 with REALM and NONCE, got error {challenge.error}")
    realm, nonce = challenge.attributes[REALM].decode(), challenge.attributes[NONCE].decode()
    credentials = Credentials(username, realm, nonce, long_term_key(username, realm, password))
    answer = _request(sock, server, ALLOCATE, [*transport, *_signed(credentials)], credentials.key)
    if not answer.success or XOR_RELAYED_ADDRESS not in answer.attributes:
        raise TurnError(f"Allocate: error {answer.error} (credentials {username!r} in realm {realm!r})")
    return parse_xor_address(answer.attributes[XOR_RELAYED_ADDRESS]), credentials


def bind_channel(sock: socket.socket, server: Address, credentials: Credentials, channel: int, peer: Address) -> None:
    """Bind ``channel`` to ``peer`` on ``sock``'s allocation (RFC 8656 §11.1), which permits ``peer`` too."""
    attributes: list[tuple[int, object]] = [
        (CHANNEL_NUMBER, struct.pack("!HH", channel, 0)),
        (XOR_PEER_ADDRESS, xor_address(peer)),
    ]
    answer = _request(sock, server, CHANNEL_BIND, [*attributes, *_signed(credentials)], credentials.key)
    if not answer.success:
        raise TurnError(f"ChannelBind 0x{channel:04X} to {peer[0]}:{peer[1]}: error {answer.error}")
