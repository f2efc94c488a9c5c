"""ThrottledLog: the first event, then one line per interval with the count of the others."""

import logging

import pytest

from punch.rendezvous.throttle import ThrottledLog

pytestmark = pytest.mark.unit


def test_one_line_per_interval_with_the_count_of_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    throttled = ThrottledLog(logging.getLogger("test.throttle"), interval=10.0)
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        shown = [throttled.log(t, f"refused {t}") for t in (0.0, 1.0, 2.0, 9.9, 10.5, 11.0, 30.0)]
    assert shown == [True, False, False, False, True, False, True]
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0.0",
        "refused 10.5 (and 3 more like it in the last 10 s)",
        "refused 30.0 (and 1 more like it in the last 20 s)",
    ]
