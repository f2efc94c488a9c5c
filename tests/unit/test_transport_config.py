"""LinkConfig and QuicLink's arguments: a wrong setting is refused with one line that names the field and the fix."""

from __future__ import annotations

import pytest

from punch.errors import UsageError
from punch.identity.keyfile import Identity
from punch.transport import LinkConfig, QuicLink

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"keepalive": 0}, "LinkConfig.keepalive: 0 must be greater than 0"),
        ({"stream_window": -1}, "LinkConfig.stream_window: -1 must be greater than 0"),
        (
            {"keepalive": 5.0, "dead_after": 5.0},
            "LinkConfig.dead_after: 5.0 s must be longer than keepalive (5.0 s), or a live path would count as dead "
            "between two PINGs",
        ),
        (
            {"dead_after": 30.0, "idle_timeout": 30.0},
            "LinkConfig.idle_timeout: 30.0 s must be longer than dead_after (30.0 s), so the session hears of a dead "
            "path before QUIC gives up",
        ),
        (
            {"max_datagram_size": 1199},
            "LinkConfig.max_datagram_size: 1199 is below QUIC's smallest, 1200 (RFC 9000 §14)",
        ),
        ({"congestion_control": "bbr"}, 'LinkConfig.congestion_control: \'bbr\'; use "reno" or "cubic"'),
    ],
)
def test_wrong_settings_are_refused_by_name(settings: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as error:
        LinkConfig(**settings)  # type: ignore[arg-type]
    assert str(error.value) == message


def test_the_defaults_are_valid() -> None:
    config = LinkConfig()
    assert config.keepalive < config.dead_after < config.idle_timeout


@pytest.mark.asyncio
async def test_a_pinned_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(UsageError) as error:
        QuicLink(Identity.generate(), bytes(31), lambda d: None, is_client=True)
    assert str(error.value) == "peer_key: 31 bytes; an Ed25519 public key (the peer's identity) has 32"
