"""The errors of port mapping: one base, and what a router's answer can be."""

from __future__ import annotations

from punch.errors import PunchError


class PortmapError(PunchError):
    """A port mapping could not be made, renewed or deleted with one protocol; the message says why, in a line."""


class PortmapDecodeError(PortmapError):
    """Bytes from the router that are not a valid answer: ``where`` names the place ("PCP header/version"),
    ``reason`` says what is wrong there, with expected against actual sizes where they apply."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class Mismatch(PortmapError):
    """A valid answer, but not to our request (another nonce, opcode or port): dropped, as RFC 6887 §8.3 says."""


class RouterRefused(PortmapError):
    """The router answered our request with an error result code (``code``, ``name``)."""

    def __init__(self, protocol: str, code: int, name: str, detail: str = "") -> None:
        super().__init__(f"{protocol} result {code} {name}{': ' + detail if detail else ''}")
        self.code = code
        self.name = name


class NotSpoken(PortmapError):
    """The router does not speak the protocol: nothing listens (ICMP port unreachable), it says it does not know
    the version, or it stayed silent."""
