"""What a StunEndpoint's handlers send while it handles a batch from the C fast path leaves in one send_batch, in
order, after the batch; refused datagrams are counted as ``send-error`` (fake accelerator and transport, no
sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from punch.stun import Address, Message
from punch.stun.fastpath import Received, Take
from punch.stun.protocol import StunEndpoint

pytestmark = pytest.mark.unit

A, B = ("192.0.2.1", 1000), ("192.0.2.2", 2000)


class FakeAccelerator:
    """Hands out one batch of datagrams and records the batches it is asked to send."""

    def __init__(self, others: Received, failing: int = 0) -> None:
        self.others = others
        self.failing = failing
        self.batches: list[list[tuple[bytes, tuple[str, int]]]] = []

    def drain(
        self, fd: int, tail: bytes, budget: int, take: Take | None = None, /
    ) -> tuple[int, Received, int, int, int]:
        return 0, self.others, 0, 0, 0

    def send_batch(self, fd: int, items: Sequence[tuple[bytes, tuple[str, int]]], /) -> int:
        self.batches.append(list(items))
        return self.failing


class FakeTransport(asyncio.DatagramTransport):
    def __init__(self, buffered: int = 0) -> None:
        super().__init__()
        self.sent: list[tuple[bytes, object]] = []
        self.buffered = buffered

    def sendto(self, data: bytes | bytearray | memoryview, addr: object = None) -> None:
        self.sent.append((bytes(data), addr))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return False


def echo_twice(endpoint: list[StunEndpoint]) -> dict[bytes, object]:
    """Fast paths for two message types: one answers each datagram twice, the other raises."""

    def answer(data: bytes, source: Address) -> bool:
        endpoint[0].send_bytes(data + b"-1", source)
        endpoint[0].send_bytes(data + b"-2", source)
        return True

    def broken(data: bytes, source: Address) -> bool:
        raise RuntimeError("a bug in a handler")

    return {b"\x00\x01": answer, b"\x00\x02": broken}


def run(accelerator: FakeAccelerator, transport: FakeTransport) -> StunEndpoint:
    async def scenario() -> StunEndpoint:
        def ignore(message: Message, source: Address, data: bytes) -> None:
            pass

        endpoint = StunEndpoint(ignore)
        endpoint.connection_made(transport)
        endpoint.fast_paths.update(echo_twice([endpoint]))  # type: ignore[arg-type]
        endpoint._drain(accelerator, 7, b"", None, 512)  # type: ignore[arg-type]
        endpoint.send_bytes(b"after", A)  # outside a batch: straight to the transport
        return endpoint

    return asyncio.run(scenario())


def test_a_batch_answers_leave_together_in_order() -> None:
    accelerator = FakeAccelerator([(b"\x00\x01a", A), (b"\x00\x02!", B), (b"\x00\x01b", B)])
    transport = FakeTransport()
    endpoint = run(accelerator, transport)
    assert accelerator.batches == [[(b"\x00\x01a-1", A), (b"\x00\x01a-2", A), (b"\x00\x01b-1", B), (b"\x00\x01b-2", B)]]
    assert transport.sent == [(b"after", A)]
    assert endpoint.counters["handler-error"] == 1  # the broken handler did not stop the batch
    assert "send-error" not in endpoint.counters


def test_datagrams_the_kernel_refuses_are_counted() -> None:
    accelerator = FakeAccelerator([(b"\x00\x01a", A)], failing=2)
    endpoint = run(accelerator, FakeTransport())
    assert endpoint.counters["send-error"] == 2


def test_behind_datagrams_asyncio_holds_a_batch_queues_through_the_transport() -> None:
    accelerator = FakeAccelerator([(b"\x00\x01a", A)])
    transport = FakeTransport(buffered=100)
    run(accelerator, transport)
    assert accelerator.batches == []
    assert transport.sent == [(b"\x00\x01a-1", A), (b"\x00\x01a-2", A), (b"after", A)]


def test_a_batch_with_nothing_for_python_sends_nothing() -> None:
    accelerator = FakeAccelerator([])
    transport = FakeTransport()
    run(accelerator, transport)
    assert (accelerator.batches, transport.sent) == ([], [(b"after", A)])
