"""The session's key, which only the two peers can derive: an ephemeral X25519 exchange (RFC 7748) authenticated
by each peer's identity key (Ed25519, RFC 8032), the rendezvous server passing the public halves on.

1. Each Connect carries a fresh **key share**: an X25519 public key, and the asker's Ed25519 signature over it, its
   own ID, the ID it asks for and its identity key (:func:`signed_share`), so that the server can neither forge a
   share nor pass one on to a peer it was not meant for.
2. The Introduce passes on the other's identity key, share and signature. The peer checks the signature, and the
   identity key against what it pinned or knew (punch.identity.known_peers), before it uses anything.
3. Both compute the X25519 shared secret of their own share and the other's, and the session key from it with
   HKDF-SHA256 (RFC 5869): the SESSION-ID as salt, and as info a label and both peers' IDs, identity keys and
   shares, the opener's first (:func:`session_key`). Both get the same 32 bytes; the server, which saw every public
   value, cannot.

A share is used for one Connect's introduction only, so every session has a key of its own, also against a server
that replays an old introduction (forward secrecy too: the ephemeral private key is gone after the session began).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from punch.identity.keyfile import Identity, verify
from punch.stun.wire import KEY_SHARE_BYTES, KeyShare

SESSION_KEY_BYTES = 32
_SHARE_LABEL = b"punch/1 key share"
_SESSION_LABEL = b"punch/1 session key"


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def signed_share(peer_id: str, target: str, public_key: bytes, share: bytes) -> bytes:
    """What a share's signature covers: a label, the asker's ID, the ID it asked for, its identity key, the share
    (each with its length, so that no two different tuples give the same bytes)."""
    parts = (peer_id.encode(), target.encode(), public_key, share)
    return _SHARE_LABEL + b"".join(_field(part) for part in parts)


@dataclass(frozen=True, slots=True)
class Party:
    """One side of a session as both peers see it."""

    peer_id: str
    public_key: bytes
    share: bytes


class OwnShare:
    """Our half of one session's key: the ephemeral private key stays here; :attr:`public` goes in Connect."""

    def __init__(self, identity: Identity, peer_id: str, target: str) -> None:
        self._private = X25519PrivateKey.generate()
        share = self._private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._party = Party(peer_id, identity.public_key, share)
        self.public = KeyShare(share, identity.sign(signed_share(peer_id, target, identity.public_key, share)))

    @property
    def party(self) -> Party:
        return self._party

    def session_key(self, theirs: Party, session_id: bytes, we_open: bool) -> bytes | None:
        """The session's key with the other's (checked) share; None if the share is not a usable X25519 key."""
        if len(theirs.share) != KEY_SHARE_BYTES:
            return None
        try:
            secret = self._private.exchange(X25519PublicKey.from_public_bytes(theirs.share))
        except ValueError:  # a low-order point: the shared secret would be all zeros (RFC 7748 §6.1)
            return None
        opener, prober = (self._party, theirs) if we_open else (theirs, self._party)
        return session_key(secret, session_id, opener, prober)


def share_is_genuine(theirs: Party, signature: bytes, asked_for: str) -> bool:
    """Whether ``signature`` is ``theirs``' identity key's signature of its share, made for a Connect that asked for
    ``asked_for`` (our ID, or our fingerprint where they named us by it)."""
    return verify(
        theirs.public_key, signature, signed_share(theirs.peer_id, asked_for, theirs.public_key, theirs.share)
    )


def session_key(secret: bytes, session_id: bytes, opener: Party, prober: Party) -> bytes:
    """HKDF-SHA256 of the X25519 ``secret`` (module docstring)."""
    parts = (
        opener.peer_id.encode(),
        opener.public_key,
        opener.share,
        prober.peer_id.encode(),
        prober.public_key,
        prober.share,
    )
    info = _SESSION_LABEL + b"".join(_field(part) for part in parts)
    return HKDF(algorithm=hashes.SHA256(), length=SESSION_KEY_BYTES, salt=session_id, info=info).derive(secret)
