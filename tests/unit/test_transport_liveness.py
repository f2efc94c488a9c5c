"""punch.transport.liveness: a PING on demand (after a change of path), besides the periodic ones."""

from __future__ import annotations

import pytest

from punch.transport.liveness import Liveness

pytestmark = pytest.mark.asyncio


async def test_check_now_pings_at_once_while_running_and_not_before() -> None:
    pings: list[int] = []
    changes: list[bool] = []
    liveness = Liveness(pings.append, changes.append, keepalive=60.0, dead_after=120.0)
    liveness.check_now()
    assert pings == []  # not running yet: the handshake has not crossed the path
    liveness.start()
    liveness.check_now()
    liveness.check_now()
    assert pings == [1, 2]  # each at once, with a fresh uid, 60 s before the first periodic one
    liveness.stop()
    liveness.check_now()
    assert pings == [1, 2]
    assert changes == []
