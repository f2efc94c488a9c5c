"""netns/kernel/rtnl.py: attributes packed to rtnetlink's layout, replies matched by sequence, errors as errno."""

from __future__ import annotations

import errno
import struct

import pytest

from netns.kernel import rtnl

pytestmark = pytest.mark.unit


class FakeKernel:
    """Stands in for the netlink socket: records requests, answers with canned replies."""

    def __init__(self, *replies: bytes) -> None:
        self.sent: list[bytes] = []
        self.replies = list(replies)

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.replies.pop(0)


def reply(kind: int, seq: int, payload: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, 0, seq, 0) + payload


def error(seq: int, code: int) -> bytes:
    return reply(rtnl.NLMSG_ERROR, seq, struct.pack("=i", -code) + bytes(16))


def socket_with(*replies: bytes) -> tuple[rtnl.Socket, FakeKernel]:
    sock = rtnl.Socket.__new__(rtnl.Socket)
    kernel = FakeKernel(*replies)
    sock._sock = kernel  # type: ignore[assignment]
    sock._seq = 0
    return sock, kernel


def test_attribute_is_length_type_payload_padded_to_four_bytes() -> None:
    assert rtnl.attr(3, b"lo\0") == struct.pack("=HH", 7, 3) + b"lo\0" + b"\0"
    assert rtnl.attr(10, struct.pack("=I", 5)) == struct.pack("=HHI", 8, 10, 5)


def test_link_up_sends_ifinfomsg_with_the_up_flag_and_takes_the_ack() -> None:
    sock, kernel = socket_with(error(1, 0))
    sock.set_link(7, up=True)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", kernel.sent[0])
    assert (length, kind, flags, seq) == (32, rtnl.RTM_NEWLINK, rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK, 1)
    assert struct.unpack_from("=BxHiII", kernel.sent[0], 16) == (0, 0, 7, rtnl.IFF_UP, rtnl.IFF_UP)


def test_an_error_reply_raises_its_errno_and_a_stale_reply_is_skipped() -> None:
    sock, _ = socket_with(error(1, 0))
    sock.set_link(1, up=True)
    stale, mine = error(1, errno.EEXIST), error(2, errno.ENODEV)
    sock, _ = socket_with(error(1, 0), stale + mine)
    sock.set_link(1, up=True)
    with pytest.raises(OSError, match="No such device") as caught:
        sock.set_link(2, up=True)
    assert caught.value.errno == errno.ENODEV


def test_index_is_read_from_the_reply() -> None:
    sock, kernel = socket_with(reply(rtnl.RTM_NEWLINK, 1, struct.pack("=BxHiII", 0, 1, 42, 0, 0)))
    assert sock.index("inet") == 42
    assert kernel.sent[0].endswith(rtnl.attr(rtnl.IFLA_IFNAME, b"inet\0"))
