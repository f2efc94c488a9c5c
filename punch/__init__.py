"""punch: UDP hole punching with a STUN rendezvous server (RFC 8489 wire format), and QUIC on the punched path.

``punch.connect`` and ``punch.accept`` (punch.api) give a program a connection to another peer; they are imported
on first use, so that ``import punch`` stays light for what needs only the wire format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from punch.api import Connection, PathInfo, accept, connect

__version__ = "0.1.0"
SOFTWARE = f"punch/{__version__}"
__all__ = ["SOFTWARE", "Connection", "PathInfo", "__version__", "accept", "connect"]


def __getattr__(name: str) -> Any:
    if name in ("Connection", "PathInfo", "accept", "connect"):
        from punch import api

        return getattr(api, name)
    raise AttributeError(f"module 'punch' has no attribute {name!r}")
