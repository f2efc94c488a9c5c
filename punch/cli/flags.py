"""The small rules every command's flags share: numbers in range, and the defaults --help shows."""

from __future__ import annotations

import dataclasses
from typing import Any

from punch.errors import UsageError
from punch.peer.config import PeerConfig
from punch.peer.predict import PredictConfig
from punch.peer.puncher import PunchTimings
from punch.portmap.mapper import PortmapConfig


def positive(flag: str, value: float) -> float:
    if value <= 0:
        raise UsageError(f"{flag} must be greater than 0, got {value:g}")
    return value


def not_negative(flag: str, value: float) -> float:
    if value < 0 or value != value:  # NaN too
        raise UsageError(f"{flag} must be 0 or more, got {value:g}")
    return value


def default_of(config: type, name: str) -> Any:
    """The default of a field of a config dataclass: a flag's default is the library's, written once."""
    return next(f.default for f in dataclasses.fields(config) if f.name == name)


PEERING = ("peer", "send", "receive")  # the commands that run a peer


PEER_TIMEOUT = default_of(PeerConfig, "timeout")
LINGER = default_of(PeerConfig, "linger")
KEEPALIVE = default_of(PeerConfig, "keepalive")
REJOIN = default_of(PeerConfig, "rejoin")
UPGRADE_INTERVAL = default_of(PeerConfig, "upgrade_interval")
NAT_UDP_TIMEOUT = default_of(PeerConfig, "nat_udp_timeout")
PUNCH_TIMEOUT = default_of(PunchTimings, "timeout")
OPEN_TTL = default_of(PunchTimings, "open_ttl")
EARLY_CHECKS = default_of(PunchTimings, "early")
PREDICT_SOCKETS = default_of(PredictConfig, "sockets")
PREDICT_PROBES = default_of(PredictConfig, "probes")
PREDICT_RATE = default_of(PredictConfig, "rate")
PORTMAP_LIFETIME = default_of(PortmapConfig, "lifetime")
