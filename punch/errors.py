"""The one base error of the punch package; every error punch raises on purpose derives from it."""


class PunchError(Exception):
    """Base of every error raised on purpose by punch."""


class StunDecodeError(PunchError):
    """Bytes that are not a valid STUN message.

    ``where`` names the place ("header/cookie", "attribute/XOR-MAPPED-ADDRESS"),
    ``reason`` says what is wrong there, with expected vs actual sizes where they apply.
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class StunEncodeError(PunchError):
    """A message that cannot be put on the wire (a value out of range, a string too long)."""


class UsageError(PunchError):
    """Bad input from a user (a flag, an address); the message names the flag and the fix."""


class PeerError(PunchError):
    """The peer could not reach its goal; the message is the one-line reason shown to the user."""


class PeerGone(PeerError):
    """The other peer has left the server since its introduction: nothing is left to punch or relay to."""


class RegistryUnavailable(PunchError):
    """The shared registry (``punch server --registry``) cannot be reached, or cannot answer now (down, restarting,
    loading, a cluster failing over)."""
