"""Token buckets per source IP (no sockets, explicit clock)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from punch.rendezvous.ratelimit import RateLimiter

pytestmark = pytest.mark.unit


def test_a_burst_passes_then_the_rate_holds() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.allow("192.0.2.9", now=0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("192.0.2.9", now=0.05) is False  # half a token back
    assert limiter.allow("192.0.2.9", now=0.1) is True
    assert limiter.allow("198.51.100.7", now=0.1) is True  # another source has its own bucket


def test_the_table_forgets_the_longest_unused_source() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_sources=2)
    assert limiter.allow("a", now=0)
    assert limiter.allow("b", now=0)
    assert not limiter.allow("a", now=0)
    assert limiter.allow("c", now=0)  # "b" is forgotten now
    assert limiter.allow("b", now=0)  # so it starts again full


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 9), st.integers(0, 40)), min_size=1, max_size=30
    )
)
def test_taking_a_batch_is_allowing_each_request_in_turn(steps: list[tuple[str, int, int]]) -> None:
    """What the C fast path asks (take: once per source and batch) gives what allow() would, one by one."""
    batched, single = RateLimiter(rate=4, burst=6, max_sources=2), RateLimiter(rate=4, burst=6, max_sources=2)
    now = 0.0
    for source, count, tenths in steps:
        now += tenths / 10
        assert batched.take(source, count, now) == sum(single.allow(source, now) for _ in range(count))
