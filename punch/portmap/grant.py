"""What a router granted: the public endpoint of our mapping and for how long."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Grant:
    """A mapping as the router answered it: ``external_ip`` None where the router did not say (UPnP IGD's
    GetExternalIPAddress may answer nothing), ``lifetime`` in seconds (0: until deleted, UPnP's permanent lease),
    ``epoch`` the router's clock in seconds where the protocol has one (PCP, NAT-PMP: RFC 6887 §8.5)."""

    external_ip: str | None
    external_port: int
    lifetime: int
    epoch: int | None = None
