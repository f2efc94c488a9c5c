"""punch: UDP hole punching with a STUN rendezvous server (RFC 8489 wire format)."""

__version__ = "0.1.0"
SOFTWARE = f"punch/{__version__}"
