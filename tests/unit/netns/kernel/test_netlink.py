"""netns/kernel/netlink.py: requests encoded by pyroute2's message classes byte for byte as main's hand-packed ones
were, recorded kernel dumps decoded to what main's hand parser made of them, replies matched by sequence, errors
as errno, and bad replies that fail precisely. The recordings: tests/data/netlink/README.md."""

from __future__ import annotations

import errno
import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2 import IPBatch
from pyroute2.netlink import NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR, nlmsg, nlmsgerr
from pyroute2.netlink.rtnl import RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netns.kernel import netlink
from netns.kernel.boundary import DecodeError

pytestmark = pytest.mark.unit

DATA = Path(__file__).parents[3] / "data" / "netlink"
REQUESTS: dict[str, str] = json.loads((DATA / "requests.json").read_text())
DUMPS = {node: json.loads((DATA / f"dump-{node}.json").read_text()) for node in ("nat10", "server")}


class FakeKernel:
    """Stands in for the netlink socket: records what is sent, answers with the given datagrams."""

    def __init__(self, *replies: bytes) -> None:
        self.sent: list[bytes] = []
        self.replies = list(replies)

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def recv(self, size: int) -> bytes:
        if not self.replies:
            raise OSError(errno.EAGAIN, "the test gave no more replies")
        return self.replies.pop(0)


def socket_with(*replies: bytes, last_seq: int = 0) -> tuple[netlink.Socket, FakeKernel]:
    """A netlink.Socket on a FakeKernel whose next request has sequence number ``last_seq + 1``."""
    sock = netlink.Socket.__new__(netlink.Socket)
    kernel = FakeKernel(*replies)
    sock._sock = kernel  # type: ignore[assignment]
    sock._seq = last_seq
    return sock, kernel


def encoded(message: Any, kind: int, seq: int, flags: int = 0) -> bytes:
    """``message`` (a pyroute2 message) encoded as a reply of type ``kind`` to request ``seq``."""
    message["header"].update(type=kind, flags=flags, sequence_number=seq, pid=0)
    message.encode()
    return bytes(message.data)


def ack(seq: int, code: int = 0, kind: int = NLMSG_ERROR) -> bytes:
    """The kernel's acknowledgement of request ``seq`` (``code``: an errno it refused it with), or a dump's end."""
    message = nlmsgerr()
    message["error"] = -code
    return encoded(message, kind, seq, NLM_F_MULTI if kind == NLMSG_DONE else 0)


def header_seq(hex_datagram: str) -> int:
    message = nlmsg(bytes.fromhex(hex_datagram))
    message.decode()
    return int(message["header"]["sequence_number"])


REQUEST_CALLS: dict[str, Callable[[netlink.Socket], object]] = {
    "getlink_by_name": lambda s: s.index("wan10"),
    "setlink_up": lambda s: s.set_link(7, up=True),
    "setlink_master": lambda s: s.set_link(5, master=3),
    "setlink_up_alias": lambda s: s.set_link(1, up=True, alias="netns-lab:punch"),
    "newlink_bridge": lambda s: s.add_bridge("net-server"),
    "newlink_veth": lambda s: s.add_veth("wan10", "peer1.3", 7),
    "newaddr": lambda s: s.add_address(4, "198.51.100.10", 24),
    "newroute_default": lambda s: s.add_route("0.0.0.0/0", "198.51.100.1"),
    "newroute_prefix": lambda s: s.add_route("10.0.10.0/24", "198.51.100.10"),
    "dump_links": lambda s: s.links(),
    "dump_addresses": lambda s: s.addresses(),
    "dump_routes": lambda s: s.routes(),
}


def test_every_recorded_request_has_a_call() -> None:
    assert set(REQUEST_CALLS) == set(REQUESTS)


@pytest.mark.parametrize("name", REQUEST_CALLS)
def test_a_request_is_encoded_as_main_packed_it_by_hand(name: str) -> None:
    sock, kernel = socket_with()  # no reply: the call fails after sending, which is all this test looks at
    with pytest.raises(OSError, match="no more replies"):
        REQUEST_CALLS[name](sock)
    assert kernel.sent[0].hex() == REQUESTS[name]


@pytest.mark.parametrize("node", DUMPS)
@pytest.mark.parametrize("dump", ["links", "addresses", "routes"])
def test_a_recorded_kernel_dump_decodes_as_main_parsed_it(node: str, dump: str) -> None:
    recorded = DUMPS[node][dump]
    datagrams = recorded["datagrams"]
    sock, _ = socket_with(*map(bytes.fromhex, datagrams), last_seq=header_seq(datagrams[0]) - 1)
    found = getattr(sock, dump)()
    assert [[getattr(r, f) for f in r.__slots__] for r in found] == recorded["parsed"]


def test_index_and_alias_from_the_kernels_reply_and_enodev_as_errno() -> None:
    reply = DUMPS["nat10"]["getlink_reply"]["datagrams"]
    sock, _ = socket_with(*map(bytes.fromhex, reply), last_seq=header_seq(reply[0]) - 1)
    assert sock.index("lo") == 1
    sock, _ = socket_with(*map(bytes.fromhex, reply), last_seq=header_seq(reply[0]) - 1)
    assert sock.alias("lo") == "netns-lab:nlrec"
    refused = DUMPS["nat10"]["getlink_enodev"]["datagrams"]
    sock, _ = socket_with(*map(bytes.fromhex, refused), last_seq=header_seq(refused[0]) - 1)
    with pytest.raises(OSError, match="No such device") as caught:
        sock.index("nosuchdev")
    assert caught.value.errno == errno.ENODEV


def test_an_error_reply_raises_its_errno_and_a_stale_reply_is_skipped() -> None:
    sock, kernel = socket_with(ack(1), ack(1, errno.EEXIST) + ack(2, errno.ENODEV))
    sock.set_link(1, up=True)
    with pytest.raises(OSError, match="No such device") as caught:
        sock.set_link(2, up=True)
    assert caught.value.errno == errno.ENODEV
    assert len(kernel.sent) == 2


def test_a_multi_part_dump_is_read_across_datagrams_and_an_error_in_done_raises() -> None:
    links = DUMPS["server"]["links"]["datagrams"]
    seq = header_seq(links[0])
    first, rest = bytes.fromhex(links[0]), b"".join(map(bytes.fromhex, links[1:]))
    sock, _ = socket_with(first, rest, last_seq=seq - 1)
    assert [link.name for link in sock.links()] == ["lo", "net-server"]
    sock, _ = socket_with(first, ack(seq, errno.EINTR, NLMSG_DONE), last_seq=seq - 1)
    with pytest.raises(OSError, match="Interrupted system call") as caught:
        sock.links()
    assert caught.value.errno == errno.EINTR


def test_a_tc_request_is_what_pyroute2_compiles_and_waits_for_its_own_ack() -> None:
    batch = IPBatch()
    batch.tc("replace", "tbf", 4, 0x10000, rate="1000000bit", burst=3028, latency="100ms")
    expected = bytes(batch.batch)
    batch.close()
    message = nlmsg(expected)
    message.decode()
    seq = message["header"]["sequence_number"]
    sock, kernel = socket_with(ack(seq + 1) + ack(seq))
    sock.tc("replace", "tbf", 4, 0x10000, rate="1000000bit", burst=3028, latency="100ms")
    assert kernel.sent[0][16:] == expected[16:]  # the same request; pyroute2 numbers each request anew
    assert not kernel.replies


class Encoded:
    """Stands in for netlink._Compiled: every request encoded by pyroute2 from scratch (the oracle)."""

    def __init__(self, message: Any, kind: int, flags: int) -> None:
        self.message, self.kind, self.flags = message, kind, flags

    def fill(self, seq: int, values: object) -> bytes:
        self.message["header"].update(type=self.kind, flags=self.flags, sequence_number=seq, pid=0)
        self.message.encode()
        return bytes(self.message.data)


NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=15)
ADDRESSES = st.ip_addresses(v=4).map(str)
NETWORKS = st.tuples(ADDRESSES, st.integers(0, 32)).map(lambda v: str(ipaddress.ip_network(f"{v[0]}/{v[1]}", False)))
U32 = st.integers(0, 2**31 - 1)
CALLS: dict[str, tuple[Any, Callable[..., Callable[[netlink.Socket], object]]]] = {
    "index": (NAMES, lambda name: lambda s: s.index(name)),
    "set_link up": (U32, lambda index: lambda s: s.set_link(index, up=True)),
    "set_link master": (st.tuples(U32, U32), lambda v: lambda s: s.set_link(v[0], master=v[1])),
    "set_link alias": (U32, lambda index: lambda s: s.set_link(index, up=True, alias="netns-lab:t")),
    "bridge": (NAMES, lambda name: lambda s: s.add_bridge(name)),
    "veth": (st.tuples(NAMES, NAMES, U32), lambda v: lambda s: s.add_veth(*v)),
    "address": (st.tuples(U32, ADDRESSES, st.integers(0, 32)), lambda v: lambda s: s.add_address(*v)),
    "delete address": (st.tuples(U32, ADDRESSES, st.integers(0, 32)), lambda v: lambda s: s.delete_address(*v)),
    "route": (
        st.tuples(NETWORKS, ADDRESSES, st.booleans()),
        lambda v: lambda s: s.add_route(v[0], v[1], replace=v[2]),
    ),
}


def sent_by(call: Callable[[netlink.Socket], object], seq: int) -> bytes:
    sock, kernel = socket_with(last_seq=seq - 1)
    with pytest.raises(OSError, match="no more replies"):
        call(sock)
    return kernel.sent[0]


def same_shape(value: Any) -> Any:
    """Another value of the shape of ``value``: numbers and addresses changed, strings of the same lengths."""
    if isinstance(value, tuple):
        return tuple(same_shape(v) for v in value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value ^ 1
    try:
        network = ipaddress.ip_network(value)
    except ValueError:
        return "x" * len(value)
    other = ipaddress.ip_address(int(network.network_address) ^ 0xFFFFFFFF)
    return str(ipaddress.ip_network(f"{other}/{network.prefixlen}", False)) if "/" in value else str(other)


@pytest.mark.parametrize("name", CALLS)
def test_a_compiled_request_filled_with_new_values_is_what_pyroute2_encodes_for_them(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy, call = CALLS[name]

    @settings(max_examples=60, deadline=None)
    @given(strategy, st.integers(1, 2**32 - 1))
    def check(value: Any, seq: int) -> None:
        netlink._templates.clear()
        sent_by(call(same_shape(value)), 1)  # compiles the shape with other values
        filled = sent_by(call(value), seq)
        with monkeypatch.context() as patched:
            patched.setattr(netlink, "_Compiled", Encoded)
            netlink._templates.clear()
            assert filled == sent_by(call(value), seq)
        netlink._templates.clear()

    check()


def link_message(name: str | None = "lo", **attrs: Any) -> ifinfmsg:
    message = ifinfmsg()
    message["index"] = 4
    message["attrs"] = ([("IFLA_IFNAME", name)] if name else []) + list(attrs.items())
    return message


def route_message(**attrs: Any) -> rtmsg:
    message = rtmsg()
    message["family"], message["table"] = 2, 254
    message["attrs"] = list(attrs.items())
    return message


VALID = encoded(link_message(IFLA_OPERSTATE="UP"), RTM_NEWLINK, 1, NLM_F_MULTI)
CASES = {
    "short header": (VALID[:10], "netlink header at offset 0: 10 bytes left, a header is 16"),
    "message past the datagram": (VALID[:30], f"netlink message at offset 0: length {len(VALID)}, 30 bytes left"),
    "message shorter than its header": (
        bytes([8, 0, 0, 0]) + VALID[4:16],
        "netlink message at offset 0: length 8, less than its 16-byte header",
    ),
    "done without its code": (
        encoded(nlmsg(), NLMSG_DONE, 1, NLM_F_MULTI),
        "NLMSG_DONE: 0 bytes of payload, its error code needs 4",
    ),
    "short ifinfomsg": (
        bytes([24, 0]) + VALID[2:24] + ack(1, kind=NLMSG_DONE),
        "RTM_NEWLINK: 8 bytes, its header needs 16",
    ),
    "attribute past the message": (
        VALID[:32] + bytes([40]) + VALID[33:] + ack(1, kind=NLMSG_DONE),  # IFLA_IFNAME says 40 bytes
        "RTM_NEWLINK: attribute 3 at offset 32: length 40 does not fit the 16 bytes left",
    ),
    "short attribute header": (
        bytes([len(VALID) + 2]) + VALID[1:] + bytes(4) + ack(1, kind=NLMSG_DONE),  # 2 bytes after the last one
        f"RTM_NEWLINK: attribute at offset {len(VALID)}: 2 bytes left, a header is 4",
    ),
    "link without a name": (
        encoded(link_message(None, IFLA_OPERSTATE="UP"), RTM_NEWLINK, 1, NLM_F_MULTI) + ack(1, kind=NLMSG_DONE),
        "RTM_NEWLINK: link 4 has no IFLA_IFNAME",
    ),
}


@pytest.mark.parametrize(("datagram", "message"), CASES.values(), ids=CASES.keys())
def test_a_truncated_or_malformed_link_dump_says_where_and_why(datagram: bytes, message: str) -> None:
    sock, _ = socket_with(datagram)
    with pytest.raises(DecodeError) as caught:
        sock.links()
    assert str(caught.value) == message


def test_an_operational_state_newer_than_pyroute2_is_its_number() -> None:
    newer = VALID[:44] + bytes([9]) + VALID[45:]  # IFLA_OPERSTATE's value: 9, past IF_OPER_UP (6)
    sock, _ = socket_with(newer + ack(1, kind=NLMSG_DONE))
    assert sock.links() == [netlink.Link(4, "lo", 0, "9", None)]
    sock, _ = socket_with(VALID + ack(1, kind=NLMSG_DONE))
    assert sock.links() == [netlink.Link(4, "lo", 0, "UP", None)]


def test_an_attribute_that_does_not_fit_names_the_attribute_and_its_size() -> None:
    good = encoded(route_message(RTA_OIF=2), RTM_NEWROUTE, 1, NLM_F_MULTI)
    short_oif = good[:-8] + bytes([6, 0]) + good[-6:]  # RTA_OIF says 6 bytes: 2 of value (and 2 of padding)
    sock, _ = socket_with(short_oif + ack(1, kind=NLMSG_DONE))
    with pytest.raises(DecodeError, match=r"^RTM_NEWROUTE/RTA_OIF: 2 bytes, expected 4$"):
        sock.routes()
    past = good[:-8] + bytes([40, 0]) + good[-6:]  # RTA_OIF claims 40 bytes, 8 are left in the message
    sock, _ = socket_with(past + ack(1, kind=NLMSG_DONE))
    with pytest.raises(
        DecodeError, match=r"^RTM_NEWROUTE: attribute 4 at offset 28: length 40 does not fit the 8 bytes left$"
    ):
        sock.routes()


def test_importing_netlink_skips_pyroute2s_package_init_until_a_name_of_it_is_asked_for() -> None:
    """In a fresh interpreter: the lab's module loads only the message classes (not pyroute2's NDB, IPDB, ...), and
    ``from pyroute2 import IPRoute`` afterwards still gets the whole package."""
    import subprocess
    import sys

    script = (
        "import sys, netns.kernel.netlink\n"
        "print('pyroute2.ndb' in sys.modules, 'pyroute2.iproute' in sys.modules)\n"
        "from pyroute2 import IPRoute, config\n"
        "import pyroute2\n"
        "print('pyroute2.ndb' in sys.modules, IPRoute.__name__, pyroute2.__version__ != 'unknown')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["False False", "True IPRoute True"]
