"""A peer's long-term identity: an Ed25519 key pair (RFC 8032), kept in a file only its owner can read.

The file is the private key in PEM (PKCS #8, what ``openssl genpkey -algorithm ed25519`` writes, and what
``openssl pkey -in FILE -pubout`` reads), mode 0600, in a directory of mode 0700. It is made on first use where the
default is meant (``$XDG_CONFIG_HOME/punch/identity``, else ``~/.config/punch/identity``), atomically: two peers
started at the same moment on a fresh machine end up with one key, not two half-written files.

Anything wrong with a file the user named is an error that says what and how to fix it; nothing is overwritten.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from punch.errors import UsageError
from punch.identity.fingerprint import fingerprint

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class IdentityError(UsageError):
    """An identity or known-peers file that cannot be used; the message names the file and the fix."""


def config_dir() -> Path:
    """Where punch keeps its files: ``$XDG_CONFIG_HOME/punch``, else ``~/.config/punch`` (XDG Base Directory)."""
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    return (Path(base) if os.path.isabs(base) else Path.home() / ".config") / "punch"


def default_identity_path() -> Path:
    return config_dir() / "identity"


class Identity:
    """A key pair: signs our key shares (punch.identity.agreement); its public half is what peers pin."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self._public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._fingerprint = fingerprint(self._public)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``data`` (False for a malformed key too)."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except Exception:  # InvalidSignature, or a key that is not a point of the curve
        return False
    return True


class _Missing(Exception):
    """No file at the path (yet)."""


def load_identity(path: Path, *, create: bool, flag: str = "--identity") -> tuple[Identity, bool]:
    """The identity in ``path`` and whether it was made just now. A missing file is made when ``create`` (the
    default path), else IdentityError, as for a file that is corrupt, unreadable or that others may read."""
    try:
        return _read(path, flag), False
    except _Missing:
        if not create:
            make = f"`punch id --identity {path}`"
            raise IdentityError(f"{flag} {path}: no such file; make a new identity with {make}") from None
    return _create(path, flag), True


def _read(path: Path, flag: str) -> Identity:
    make = f"`punch id --identity {path}`"
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Missing from None
    except OSError as error:
        raise IdentityError(
            f"{flag} {path}: cannot read it ({error.strerror}); check the path and its rights"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"{flag} {path}: others may read this private key (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`, or make a new identity if it may have leaked"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise IdentityError(f"{flag} {path}: the key is encrypted; punch needs it unencrypted (mode 0600)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise IdentityError(
            f"{flag} {path}: not a private key in PEM; move it away and make a new identity with {make}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(
            f"{flag} {path}: a {type(key).__name__.removesuffix('PrivateKey').removeprefix('_')} key, not Ed25519; "
            f"make one with {make} or `openssl genpkey -algorithm ed25519`"
        )
    return Identity(key)


def _create(path: Path, flag: str) -> Identity:
    """A new identity written to ``path`` (0600, its directory 0700) unless another process made one first: then
    that one (os.link of a complete temporary file: the name appears whole or not at all)."""
    identity = Identity.generate()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(identity.pem())
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                try:
                    return _read(path, flag)  # another process was first: use its identity
                except _Missing:
                    raise IdentityError(f"{flag} {path}: it came and went while we made ours; try again") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    except OSError as error:
        raise IdentityError(f"{flag} {path}: cannot create it ({error.strerror}); give a writable path") from None
    return identity
