"""The wire tables of docs/protocol.md from the STUN codec's own registries (punch.stun's Method, AttributeType
and TABLE): every method and attribute the codec knows, with its code, its message types on the wire and the
value format the codec accepts (found by feeding the codec values of every length).

What each one is for is written here, once per name; a name the codec has and this module does not describe (or
the reverse) stops the generator, so a new attribute cannot reach the wire undocumented.
"""

from __future__ import annotations

from collections.abc import Callable

from punch.errors import StunDecodeError
from punch.stun import TABLE, AttributeType, Message, MessageClass, Method, encode
from punch.stun.attributes import Context, Row
from tools.docgen.markdown import code, table
from tools.docgen.regions import RegionError, check_described

# name -> (sent from -> to, attributes, what it is for)
METHODS: dict[str, tuple[str, str, str]] = {
    "BINDING": (
        "anyone -> server; peer <-> peer",
        "to the server: none (CHANGE-REQUEST for `punch probe`); between peers: PEER-ID, SESSION-ID, USE-CANDIDATE",
        "RFC 8489's own: the answer carries XOR-MAPPED-ADDRESS, the address the request came from. Between peers it "
        "is a connectivity check, as in ICE (RFC 8445); USE-CANDIDATE nominates the pair",
    ),
    "REGISTER": (
        "peer -> server",
        "PEER-ID, CANDIDATE (host candidates), LEASE (0 = goodbye), PUBLIC-KEY, NAT-MAPPING; answer: "
        "XOR-MAPPED-ADDRESS, LEASE, REGISTRATION-TOKEN",
        "register an ID under a lease, or refresh it (a keepalive); the first answer carries the token that proves "
        "the ID is ours",
    ),
    "CONNECT": (
        "peer -> server",
        "PEER-ID, TARGET-ID, SERVER-RTT, KEY-SHARE, KEY-SIGNATURE; answer: STATUS",
        "ask for another peer, with our half of the session's key; when both want each other, the server introduces "
        "them",
    ),
    "INTRODUCE": (
        "server -> both peers",
        "PEER-ID (the other), CANDIDATE... (public first), SESSION-ID, ROLE, PUBLIC-KEY, KEY-SHARE, KEY-SIGNATURE, "
        "NAT-MAPPING, SERVER-RTT (the other's); RELAY-ADDRESS, RELAY-TICKET when the relay is another server",
        "sent to both peers at the same moment, signed with the recipient's request key: who the other is (its "
        "identity key), where to reach it, its half of the session's key and our role; to a peer registered at "
        "another server than the one that made the session, also that server's address and the peer's ticket there, "
        "should it need the relay",
    ),
    "READY": (
        "opener -> server; a mover's fresh socket -> server",
        "PEER-ID, SESSION-ID",
        "our NAT mapping is open: tell the other peer to check (after a move: check my fresh socket)",
    ),
    "GO": (
        "server -> prober; server -> the peer that follows a move",
        "PEER-ID, SESSION-ID, ROLE; after a move also CANDIDATE (the fresh socket's public endpoint)",
        "the other's mapping is open: check now",
    ),
    "RELAY": (
        "peer -> server -> the other peer, an indication",
        "PEER-ID, SESSION-ID, DATA-PAYLOAD; RELAY-TICKET to a relay at another server than the sender's",
        "one QUIC packet of the session when no direct path works: signed with the session's key by the sender, "
        "forwarded byte for byte by the server (which cannot check it) within the relay's budget. With RELAY-TICKET "
        "and no DATA-PAYLOAD: an opening, not forwarded, that shows the relay where the sender's NAT maps it",
    ),
    "MOVE": (
        "peer -> server; server -> the other peer",
        "PEER-ID, SESSION-ID; answer: STATUS, or 404 when the other peer has left",
        "the other's NAT refused my check: tell it to move to a fresh socket (once per session)",
    ),
    "NOTICE": (
        "server -> both peers of a session, an indication",
        "SESSION-ID, ERROR-CODE (486: the relay's budget is spent)",
        "signed with the recipient's request key: the relay refuses this session from now on",
    ),
}

# name -> (defined by, what it means)
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "MAPPED-ADDRESS": ("RFC 8489 §14.1", "the reflexive address, not XORed (old clients)"),
    "USERNAME": ("RFC 8489 §14.3", "a long-term credential's user name (decoded; punch does not use it)"),
    "MESSAGE-INTEGRITY": ("RFC 8489 §14.5", "HMAC-SHA1 (decoded and checked; punch signs with SHA-256)"),
    "ERROR-CODE": ("RFC 8489 §14.8", "an error response's code and reason"),
    "UNKNOWN-ATTRIBUTES": ("RFC 8489 §14.13", "in a 420: the comprehension-required types the server did not know"),
    "REALM": ("RFC 8489 §14.9", "long-term credentials (decoded; punch does not use it)"),
    "NONCE": ("RFC 8489 §14.10", "long-term credentials (decoded; punch does not use it)"),
    "MESSAGE-INTEGRITY-SHA256": (
        "RFC 8489 §14.6",
        "HMAC-SHA256 under the registration token, the closed group's key or the session key",
    ),
    "XOR-MAPPED-ADDRESS": ("RFC 8489 §14.2", "the address and port the request came from, XORed"),
    "SOFTWARE": ("RFC 8489 §14.14", "the server's name and version"),
    "FINGERPRINT": ("RFC 8489 §14.7", "CRC-32 of the message XOR 0x5354554E; on everything punch sends"),
    "CHANGE-REQUEST": ("RFC 5780 §7.2", "answer from the other address and/or port (`punch probe`)"),
    "RESPONSE-ORIGIN": ("RFC 5780 §7.3", "the address the answer left from"),
    "OTHER-ADDRESS": ("RFC 5780 §7.4", "the server's alternate address (`punch server --alternate`)"),
    "PRIORITY": ("RFC 8445 §7.1.1", "ICE's candidate priority (decoded, for aioice interop)"),
    "USE-CANDIDATE": ("RFC 8445 §7.1.2", "the prober nominates this pair"),
    "ICE-CONTROLLED": ("RFC 8445 §7.1.3", "ICE's role tie-breaker (decoded, for aioice interop)"),
    "ICE-CONTROLLING": ("RFC 8445 §7.1.3", "ICE's role tie-breaker (decoded, for aioice interop)"),
    "PEER-ID": ("punch", "the sender's ID (in Introduce: the other peer's)"),
    "TARGET-ID": ("punch", "the peer asked for"),
    "CANDIDATE": ("punch", "an endpoint of a peer, XOR-encoded like XOR-MAPPED-ADDRESS"),
    "SESSION-ID": ("punch", "the session the server introduced; every check and Relay indication carries it"),
    "ROLE": ("punch", "1 opener, 2 prober"),
    "LEASE": ("punch", "seconds the registration lives; 0 says goodbye"),
    "DATA-PAYLOAD": ("punch", "in a Relay indication: one QUIC packet, as the sender's QUIC connection wrote it"),
    "REGISTRATION-TOKEN": ("punch", "proves the ID is ours while the lease lives"),
    "PUBLIC-KEY": ("punch", "a peer's Ed25519 identity key, raw (RFC 8032 §5.1.5); its fingerprint is what people pin"),
    "KEY-SHARE": ("punch", "an ephemeral X25519 public key (RFC 7748 §6.1): a peer's half of one session's key"),
    "KEY-SIGNATURE": (
        "punch",
        "the Ed25519 signature of a KEY-SHARE by its owner's identity key, for the ID it asked for",
    ),
    "STATUS": ("punch", "the server's answer in words (`waiting for 14 to register`, `introducing`)"),
    "OPEN-TTL": ("punch", "reserved: the codec knows it, this version sends it nowhere"),
    "NAT-MAPPING": (
        "punch",
        "the sender's NAT mapping: 1 endpoint-independent, 2 endpoint-dependent; an older server or peer ignores it "
        "and nobody predicts ports",
    ),
    "SERVER-RTT": (
        "punch",
        "a peer's round trip to the server in microseconds (in Connect: ours; in Introduce: the other's); early "
        "checks are timed from both",
    ),
    "RELAY-ADDRESS": (
        "punch",
        "in Introduce: the relay of the session, a server other than the recipient's own (the one that made the "
        "session), XOR-encoded like XOR-MAPPED-ADDRESS; an older peer ignores it and relays through its own server",
    ),
    "RELAY-TICKET": (
        "punch",
        "in Introduce: the recipient's ticket at that relay (16 random bytes, one per peer and session); in each Relay "
        "indication to it: the ticket, checked in constant time, so that only the peer moves where the relay sends it",
    ),
}

_PROBE_LENGTHS = range(0, 1300)


def _message_type(method: int, message_class: MessageClass) -> str:
    data = encode(Message(method, message_class, bytes(12), ()), fingerprint=False)
    return f"0x{int.from_bytes(data[:2], 'big'):04X}"


def methods() -> str:
    members = list(Method)
    check_described(__name__, "the codec's methods", [m.name for m in members], METHODS)
    rows = []
    for member in members:
        sent, carries, meaning = METHODS[member.name]
        kinds = " / ".join(
            code(_message_type(member, c)) for c in (MessageClass.REQUEST, MessageClass.SUCCESS, MessageClass.ERROR)
        )
        rows.append([member.name.title(), code(f"0x{int(member):03X}"), kinds, sent, carries, meaning])
    headers = ["method", "value", "request / success / error type", "from -> to", "attributes", "what for"]
    return "\n".join(table(headers, rows)) + "\n"


def _accepted(decode: Callable[[bytes], object], fill: bytes) -> list[int]:
    lengths = []
    for length in _PROBE_LENGTHS:
        try:
            decode(fill * length)
        except StunDecodeError:
            continue
        lengths.append(length)
    return lengths


def _sizes(lengths: list[int]) -> str:
    if not lengths:
        return "nothing decodes"
    low, high = lengths[0], lengths[-1]
    if low == high:
        return f"{low} bytes"
    step = lengths[1] - lengths[0]
    if lengths != list(range(low, high + 1, step)):
        return ", ".join(str(n) for n in lengths) + " bytes"
    return f"{low}-{high} bytes" + (f" in steps of {step}" if step > 1 else "")


def _text(decode: Callable[[bytes], object]) -> str:
    """A text's limit: in bytes, or in characters where characters of two bytes each stop sooner than bytes do."""
    ascii_, two_byte = _accepted(decode, b"a"), _accepted(decode, "\u00e9".encode())
    if ascii_ and two_byte and 2 * two_byte[-1] > ascii_[-1] + 1:
        return f"UTF-8, at most {ascii_[-1]} characters"
    return "UTF-8, " + _sizes(ascii_)


def _value_format(row: Row) -> str:
    factory = row.decode.__qualname__.split(".")[0]
    context = Context(bytes(12))

    def with_context(value: bytes) -> object:
        return row.decode(value, context, row.name)

    name = row.name
    if factory == "text":
        return _text(with_context)
    if factory == "opaque":
        return "bytes, " + _sizes(_accepted(with_context, b"\0"))
    if factory == "unsigned":
        (size,) = _accepted(with_context, b"\0")
        return f"unsigned {8 * size}-bit integer"
    if factory == "octet":
        return "one byte, then 3 reserved"
    if factory == "flag":
        return "empty"
    if factory == "plain_address":
        return "family, port, IPv4 or IPv6 address"
    if factory == "xor_address":
        return "family, port, address, XORed with the magic cookie (and the transaction ID for IPv6)"
    if factory == "error_code":
        return "class, number, reason (UTF-8)"
    if factory == "unknown_attributes":
        return "a list of 16-bit types"
    raise RegionError(f"tools/docgen/protocol.py: {name}'s value codec {factory!r} is new; say how it reads")


def attributes() -> str:
    members = sorted(AttributeType, key=int)
    names = [TABLE[int(m)].name for m in members]
    check_described(__name__, "the codec's attributes", names, ATTRIBUTES)
    rows = []
    for member, name in zip(members, names, strict=True):
        value = int(member)
        defined, meaning = ATTRIBUTES[name]
        required = "required" if value < 0x8000 else "optional"
        rows.append([code(f"0x{value:04X}"), name, defined, required, _value_format(TABLE[value]), meaning])
    headers = ["type", "attribute", "defined by", "comprehension", "value", "what it means"]
    return "\n".join(table(headers, rows)) + "\n"
