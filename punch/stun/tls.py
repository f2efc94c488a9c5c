"""TLS for STUN over TLS (RFC 8489 §6.2.2): the server's context from its certificate and key, a peer's context that
verifies the server, and certificate pins.

Only the standard library's ssl (asyncio drives it): TLS 1.2 at least. A peer verifies the server's certificate
against the CA file it is given (or the system's trust store) and the name or address it connects to, or pins the
certificate itself by its SHA-256 (as ``openssl x509 -noout -fingerprint -sha256`` prints it), or both. A
certificate that fails either check is refused (:class:`CertificateRefused`), never accepted quietly.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from punch.errors import PunchError

DEFAULT_TLS_PORT = 5349  # STUN over TLS (RFC 8489 §8; "stuns", RFC 7064); 443 where only the web gets out
SHA256_BYTES = 32


class CertificateRefused(PunchError):
    """The server's certificate failed our verification or our pin: the connection is refused."""


def format_sha256(digest: bytes) -> str:
    """``AB:CD:...``, as openssl prints a fingerprint."""
    return ":".join(f"{byte:02X}" for byte in digest)


def parse_sha256(text: str) -> bytes:
    """A SHA-256 fingerprint written as 64 hex digits, with or without colons (``openssl ... -fingerprint``'s
    ``sha256 Fingerprint=`` prefix too); ValueError saying what is wrong."""
    digits = text.split("=", 1)[-1].replace(":", "").strip()
    try:
        digest = bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"{text!r} is not hex digits") from None
    if len(digest) != SHA256_BYTES:
        raise ValueError(f"{text!r} has {len(digest)} bytes, a SHA-256 has {SHA256_BYTES}")
    return digest


def certificate_sha256(certificate: Path) -> bytes:
    """The SHA-256 of the first certificate of a PEM file (what a peer pins); ValueError if there is none."""
    return x509.load_pem_x509_certificate(certificate.read_bytes()).fingerprint(hashes.SHA256())


def server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """The server's TLS context: its certificate chain (PEM, the server's first) and private key. OSError if a file
    cannot be read, ssl.SSLError if they are not a certificate and its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


def client_context(ca: Path | None, pinned: bool) -> ssl.SSLContext:
    """A peer's context: verifies the server's certificate against ``ca`` (a PEM file of CA certificates; None: the
    system's trust store) and the name we connect to; with ``pinned`` and no ``ca``, the pin alone decides
    (:func:`check_pin`), as for a self-signed certificate. OSError or ssl.SSLError if ``ca`` cannot be loaded."""
    if pinned and ca is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_pin(session: ssl.SSLObject | None, pin: bytes) -> None:
    """CertificateRefused unless the certificate ``session``'s server presented has the SHA-256 ``pin``."""
    der = session.getpeercert(binary_form=True) if session is not None else None
    if der is None:
        raise CertificateRefused("the server presented no certificate")
    digest = hashlib.sha256(der).digest()
    if not hmac.compare_digest(digest, pin):
        raise CertificateRefused(
            f"its certificate's SHA-256 is {format_sha256(digest)}, not the pinned {format_sha256(pin)}"
        )
