"""A peer's TLS credentials, made from its identity: a self-signed X.509 certificate of its Ed25519 key (RFC 8410),
and that key as the private key TLS signs with, which signs through the identity and never holds the key's bytes.

No certificate authority: a certificate's only job is to carry the public key that the TLS 1.3 handshake proves
(the CertificateVerify, RFC 8446 §4.4.3, is a signature by that key over the handshake). Which key is acceptable
is decided by pinning (:func:`certificate_key`, compared by the link against the key the rendezvous gave), not by
the certificate's names or signature. The certificate is short-lived all the same, so one that leaks from a
capture is of no use for long.
"""

from __future__ import annotations

import datetime
from typing import NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from punch.identity.keyfile import Identity

LIFETIME = datetime.timedelta(days=1)
CLOCK_SKEW = datetime.timedelta(hours=1)  # valid from a little before now: the peer's clock may be behind


class IdentityKey(Ed25519PrivateKey):
    """An identity as the Ed25519 private key that cryptography's X.509 builder and aioquic's TLS sign with: both
    only call ``sign`` and ``public_key`` (and check the type), so this forwards those to the identity and refuses
    to export anything."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity

    def public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self._identity.public_key)

    def sign(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._identity.sign(bytes(data))

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> NoReturn:
        raise TypeError("an identity's private key stays in its Identity")

    def private_bytes_raw(self) -> NoReturn:
        raise TypeError("an identity's private key stays in its Identity")

    def __copy__(self) -> IdentityKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> IdentityKey:
        return self


def self_signed_certificate(
    identity: Identity, now: datetime.datetime, lifetime: datetime.timedelta = LIFETIME
) -> x509.Certificate:
    """A certificate of ``identity``'s key signed by that key, valid from ``now`` (less the skew) for ``lifetime``;
    the subject is the identity's fingerprint, for a person reading a capture."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.fingerprint)])
    key = IdentityKey(identity)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
    )
    return builder.sign(key, None)  # Ed25519 takes no separate hash (RFC 8410 §6)


def certificate_key(certificate: x509.Certificate) -> bytes | None:
    """The raw 32-byte Ed25519 public key a certificate carries, or None when it carries another kind of key."""
    key = certificate.public_key()
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
