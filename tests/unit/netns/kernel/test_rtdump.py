"""netns/kernel/rtdump.py and rtnl.Socket.dump: rtnetlink dumps packed by hand, parsed back; bad ones fail precisely."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from netns.kernel import rtdump, rtnl
from tests.unit.netns.kernel.test_rtnl import error, socket_with

pytestmark = pytest.mark.unit

IFF_UP_LOWER = rtnl.IFF_UP | 0x10000  # IFF_UP | IFF_LOWER_UP


def multi(kind: int, seq: int, payload: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, rtnl.NLM_F_MULTI, seq, 0) + payload


def done(seq: int, code: int = 0) -> bytes:
    return multi(rtnl.NLMSG_DONE, seq, struct.pack("=i", -code))


def link(index: int, name: str, flags: int = IFF_UP_LOWER, operstate: int = 6, qdisc: str = "noqueue") -> bytes:
    return (
        rtnl.IFINFO.pack(socket.AF_UNSPEC, 1, index, flags, 0)
        + rtnl.attr(rtnl.IFLA_IFNAME, name.encode() + b"\0")
        + rtnl.attr(4, struct.pack("=I", 1500))  # IFLA_MTU: not in the table, skipped
        + rtnl.attr(rtdump.IFLA_QDISC, qdisc.encode() + b"\0")
        + rtnl.attr(rtdump.IFLA_OPERSTATE, bytes([operstate]))
    )


def address(index: int, addr: str, prefixlen: int) -> bytes:
    packed = socket.inet_aton(addr)
    return (
        rtnl.IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index)
        + rtnl.attr(rtnl.IFA_ADDRESS, packed)
        + rtnl.attr(rtnl.IFA_LOCAL, packed)
        + rtnl.attr(3, b"inet\0")  # IFA_LABEL: skipped
    )


def route(dst: str | None, dst_len: int, gateway: str | None, oif: int, table: int = 254) -> bytes:
    body = rtnl.RTMSG.pack(socket.AF_INET, dst_len, 0, 0, min(table, 252), 4, 0, 1, 0)
    body += rtnl.attr(rtdump.RTA_TABLE, struct.pack("=I", table))
    body += rtnl.attr(rtnl.RTA_DST, socket.inet_aton(dst)) if dst else b""
    body += rtnl.attr(rtnl.RTA_GATEWAY, socket.inet_aton(gateway)) if gateway else b""
    return body + rtnl.attr(rtdump.RTA_OIF, struct.pack("=I", oif))


def test_a_link_gives_its_index_name_flags_state_and_root_qdisc() -> None:
    assert rtdump.parse_link(link(2, "inet", qdisc="tbf")) == rtdump.Link(2, "inet", IFF_UP_LOWER, "UP", "tbf")
    assert rtdump.parse_link(link(1, "lo", flags=0x9, operstate=0)).operstate == "UNKNOWN"
    assert rtdump.parse_link(link(1, "lo", operstate=9)).operstate == "9"  # a state newer than this table


def test_an_address_gives_its_link_address_and_prefix_length() -> None:
    assert rtdump.parse_address(address(3, "10.0.0.1", 16)) == rtdump.Address(3, "10.0.0.1", 16)
    ipv6 = bytes([socket.AF_INET6]) + rtnl.IFADDR.pack(socket.AF_INET, 64, 0, 0, 3)[1:]
    assert rtdump.parse_address(ipv6) is None


def test_a_route_gives_destination_gateway_device_and_table() -> None:
    assert rtdump.parse_route(route(None, 0, "10.1.0.1", 2)) == rtdump.Route(None, 0, "10.1.0.1", 2, 254)
    assert rtdump.parse_route(route("10.0.0.0", 16, None, 3, table=1000)) == rtdump.Route("10.0.0.0", 16, None, 3, 1000)


def test_a_multi_part_dump_is_read_across_datagrams_up_to_done() -> None:
    first = multi(rtnl.RTM_NEWLINK, 1, link(1, "lo")) + multi(rtnl.RTM_NEWLINK, 1, link(2, "inet"))
    second = multi(rtnl.RTM_NEWLINK, 1, link(3, "lan10")) + done(1)
    sock, kernel = socket_with(first, second)
    assert [(x.index, x.name) for x in rtdump.links(sock)] == [(1, "lo"), (2, "inet"), (3, "lan10")]
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", kernel.sent[0])
    assert (length, kind, flags, seq) == (32, rtnl.RTM_GETLINK, rtnl.NLM_F_REQUEST | rtnl.NLM_F_DUMP, 1)


def test_addresses_and_main_table_routes_are_dumped_for_ipv4() -> None:
    sock, kernel = socket_with(
        multi(rtnl.RTM_NEWADDR, 1, address(1, "127.0.0.1", 8)) + multi(rtnl.RTM_NEWADDR, 1, address(2, "10.0.0.1", 16)),
        done(1),
        multi(rtnl.RTM_NEWROUTE, 2, route(None, 0, "10.1.0.1", 2))
        + multi(rtnl.RTM_NEWROUTE, 2, route("127.0.0.0", 8, None, 1, table=255))
        + done(2),
    )
    assert rtdump.addresses(sock) == [rtdump.Address(1, "127.0.0.1", 8), rtdump.Address(2, "10.0.0.1", 16)]
    assert rtdump.routes(sock) == [rtdump.Route(None, 0, "10.1.0.1", 2, 254)]
    assert struct.unpack_from("=B", kernel.sent[0], 16) == (socket.AF_INET,)


def test_a_stale_reply_is_skipped_and_an_error_raises_its_errno() -> None:
    sock, _ = socket_with(error(7, errno.EEXIST) + error(1, errno.EPERM))
    with pytest.raises(OSError, match="Operation not permitted") as caught:
        rtdump.links(sock)
    assert caught.value.errno == errno.EPERM


def test_an_error_code_in_done_raises_its_errno() -> None:
    sock, _ = socket_with(multi(rtnl.RTM_NEWLINK, 1, link(1, "lo")) + done(1, errno.EINTR))
    with pytest.raises(OSError, match="Interrupted system call") as caught:
        rtdump.links(sock)
    assert caught.value.errno == errno.EINTR


LINK_HEADER = rtnl.IFINFO.pack(0, 0, 4, 0, 0)
CASES = {
    "short header": (
        multi(rtnl.RTM_NEWLINK, 1, link(1, "lo"))[:10],
        "netlink header at offset 0: 10 bytes left, a header is 16",
    ),
    "message past the datagram": (
        multi(rtnl.RTM_NEWLINK, 1, link(1, "lo"))[:40],
        "netlink message at offset 0: length 68, 40 bytes left",
    ),
    "message shorter than its header": (
        struct.pack("=IHHII", 8, rtnl.RTM_NEWLINK, 0, 1, 0),
        "netlink message at offset 0: length 8, less than its 16-byte header",
    ),
    "done without its code": (multi(rtnl.NLMSG_DONE, 1, b""), "NLMSG_DONE: 0 bytes of payload, its error code needs 4"),
    "short ifinfomsg": (multi(rtnl.RTM_NEWLINK, 1, b"\0" * 8) + done(1), "RTM_NEWLINK: 8 bytes, its header needs 16"),
    "attribute past the message": (
        multi(rtnl.RTM_NEWLINK, 1, LINK_HEADER + struct.pack("=HH", 40, 3) + b"lo\0\0") + done(1),
        "RTM_NEWLINK: attribute 3 at offset 16: length 40 does not fit the 8 bytes left",
    ),
    "short attribute header": (
        multi(rtnl.RTM_NEWLINK, 1, LINK_HEADER + b"\5\0") + b"\0\0" + done(1),  # padded to 4 bytes
        "RTM_NEWLINK: attribute at offset 16: 2 bytes left, a header is 4",
    ),
    "link without a name": (
        multi(rtnl.RTM_NEWLINK, 1, LINK_HEADER + rtnl.attr(rtdump.IFLA_OPERSTATE, b"\6")) + done(1),
        "RTM_NEWLINK: link 4 has no IFLA_IFNAME",
    ),
}


@pytest.mark.parametrize(("datagram", "message"), CASES.values(), ids=CASES.keys())
def test_a_truncated_or_malformed_link_dump_says_where_and_why(datagram: bytes, message: str) -> None:
    sock, _ = socket_with(datagram)
    with pytest.raises(rtnl.DecodeError) as caught:
        rtdump.links(sock)
    assert str(caught.value) == message


def test_a_short_route_or_address_attribute_names_the_attribute_and_its_size() -> None:
    short_oif = route(None, 0, None, 2)[:-8] + rtnl.attr(rtdump.RTA_OIF, b"\2\0")
    sock, _ = socket_with(multi(rtnl.RTM_NEWROUTE, 1, short_oif) + done(1))
    with pytest.raises(rtnl.DecodeError, match=r"^RTM_NEWROUTE/RTA_OIF: 2 bytes, expected 4$"):
        rtdump.routes(sock)
    short = rtnl.IFADDR.pack(socket.AF_INET, 8, 0, 0, 1) + rtnl.attr(rtnl.IFA_ADDRESS, b"\1")
    sock, _ = socket_with(multi(rtnl.RTM_NEWADDR, 1, short) + done(1))
    with pytest.raises(rtnl.DecodeError, match=r"^RTM_NEWADDR/IFA_ADDRESS: 1 bytes, expected 4 \(an IPv4 address\)$"):
        rtdump.addresses(sock)
