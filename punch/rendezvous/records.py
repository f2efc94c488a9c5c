"""What a shared registry (punch.rendezvous.shared) stores and what servers pass each other, as bytes.

Pure: no I/O. Each record is a list of fields, each field its length (4 bytes) and its bytes, so that any field may
hold any bytes (packed endpoints, tokens, keys). The keys are laid out for a Redis Cluster: every key carries a hash
tag (RFC-free, Redis's own ``{...}``), so that what one script touches lies in one hash slot: a registration under
its ID's tag, the two wishes of a pair under the pair's tag, a session under its ID's tag, a server's inbox under the
server's name's tag. Tags are short digests, so that no ID can break the ``{...}`` syntax.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from punch.errors import PunchError
from punch.rendezvous.registry import Match, Registration, Wish
from punch.stun.wire import KeyShare, Mapping

PREFIX = "punch"


class RecordError(PunchError):
    """A stored record or a server's message that does not decode (written by another version, or damaged)."""


def _tag(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.blake2b(data, digest_size=6).hexdigest()


def registration_key(peer_id: str) -> str:
    """The hash holding ``peer_id``'s registration (fields e, c, m, s), under its lease as the key's expiry."""
    return f"{PREFIX}:reg:{{{_tag(peer_id)}}}:{peer_id}"


def wish_keys(asker: str, target: str) -> tuple[str, str]:
    """The keys of ``asker``'s wish for ``target`` and of ``target``'s for ``asker``: one hash slot for both."""
    tag = _tag("\0".join(sorted((asker, target))))
    return f"{PREFIX}:want:{{{tag}}}:{asker}\0{target}", f"{PREFIX}:want:{{{tag}}}:{target}\0{asker}"


def session_key(session_id: bytes) -> str:
    return f"{PREFIX}:session:{{{session_id.hex()}}}"


def inbox_key(server: str) -> str:
    """The stream a server reads what the others ask it to send its peers (Introduce, Go, Move)."""
    return f"{PREFIX}:inbox:{{{_tag(server)}}}:{server}"


def pack_fields(*fields: bytes) -> bytes:
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def unpack_fields(data: bytes, count: int | None = None) -> list[bytes]:
    """The fields of ``data``: exactly ``count`` of them if given, else RecordError."""
    fields, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise RecordError("a record ends inside a field's length")
        size = int.from_bytes(data[offset : offset + 4], "big")
        if offset + 4 + size > len(data):
            raise RecordError(f"a record's field says {size} bytes, {len(data) - offset - 4} are left")
        fields.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    if count is not None and len(fields) != count:
        raise RecordError(f"a record holds {len(fields)} fields, not {count}")
    return fields


class Write(enum.IntEnum):
    """What :meth:`punch.rendezvous.shared.RedisRegistry.store` did."""

    REFUSED = 0  # another token holds the ID
    RENEWED = 1  # the registry held the ID under this token: written again
    CREATED = 2  # the registry did not hold the ID: written


@dataclass(frozen=True, slots=True)
class Stored:
    """A registration as the shared registry holds it: the registration (its ``expires`` on the reader's clock),
    and the name of the server it was made or last refreshed at."""

    registration: Registration
    server: str


def registration_fields(registration: Registration, server: str) -> dict[str, bytes]:
    """The hash fields of a stored registration."""
    return {
        "e": registration.endpoints,
        "c": registration.credentials,
        "m": bytes((int(registration.mapping),)),
        "s": server.encode(),
    }


def stored_of(peer_id: str, fields: dict[bytes, bytes], ttl_ms: int, now: float) -> Stored:
    """A stored registration from its hash fields and its key's remaining life (``now``: the reader's clock)."""
    try:
        mapping = Mapping(fields[b"m"][0])
        registration = Registration(peer_id, fields[b"e"], now + ttl_ms / 1000, fields[b"c"], mapping)
        return Stored(registration, fields[b"s"].decode())
    except (KeyError, IndexError, ValueError, UnicodeDecodeError) as error:
        raise RecordError(f"the stored registration of {peer_id} does not decode: {error!r}") from None


def _registration(registration: Registration) -> bytes:
    return pack_fields(
        registration.peer_id.encode(),
        registration.endpoints,
        registration.credentials,
        bytes((int(registration.mapping),)),
    )


def _registration_of(data: bytes, expires: float) -> Registration:
    peer_id, endpoints, credentials, mapping = unpack_fields(data, 4)
    return Registration(peer_id.decode(), endpoints, expires, credentials, Mapping(mapping[0]))


def encode_wish(wish: Wish) -> bytes:
    rtt = b"" if wish.rtt_us is None else wish.rtt_us.to_bytes(8, "big")
    return pack_fields(wish.share.share, wish.share.signature, rtt, wish.transaction)


def decode_wish(data: bytes) -> Wish:
    share, signature, rtt, transaction = unpack_fields(data, 4)
    return Wish(KeyShare(share, signature), int.from_bytes(rtt, "big") if rtt else None, transaction)


def encode_match(match: Match) -> bytes:
    """A session as servers pass it to each other and store it (leases are not part of it: each server has its own
    clock; the reader gives the registrations the session's own life)."""
    connects = b"".join(pack_fields(p.encode(), t) for p, t in sorted(match.connects))
    return pack_fields(
        _registration(match.opener),
        _registration(match.prober),
        match.session_id,
        encode_wish(Wish(match.opener_share, match.opener_rtt_us, b"")),
        encode_wish(Wish(match.prober_share, match.prober_rtt_us, b"")),
        connects,
        (match.mover or "").encode(),
        match.servers[0].encode(),
        match.servers[1].encode(),
    )


def decode_match(data: bytes, expires: float) -> Match:
    """The session :func:`encode_match` wrote; its registrations expire at ``expires`` on the reader's clock."""
    try:
        opener, prober, session_id, first, second, connects, mover, server0, server1 = unpack_fields(data, 9)
        opener_wish, prober_wish = decode_wish(first), decode_wish(second)
        pairs = unpack_fields(connects)
        return Match(
            _registration_of(opener, expires),
            _registration_of(prober, expires),
            session_id,
            opener_wish.share,
            prober_wish.share,
            opener_wish.rtt_us,
            prober_wish.rtt_us,
            frozenset((pairs[i].decode(), pairs[i + 1]) for i in range(0, len(pairs), 2)),
            mover.decode() or None,
            (server0.decode(), server1.decode()),
        )
    except (IndexError, ValueError, UnicodeDecodeError) as error:
        raise RecordError(f"a stored session does not decode: {error!r}") from None


@dataclass(frozen=True, slots=True)
class Envelope:
    """What one server asks another to send a peer registered there, on the other's inbox.

    ``message`` is the STUN request to push (unsigned: the recipient's server signs it with the peer's request key);
    ``session``, for an Introduce, the whole session (the recipient's server holds it from then on, for the peer's
    Ready, Move and relay), else empty.
    """

    recipient: str
    message: bytes
    session: bytes = b""

    def encode(self) -> bytes:
        return pack_fields(self.recipient.encode(), self.message, self.session)

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        try:
            recipient, message, session = unpack_fields(data, 3)
            return cls(recipient.decode(), message, session)
        except UnicodeDecodeError as error:
            raise RecordError(f"a server's message does not decode: {error!r}") from None
