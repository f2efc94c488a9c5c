"""The rendezvous protocol on the wire: punch's own STUN methods and the attributes each one carries.

Every message is a real STUN message (RFC 8489 §5), so any STUN decoder (Wireshark, tshark) reads it.
The methods and attributes live in the Expert Review ranges that RFC 8489 §18.2/§18.3 leave for extensions.

    Register   peer -> server   PEER-ID, CANDIDATE (host candidates), LEASE [, NAT-MAPPING]
                                                                                 -> XOR-MAPPED-ADDRESS, LEASE
    Connect    peer -> server   PEER-ID, TARGET-ID [, SERVER-RTT]                -> STATUS
    Introduce  server -> peer   PEER-ID (the other), CANDIDATE..., SESSION-ID, ROLE, SESSION-KEY [, NAT-MAPPING]
                                [, SERVER-RTT (the other's)]
    Ready      opener -> server PEER-ID, SESSION-ID                             (our NAT mapping is open)
    Go         server -> prober PEER-ID (the opener), SESSION-ID, ROLE          (probe now)
    Move       peer -> server   PEER-ID, SESSION-ID                 -> STATUS    (the other's NAT refused our check)
    Move       server -> other  PEER-ID (who asks), SESSION-ID                  (move to a fresh socket)
    Ready      mover -> server  PEER-ID, SESSION-ID, from its fresh socket      (probe me there)
    Go         server -> other  PEER-ID (the mover), SESSION-ID, ROLE, CANDIDATE (the Ready's source)
    Binding    peer <-> peer    PEER-ID, SESSION-ID [, USE-CANDIDATE]           (connectivity check, as in ICE)
    Data       peer <-> peer    PEER-ID, SESSION-ID, SEQUENCE, DATA-PAYLOAD     -> success = acknowledgement
    Close      peer <-> peer    PEER-ID, SESSION-ID                             (I have nothing more to send)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from punch.errors import PunchError
from punch.stun import Address, AttributeType, Message, MessageClass, Method, method_name, new_transaction_id

MAX_PEER_ID_BYTES = 128
SESSION_ID_BYTES = 16
SESSION_KEY_BYTES = 32
REGISTRATION_TOKEN_BYTES = 16
PEER_GONE = 404  # the error code of a request about a peer that has left since its introduction (not in RFC 8489)


class ProtocolError(PunchError):
    """A well-formed STUN message that breaks the rendezvous protocol (a missing or invalid attribute)."""


class Unauthorized(ProtocolError):
    """A request for a peer ID that someone else holds (answered with 401, RFC 8489 §14.8)."""


class Role(enum.IntEnum):
    """Who does what in a punch (see punch.peer.puncher)."""

    OPENER = 1  # opens its own NAT mapping with a low-TTL probe, then tells the server it is ready
    PROBER = 2  # waits for Go, then probes; it is the controlling side and nominates the path


class Mapping(enum.IntEnum):
    """How a peer's NAT maps (RFC 4787 §4.1), as the peer found out (NAT-MAPPING; absent = UNKNOWN).

    ENDPOINT_DEPENDENT covers address- and address-and-port-dependent mapping: a peer that compares its public
    endpoint toward two server addresses (other IP and other port) cannot tell them apart, and port prediction
    needs only to know that the public port changes with the destination.
    """

    UNKNOWN = 0  # not measured (no alternate server address, or prediction turned off)
    ENDPOINT_INDEPENDENT = 1
    ENDPOINT_DEPENDENT = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def of(cls, message: Message) -> Mapping:
        """The NAT-MAPPING of a message; UNKNOWN when absent or a value we do not know (it is optional)."""
        value = message.integer(AttributeType.NAT_MAPPING)
        return cls(value) if value is not None and value in cls._value2member_map_ else cls.UNKNOWN


def mapping_attribute(mapping: Mapping) -> tuple[tuple[int, object], ...]:
    """NAT-MAPPING for a message, or nothing when unknown."""
    return ((AttributeType.NAT_MAPPING, int(mapping)),) if mapping is not Mapping.UNKNOWN else ()


def check_peer_id(value: str, what: str = "peer ID") -> str:
    """A peer ID is 1..128 bytes of UTF-8 without control characters."""
    encoded = value.encode("utf-8", "surrogatepass")
    if not 1 <= len(encoded) <= MAX_PEER_ID_BYTES:
        raise ProtocolError(f"{what} must be 1 to {MAX_PEER_ID_BYTES} bytes of UTF-8, got {len(encoded)}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ProtocolError(f"{what} {value!r} contains a control character")
    return value


def request(method: Method, *attributes: tuple[int, object]) -> Message:
    """A new request with a fresh transaction ID."""
    return Message(method, MessageClass.REQUEST, new_transaction_id(), tuple(attributes))


def required_text(message: Message, attribute: AttributeType) -> str:
    """The string value of a required attribute, or ProtocolError naming what is missing."""
    value = message.text(attribute)
    if value is None:
        raise ProtocolError(f"{method_name(message.method)} lacks {_attribute_name(attribute)}")
    return value


def required_peer_id(message: Message, attribute: AttributeType = AttributeType.PEER_ID) -> str:
    """A required PEER-ID/TARGET-ID, checked."""
    return check_peer_id(required_text(message, attribute), _attribute_name(attribute))


def required_session(message: Message) -> bytes:
    """The SESSION-ID (16 bytes) of a message, or ProtocolError."""
    value = message.raw(AttributeType.SESSION_ID)
    if value is None or len(value) != SESSION_ID_BYTES:
        raise ProtocolError(f"{method_name(message.method)} lacks a {SESSION_ID_BYTES}-byte SESSION-ID")
    return value


def _attribute_name(attribute: AttributeType) -> str:
    return attribute.name.replace("_", "-")


@dataclass(frozen=True, slots=True)
class Introduction:
    """What the server tells each peer when both want each other (the Introduce request)."""

    peer_id: str
    candidates: tuple[Address, ...]  # the other's server-reflexive endpoint first, then its host candidates
    session_id: bytes
    role: Role
    key: bytes  # the session's key: peer-to-peer messages carry MESSAGE-INTEGRITY-SHA256 under it
    mapping: Mapping = Mapping.UNKNOWN  # how the other peer's NAT maps, as it told the server
    rtt_us: int | None = None  # the other peer's round trip to the server, as it told the server (SERVER-RTT)

    def to_message(self) -> Message:
        """The Introduce request carrying this introduction."""
        return request(
            Method.INTRODUCE,
            (AttributeType.PEER_ID, self.peer_id),
            *((AttributeType.CANDIDATE, c) for c in self.candidates),
            (AttributeType.SESSION_ID, self.session_id),
            (AttributeType.ROLE, int(self.role)),
            (AttributeType.SESSION_KEY, self.key),
            *mapping_attribute(self.mapping),
            *(((AttributeType.SERVER_RTT, self.rtt_us),) if self.rtt_us is not None else ()),
        )

    @classmethod
    def from_message(cls, message: Message) -> Introduction:
        """Parse an Introduce request; ProtocolError if it is incomplete."""
        role = message.integer(AttributeType.ROLE)
        if role is None or role not in Role._value2member_map_:
            raise ProtocolError(f"Introduce has an invalid ROLE {role!r}")
        candidates = tuple(message.addresses(AttributeType.CANDIDATE))
        if not candidates:
            raise ProtocolError("Introduce lacks CANDIDATE")
        key = message.raw(AttributeType.SESSION_KEY)
        if key is None or len(key) != SESSION_KEY_BYTES:
            raise ProtocolError(f"Introduce lacks a {SESSION_KEY_BYTES}-byte SESSION-KEY")
        return cls(
            required_peer_id(message),
            candidates,
            required_session(message),
            Role(role),
            key,
            Mapping.of(message),
            message.integer(AttributeType.SERVER_RTT),
        )
