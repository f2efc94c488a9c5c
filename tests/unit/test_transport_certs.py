"""punch.transport.certs and the pinning error: a certificate made from an identity carries its key, verifies
under that key only, and the key TLS signs with never gives the private key away."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from punch.identity.keyfile import Identity
from punch.transport import PeerKeyMismatch
from punch.transport.certs import CLOCK_SKEW, IdentityKey, certificate_key, self_signed_certificate

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)


def test_the_certificate_carries_the_identity_key_and_is_signed_by_it() -> None:
    identity = Identity.generate()
    certificate = self_signed_certificate(identity, NOW, datetime.timedelta(hours=2))
    assert certificate_key(certificate) == identity.public_key
    certificate.verify_directly_issued_by(certificate)  # its own key signed it
    assert certificate.subject.rfc4514_string() == f"CN={identity.fingerprint}"
    assert certificate.not_valid_before_utc == NOW - CLOCK_SKEW
    assert certificate.not_valid_after_utc == NOW + datetime.timedelta(hours=2)


def test_the_certificate_verifies_under_no_other_key() -> None:
    identity, other = Identity.generate(), Identity.generate()
    certificate = self_signed_certificate(identity, NOW)
    assert certificate.signature_hash_algorithm is None  # Ed25519 (RFC 8410 §6)
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(other.public_key).verify(
            certificate.signature, certificate.tbs_certificate_bytes
        )
    assert certificate_key(self_signed_certificate(other, NOW)) != identity.public_key


def test_a_certificate_of_another_kind_of_key_carries_no_ed25519_key() -> None:
    key = generate_private_key(SECP256R1())
    name = x509.Name([])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert certificate_key(certificate) is None


def test_the_tls_key_signs_as_the_identity_and_exports_nothing() -> None:
    identity = Identity.generate()
    key = IdentityKey(identity)
    assert isinstance(key, Ed25519PrivateKey)  # what aioquic checks to pick the signature algorithm
    signature = key.sign(b"transcript")
    Ed25519PublicKey.from_public_bytes(identity.public_key).verify(signature, b"transcript")
    assert (
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == identity.public_key
    )
    with pytest.raises(TypeError, match="an identity's private key stays in its Identity"):
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(TypeError, match="an identity's private key stays in its Identity"):
        key.private_bytes_raw()


def test_the_pinning_error_names_both_fingerprints() -> None:
    pinned, proved = Identity.generate(), Identity.generate()
    error = PeerKeyMismatch("server", pinned.public_key, proved.public_key)
    assert str(error) == f"the server's key is {proved.fingerprint}, not the pinned {pinned.fingerprint}: link refused"
    assert str(PeerKeyMismatch("client", pinned.public_key, None)) == (
        f"the client's key is no Ed25519 key, not the pinned {pinned.fingerprint}: link refused"
    )
