"""The rendezvous protocol on the wire: punch's own STUN methods and the attributes each one carries.

Every message is a real STUN message (RFC 8489 §5), so any STUN decoder (Wireshark, tshark) reads it.
The methods and attributes live in the Expert Review ranges that RFC 8489 §18.2/§18.3 leave for extensions.

    Register   peer -> server   PEER-ID, CANDIDATE (host candidates), LEASE, PUBLIC-KEY [, NAT-MAPPING]
                                                                  -> XOR-MAPPED-ADDRESS, LEASE, REGISTRATION-TOKEN
    Connect    peer -> server   PEER-ID, TARGET-ID, KEY-SHARE, KEY-SIGNATURE [, SERVER-RTT]       -> STATUS
    Introduce  server -> peer   PEER-ID (the other), CANDIDATE..., SESSION-ID, ROLE, PUBLIC-KEY, KEY-SHARE,
                                KEY-SIGNATURE (the other's three) [, NAT-MAPPING] [, SERVER-RTT (the other's)]
                                [, RELAY-ADDRESS, RELAY-TICKET (a relay at another server than ours)]
    Ready      opener -> server PEER-ID, SESSION-ID                             (our NAT mapping is open)
    Go         server -> prober PEER-ID (the opener), SESSION-ID, ROLE          (probe now)
    Move       peer -> server   PEER-ID, SESSION-ID                 -> STATUS    (the other's NAT refused our check)
    Move       server -> other  PEER-ID (who asks), SESSION-ID                  (move to a fresh socket)
    Ready      mover -> server  PEER-ID, SESSION-ID, from its fresh socket      (probe me there)
    Go         server -> other  PEER-ID (the mover), SESSION-ID, ROLE, CANDIDATE (the Ready's source)
    Binding    peer <-> peer    PEER-ID, SESSION-ID [, USE-CANDIDATE]           (connectivity check, as in ICE)
    Relay      peer -> server -> peer, an indication: PEER-ID, SESSION-ID [, RELAY-TICKET], DATA-PAYLOAD (one QUIC
                                packet of the session; without DATA-PAYLOAD, with RELAY-TICKET: opens our way to a relay
                                at another server, punch.rendezvous.tickets)
    Notice     server -> peer   SESSION-ID, ERROR-CODE                          (the relay refuses the session now)

Once a pair answers, the peers speak QUIC (RFC 9000, punch.transport) on the same sockets: its packets are not
STUN (RFC 7983's first byte tells them apart), directly or inside Relay indications.

Keys. The server holds no secret of a session: each peer derives the session's key from its own ephemeral key share
and the other's, each share signed by its owner's identity key (punch.identity.agreement). What the server sends a
peer on its own (Introduce, Go, Move) and what a peer sends the server about a session (Ready, Move) is signed with
the peer's request key (punch.stun.credentials: its registration token, bound to a closed group's secret if any);
what the peers send each other (checks, Relay indications) with the session's key (:data:`SERVER_METHODS`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from punch.errors import PunchError
from punch.stun import Address, AttributeType, Message, MessageClass, Method, method_name, new_transaction_id

MAX_PEER_ID_BYTES = 128
# A Connect's TARGET-ID that asks for anyone: "introduce me to whoever asks for me" (punch.api.accept). No peer may
# register under it, and a key share signed for it may go to any peer that asks for its signer.
ANYONE = "*"
SESSION_ID_BYTES = 16
REGISTRATION_TOKEN_BYTES = 16
RELAY_TICKET_BYTES = 16  # a peer's ticket at a relay at another server (punch.rendezvous.tickets)
PUBLIC_KEY_BYTES = 32
KEY_SHARE_BYTES = 32
KEY_SIGNATURE_BYTES = 64
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
    """A required PEER-ID/TARGET-ID, checked; a PEER-ID is never :data:`ANYONE` (a TARGET-ID may be)."""
    value = check_peer_id(required_text(message, attribute), _attribute_name(attribute))
    if value == ANYONE and attribute is AttributeType.PEER_ID:
        raise ProtocolError(f"PEER-ID {ANYONE!r} is reserved (a Connect for it asks for anyone); choose another ID")
    return value


def required_session(message: Message) -> bytes:
    """The SESSION-ID (16 bytes) of a message, or ProtocolError."""
    value = message.raw(AttributeType.SESSION_ID)
    if value is None or len(value) != SESSION_ID_BYTES:
        raise ProtocolError(f"{method_name(message.method)} lacks a {SESSION_ID_BYTES}-byte SESSION-ID")
    return value


def _attribute_name(attribute: AttributeType) -> str:
    return attribute.name.replace("_", "-")


# The methods of a session between a peer and the server, signed with the peer's request key; every other message
# with a SESSION-ID (a check, a Relay indication) goes between the peers, signed with the session's key.
SERVER_METHODS = frozenset({Method.INTRODUCE, Method.READY, Method.GO, Method.MOVE, Method.NOTICE})


@dataclass(frozen=True, slots=True)
class KeyShare:
    """A peer's half of a session key: an ephemeral X25519 public key and the peer's signature of it, as Connect
    carries them and the other's Introduce passes them on (punch.identity.agreement makes and checks them)."""

    share: bytes
    signature: bytes

    def attributes(self) -> tuple[tuple[int, object], ...]:
        return ((AttributeType.KEY_SHARE, self.share), (AttributeType.KEY_SIGNATURE, self.signature))

    @classmethod
    def of(cls, message: Message) -> KeyShare:
        """The KEY-SHARE and KEY-SIGNATURE of a Connect or Introduce; ProtocolError if either is missing."""
        share, signature = message.raw(AttributeType.KEY_SHARE), message.raw(AttributeType.KEY_SIGNATURE)
        if share is None or signature is None:
            raise ProtocolError(
                f"{method_name(message.method)} lacks KEY-SHARE and KEY-SIGNATURE; is it a current punch?"
            )
        return cls(share, signature)


def required_public_key(message: Message) -> bytes:
    """The PUBLIC-KEY of a message, or ProtocolError."""
    key = message.raw(AttributeType.PUBLIC_KEY)
    if key is None:
        raise ProtocolError(f"{method_name(message.method)} lacks PUBLIC-KEY; is it a current punch?")
    return key


@dataclass(frozen=True, slots=True)
class Introduction:
    """What the server tells each peer when both want each other (the Introduce request)."""

    peer_id: str
    candidates: tuple[Address, ...]  # the other's server-reflexive endpoint first, then its host candidates
    session_id: bytes
    role: Role
    public_key: bytes  # the other's identity key, as it registered it
    key_share: KeyShare  # the other's half of the session's key, as its Connect carried it
    mapping: Mapping = Mapping.UNKNOWN  # how the other peer's NAT maps, as it told the server
    rtt_us: int | None = None  # the other peer's round trip to the server, as it told the server (SERVER-RTT)
    # The session's relay when it is another server than ours (RELAY-ADDRESS), and our ticket there (RELAY-TICKET):
    # punch.rendezvous.tickets. None: our own server relays, from our registered endpoint.
    relay: Address | None = None
    relay_ticket: bytes = b""

    def to_message(self) -> Message:
        """The Introduce request carrying this introduction."""
        return request(
            Method.INTRODUCE,
            (AttributeType.PEER_ID, self.peer_id),
            *((AttributeType.CANDIDATE, c) for c in self.candidates),
            (AttributeType.SESSION_ID, self.session_id),
            (AttributeType.ROLE, int(self.role)),
            (AttributeType.PUBLIC_KEY, self.public_key),
            *self.key_share.attributes(),
            *mapping_attribute(self.mapping),
            *(((AttributeType.SERVER_RTT, self.rtt_us),) if self.rtt_us is not None else ()),
            *relay_attributes(self.relay, self.relay_ticket),
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
        relay, ticket = message.address(AttributeType.RELAY_ADDRESS), message.raw(AttributeType.RELAY_TICKET)
        if (relay is None) != (ticket is None):
            raise ProtocolError("Introduce has one of RELAY-ADDRESS and RELAY-TICKET without the other")
        return cls(
            required_peer_id(message),
            candidates,
            required_session(message),
            Role(role),
            required_public_key(message),
            KeyShare.of(message),
            Mapping.of(message),
            message.integer(AttributeType.SERVER_RTT),
            relay,
            ticket or b"",
        )


def relay_attributes(relay: Address | None, ticket: bytes) -> tuple[tuple[int, object], ...]:
    """RELAY-ADDRESS and RELAY-TICKET for an Introduce, or nothing when the peer's own server relays."""
    if relay is None or not ticket:
        return ()
    return ((AttributeType.RELAY_ADDRESS, relay), (AttributeType.RELAY_TICKET, ticket))
