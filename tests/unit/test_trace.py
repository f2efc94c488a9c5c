"""The trace writer (punch.stun.trace): what it says of a datagram, its lines, and whose tracer is current."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from punch.stun import AttributeType, Method, encode, make_error, trace
from punch.stun.wire import request

pytestmark = pytest.mark.unit


def test_a_register_is_summed_up_by_the_attributes_that_tell_its_story() -> None:
    message = request(
        Method.REGISTER,
        (AttributeType.PEER_ID, "10"),
        (AttributeType.CANDIDATE, ("10.0.10.2", 4000)),
        (AttributeType.LEASE, 30),
        (AttributeType.NAT_MAPPING, 1),
    )
    data = encode(message)
    assert trace.summary(data) == {
        "size": len(data),
        "method": "Register",
        "class": "request",
        "txid": message.transaction_id.hex(),
        "peer": "10",
        "lease": 30,
        "nat_mapping": 1,
        "candidates": ["10.0.10.2:4000"],
    }


def test_an_error_a_check_and_bytes_that_are_not_stun() -> None:
    check = request(Method.BINDING, (AttributeType.SESSION_ID, bytes(range(16))), (AttributeType.USE_CANDIDATE, None))
    assert trace.summary(encode(check)) | {"txid": "-"} == {
        "size": len(encode(check)),
        "method": "Binding",
        "class": "request",
        "txid": "-",
        "session": "00010203",
        "use_candidate": True,
    }
    refused = encode(make_error(request(Method.CONNECT), 401, "taken"))
    assert trace.summary(refused)["error"] == "401 taken"
    assert trace.summary(b"hey") == {"size": 3, "stun": False}


def test_a_datagram_is_one_json_line_at_the_time_given() -> None:
    out = io.StringIO()
    tracer = trace.Tracer(out, clock=lambda: 100.5)
    tracer.start("peer 10", "peer", id="10")
    tracer.datagram("send", "0.0.0.0:4000", "192.0.2.14:5000", encode(request(Method.BINDING)), ttl=2, at=99.25)
    start, sent = (json.loads(line) for line in out.getvalue().splitlines())
    assert start == {"t": 100.5, "event": "start", "format": 1, "participant": "peer 10", "role": "peer", "id": "10"}
    assert (sent["t"], sent["event"], sent["local"], sent["remote"], sent["ttl"]) == (
        99.25,
        "send",
        "0.0.0.0:4000",
        "192.0.2.14:5000",
        2,
    )


@pytest.mark.asyncio
async def test_log_lines_go_to_the_tracer_current_where_they_are_logged() -> None:
    """Two tasks, each started under a tracer of its own, and code outside both: each line lands in its own task's
    trace, the outside one in none (peers run in one process trace apart)."""
    outs = {name: io.StringIO() for name in ("a", "b")}
    handler = trace.TraceHandler()
    log = logging.getLogger("punch.test_trace")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    async def say(text: str) -> None:
        await asyncio.sleep(0)
        log.info("%s speaks", text)

    try:
        tasks = []
        for name, out in outs.items():
            with trace.tracing(trace.Tracer(out)):
                tasks.append(asyncio.ensure_future(say(name)))
        log.info("nobody's")
        await asyncio.gather(*tasks)
    finally:
        log.removeHandler(handler)
    for name, out in outs.items():
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(line["event"], line["logger"], line["message"]) for line in lines] == [
            ("log", "punch.test_trace", f"{name} speaks")
        ]
    assert trace.current() is None
