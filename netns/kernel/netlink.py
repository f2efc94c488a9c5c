"""rtnetlink through pyroute2's own message classes: the ONLY module of the lab that imports pyroute2.

Every request is a pyroute2 message (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``; a tc request is compiled by
pyroute2's ``IPBatch``, which encodes requests without sending them) encoded by pyroute2 (rtnetlink(7), RFC 3549):
nothing here lays out a netlink header or attribute. A request of a shape already sent (``_Compiled``) is the bytes
pyroute2 encoded for the first one, with its own values (and sequence number) written where pyroute2 put the
first one's: encoding anew costs tens of microseconds, and ``up`` sends tens of thousands of requests for a big
lab. Each request is sent and acknowledged before the next, as a plan step needs. The socket is the lab's own,
one per namespace, opened by a thread inside it (a socket belongs to the namespace it was opened in): pyroute2's
``IPRoute`` (an asyncio event loop and a request filter per call) costs about a millisecond of Python a request.

Replies are decoded as far as the lab reads them (``_Layout``): the fixed header by pyroute2's class, and of the
attributes only those asked for, each by the pyroute2 class of its row in the message's table; pyroute2 would
make an object for every attribute (a link has about 40), which made ``status`` several times slower. Lengths
are checked before anything is decoded: a message or an attribute that does not fit, or a value shorter than
its type, raises DecodeError naming the message, the attribute, the offset and the sizes.

Imported on first use (netns/kernel/links.py), and only the parts of pyroute2 it uses (``_bare_package``): its
package ``__init__`` imports all of pyroute2's APIs (IPDB, NDB, conntrack, WireGuard, ...), about 0.1 s of a process,
where the message classes take 0.02 s; ``validate``, ``exec`` and ``down`` pay neither.
Errors: OSError with the kernel's errno for a request the kernel refused;
DecodeError for a reply that does not parse (netns/kernel/boundary.py translates both).
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple


def _bare_package() -> None:
    """Register pyroute2 as a package whose ``__init__`` has not run yet, so that importing its submodules runs only
    theirs. Its first attribute lookup (``from pyroute2 import IPRoute`` anywhere later) runs ``__init__`` then,
    in that same module object (PEP 562's module ``__getattr__``), so the package is whole for whoever asks."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        raise ImportError("pyroute2 is not installed; pip install -r requirements.txt")
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def whole(name: str) -> Any:
        if name.startswith("__") or importlib.util.find_spec(f"pyroute2.{name}") is not None:
            # A submodule (``from pyroute2 import config``): not found here, so the import system imports it.
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")
        delattr(package, "__getattr__")  # once: __init__ defines what it defines
        loader.exec_module(package)
        return getattr(package, name)

    setattr(package, "__getattr__", whole)  # noqa: B010  (PEP 562: a module-level __getattr__)
    sys.modules["pyroute2"] = package


_bare_package()

from pyroute2.netlink import (  # noqa: E402
    NLA_F_NESTED,
    NLA_F_NET_BYTEORDER,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    nla_base,
    nlmsg,
    nlmsg_atoms,
    nlmsgerr,
)
from pyroute2.netlink.rtnl import (  # noqa: E402
    RTM_DELADDR,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    rt_proto,
    rt_scope,
    rt_type,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

from netns.kernel.boundary import DecodeError  # noqa: E402

RT_TABLE_MAIN, RT_TABLE_COMPAT = 254, 252
IFA_F_NODAD = 0x02  # linux/if_addr.h
RECV_SIZE = 65536  # more than the kernel puts in one datagram of a dump (at most 32 KiB)
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    flags: int  # IFF_*
    operstate: str  # RFC 2863 as ``ip link`` names it (pyroute2's), or the number if this kernel has a newer one
    qdisc: str | None  # the kind of the root qdisc ("noqueue" when there is none)


@dataclass(frozen=True, slots=True)
class Address:
    index: int
    address: str
    prefixlen: int


@dataclass(frozen=True, slots=True)
class Route:
    dst: str | None  # None for a default route
    dst_len: int
    gateway: str | None
    oif: int | None
    table: int


Values = dict[str | tuple[str, ...], Any]  # a request's values: by field name, or by attribute path


class _Compiled:
    """A request of one shape, encoded once by pyroute2. A later request of the same shape (the same attributes,
    strings of the same lengths) is a copy of those bytes with its own values written where pyroute2 put the first
    one's: the places come from pyroute2's layout (``header`` and ``fields`` of the message classes, the offsets of
    the attributes it encoded), the bytes of each value from the class pyroute2 encodes it with. It costs a few
    microseconds where encoding the message anew costs tens (tests/unit/netns/kernel/test_netlink.py holds the two
    to the same bytes)."""

    def __init__(self, message: Any, kind: int, flags: int) -> None:
        message["header"].update(type=kind, flags=flags, sequence_number=0, pid=0)
        message.encode()
        self.data = bytes(message.data)
        self._message = message
        self._places: dict[str | tuple[str, ...], tuple[int, Any]] = {}

    def fill(self, seq: int, values: Values) -> bytearray:
        """The request with sequence number ``seq`` and ``values`` (by field name, or attribute name path)."""
        data = bytearray(self.data)
        for where, value in (("sequence_number", seq), *values.items()):
            offset, how = self._places.get(where) or self._place(where)
            if isinstance(how, str):
                struct.pack_into(how, data, offset, value)
            else:
                encoded = how(value)
                data[offset : offset + len(encoded)] = encoded
        return data

    def _place(self, where: str | tuple[str, ...]) -> tuple[int, Any]:
        place = _field(self._message, where) if isinstance(where, str) else _attribute_value(self._message, where)
        self._places[where] = place
        return place


def _field(message: Any, name: str) -> tuple[int, str]:
    """(offset, struct format) of header or fixed field ``name`` in ``message`` as pyroute2 lays it out: field after
    field, each its format's size (``nlmsg_encoder_generic.ft_encode``)."""
    offset = 0
    for field, fmt in (*message.header, *message.fields):
        if field == name:
            return offset, fmt
        offset += struct.calcsize(fmt)
    raise KeyError(name)


def _attribute_value(message: Any, path: tuple[str, ...]) -> tuple[int, Any]:
    """(offset, how to encode) of the value of the attribute at ``path`` (names, outer first) in an encoded
    ``message``: right after its 4-byte header, encoded as its pyroute2 class encodes it: an address as its
    family's bytes (``ipaddr``, ``target``), a string with a NUL (``asciiz``), anything else by its fields."""
    nla = message
    for name in path:
        nla = next(slot.cell[1] for slot in nla["attrs"] if slot.name == name)
    size = nla.length - 4
    if isinstance(nla, nlmsg_atoms.target):
        family = nla.get_family()
        return nla.offset + 4, _sized(size, lambda value: socket.inet_pton(family, value))
    if isinstance(nla, nlmsg_atoms.ipaddr):
        return nla.offset + 4, _sized(size, lambda value: socket.inet_pton(_family(value), value))
    if isinstance(nla, nlmsg_atoms.asciiz):
        return nla.offset + 4, _sized(size, lambda value: value.encode() + b"\0")
    return nla.offset + 4, "".join(fmt for _, fmt in nla.fields)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET  # as pyroute2's ipaddr tells them apart


def _sized(size: int, encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """``encode``, checked to give the ``size`` bytes the compiled request has room for."""

    def checked(value: Any) -> bytes:
        encoded = encode(value)
        if len(encoded) != size:
            raise ValueError(f"{value!r} takes {len(encoded)} bytes, the compiled request has {size}")
        return encoded

    return checked


_HEADER = struct.calcsize("".join(fmt for _, fmt in nlmsg.header))  # nlmsghdr, as pyroute2 lays it out
_NLA_HEADER = struct.Struct("".join(fmt for _, fmt in nla_base.header))  # an attribute's length and type
_NLA_TYPE = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF


@dataclass(frozen=True, slots=True)
class _Row:
    """An attribute the lab reads: its name and pyroute2 class, and the size its value must have: exactly 4 bytes
    for an address of an AF_INET message (``address``), at least ``need`` for a fixed-size value."""

    name: str
    cls: type[Any]
    address: bool
    need: int | None


@dataclass(frozen=True, slots=True)
class _Layout:
    """How the lab decodes one kind of message: ``head``, pyroute2's class cut to its header and fixed fields
    (``size`` bytes), and the attributes it reads by type (rows of the class's own table)."""

    name: str
    head: type[Any]
    size: int
    rows: dict[int, _Row]


def _layout(name: str, message: type[Any], *attributes: str) -> _Layout:
    """The layout of ``message`` (a pyroute2 class) that decodes ``attributes`` (names in its ``nla_map``)."""
    head = type(f"{message.__name__}_head", (nlmsg,), {"fields": message.fields, "__slots__": ()})
    rows = {}
    for number, row in enumerate(message.nla_map):
        kind, attribute, how = (number, *row[:2]) if isinstance(row[0], str) else row[:3]
        if attribute in attributes:
            cls = getattr(message, how)
            formats = [fmt for _, fmt in getattr(cls, "fields", ()) if isinstance(fmt, str)]
            fixed = bool(formats) and not any(fmt[-1] in "sz" for fmt in formats)
            address = issubclass(cls, nlmsg_atoms.target | nlmsg_atoms.ipaddr)
            rows[kind] = _Row(attribute, cls, address, struct.calcsize("".join(formats)) if fixed else None)
    missing = set(attributes) - {row.name for row in rows.values()}
    if missing:
        raise KeyError(f"{message.__name__} has no attribute {', '.join(sorted(missing))}")
    return _Layout(name, head, _HEADER + struct.calcsize("".join(fmt for _, fmt in message.fields)), rows)


_LINK = _layout("RTM_NEWLINK", ifinfmsg, "IFLA_IFNAME", "IFLA_OPERSTATE", "IFLA_QDISC")
_LINK_INDEX = _layout("RTM_NEWLINK", ifinfmsg)
_LINK_ALIAS = _layout("RTM_NEWLINK", ifinfmsg, "IFLA_IFALIAS")
_ADDRESS = _layout("RTM_NEWADDR", ifaddrmsg, "IFA_ADDRESS")
_ROUTE = _layout("RTM_NEWROUTE", rtmsg, "RTA_DST", "RTA_GATEWAY", "RTA_OIF", "RTA_TABLE")
_ERROR = {kind: _layout(name, nlmsgerr) for kind, name in ((NLMSG_ERROR, "NLMSG_ERROR"), (NLMSG_DONE, "NLMSG_DONE"))}
_ERROR_HEAD, _ERROR_SIZE = _ERROR[NLMSG_ERROR].head, _ERROR[NLMSG_ERROR].size  # nlmsghdr and nlmsgerr's error


class _Frame(NamedTuple):
    """One message of a datagram: where it is, its header (and fixed fields, where it was decoded with a layout's
    head), and the errno it carries if it is an error or a dump's end."""

    kind: int
    seq: int
    offset: int
    length: int
    head: Any
    error: int | None  # from NLMSG_ERROR or NLMSG_DONE (positive, 0 for none); None for other kinds


def _frames(data: bytes, layout: _Layout | None = None) -> Iterator[_Frame]:
    """The netlink messages of one datagram, each checked to fit. Each is decoded once by pyroute2: with the
    head of ``layout`` (header and fixed fields of the messages expected) where it has room for it, else the
    header with the error code after it (nlmsgerr cut to its fixed field), or the header alone."""
    offset = 0
    while offset < len(data):
        left = len(data) - offset
        if left < _HEADER:
            raise DecodeError(f"netlink header at offset {offset}: {left} bytes left, a header is {_HEADER}")
        if layout is not None and left >= layout.size:
            head = layout.head(data, offset=offset)
        else:
            head = (_ERROR_HEAD if left >= _ERROR_SIZE else nlmsg)(data, offset=offset)
        head.decode()
        header = head["header"]
        kind, length = header["type"], header["length"]
        if length < _HEADER:
            raise DecodeError(
                f"netlink message at offset {offset}: length {length}, less than its {_HEADER}-byte header"
            )
        if length > left:
            raise DecodeError(f"netlink message at offset {offset}: length {length}, {left} bytes left")
        error = None
        if kind in _ERROR:
            if length < _ERROR_SIZE:
                got, need = length - _HEADER, _ERROR_SIZE - _HEADER
                raise DecodeError(f"{_ERROR[kind].name}: {got} bytes of payload, its error code needs {need}")
            if not isinstance(head, _ERROR_HEAD):
                head = _ERROR_HEAD(data, offset=offset)
                head.decode()
            error = -int(head["error"])
        yield _Frame(kind, header["sequence_number"], offset, length, head, error)
        offset += (length + 3) & ~3


def _decode(
    layout: _Layout, data: bytes, frame: _Frame, wanted: Callable[[Any], bool] | None = None
) -> tuple[Any, dict[str, Any]] | None:
    """Message ``frame`` of ``data`` (read by ``_frames`` with ``layout``): its header and fixed fields, and the
    values of the layout's attributes it carries, by name; None if ``wanted`` says from its header that it is
    not (its attributes stay undecoded). Every length is checked before it is used."""
    offset, length, head = frame.offset, frame.length, frame.head
    if length < layout.size or not isinstance(head, layout.head):
        raise DecodeError(f"{layout.name}: {length - _HEADER} bytes, its header needs {layout.size - _HEADER}")
    if wanted is not None and not wanted(head):
        return None
    values = {}
    at = layout.size
    while at < length:
        left = length - at
        if left < _NLA_HEADER.size:
            raise DecodeError(f"{layout.name}: attribute at offset {at}: {left} bytes left, a header is 4")
        size, kind = _NLA_HEADER.unpack_from(data, offset + at)
        if size < _NLA_HEADER.size or size > left:
            raise DecodeError(
                f"{layout.name}: attribute {kind} at offset {at}: length {size} does not fit the {left} bytes left"
            )
        row = layout.rows.get(kind & _NLA_TYPE)
        if row is not None:
            values[row.name] = _value(row, head, data, offset + at, size, f"{layout.name}/{row.name}")
        at += (size + 3) & ~3
    return head, values


def _value(row: _Row, head: Any, data: bytes, offset: int, size: int, where: str) -> Any:
    """The value of the attribute at ``offset`` (``size`` bytes with its header), decoded by pyroute2's class."""
    got = size - _NLA_HEADER.size
    if row.address and head["family"] == socket.AF_INET:
        if got != 4:
            raise DecodeError(f"{where}: {got} bytes, expected 4 (an IPv4 address)")
    elif row.need is not None and got < row.need:
        raise DecodeError(f"{where}: {got} bytes, expected {row.need}")
    nla = row.cls(data, offset=offset, length=size, parent=head)
    try:
        nla.decode()
    except KeyError:  # a value this pyroute2 has no name for (an operational state newer than it): its number
        return str(nla["value"])
    return nla.getvalue()


def link(head: Any, values: dict[str, Any]) -> Link:
    """One RTM_NEWLINK message, decoded with ``_LINK``."""
    name = values.get("IFLA_IFNAME")
    if not isinstance(name, str):
        raise DecodeError(f"RTM_NEWLINK: link {head['index']} has no IFLA_IFNAME")
    return Link(head["index"], name, head["flags"], values.get("IFLA_OPERSTATE", "UNKNOWN"), values.get("IFLA_QDISC"))


def address(head: Any, values: dict[str, Any], families: tuple[int, ...] = (socket.AF_INET,)) -> Address | None:
    """One RTM_NEWADDR message, decoded with ``_ADDRESS``; None for one not of ``families``, and for an IPv6
    address that is not global (link-local, host)."""
    if head["family"] not in families:
        return None
    if head["family"] == socket.AF_INET6 and head["scope"] != rt_scope["universe"]:
        return None
    if "IFA_ADDRESS" not in values:
        raise DecodeError(f"RTM_NEWADDR: address on link {head['index']} has no IFA_ADDRESS")
    return Address(head["index"], values["IFA_ADDRESS"], head["prefixlen"])


def route(head: Any, values: dict[str, Any], families: tuple[int, ...] = (socket.AF_INET,)) -> Route | None:
    """One RTM_NEWROUTE message, decoded with ``_ROUTE``; None for one not of ``families``, and for IPv6's own
    link-local and multicast routes."""
    if head["family"] not in families:
        return None
    if head["family"] == socket.AF_INET6 and str(values.get("RTA_DST", "")).startswith(("fe80:", "ff00:")):
        return None
    table = values.get("RTA_TABLE", head["table"])
    return Route(values.get("RTA_DST"), head["dst_len"], values.get("RTA_GATEWAY"), values.get("RTA_OIF"), table)


_templates: dict[tuple[Any, ...], _Compiled] = {}  # by shape, for every socket of the process
_PEER = ("IFLA_LINKINFO", "IFLA_INFO_DATA", "VETH_INFO_PEER")  # where a veth's peer is described


def _template(shape: tuple[Any, ...], build: Callable[[], tuple[Any, int, int]]) -> _Compiled:
    """The compiled request of ``shape``; ``build`` gives its first (message, type, flags) to compile."""
    compiled = _templates.get(shape)
    if compiled is None:
        compiled = _templates[shape] = _Compiled(*build())
    return compiled


class Socket:
    """An rtnetlink socket of the namespace the calling thread is in when it is made."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def _send(self, request: _Compiled, values: Values | None = None) -> int:
        """Send ``request`` with ``values`` and the next sequence number; return that number."""
        self._seq += 1
        self._sock.send(request.fill(self._seq, values or {}))
        return self._seq

    def _replies(self, seq: int, layout: _Layout | None = None) -> Iterator[tuple[_Frame, bytes]]:
        """Each reply to request ``seq`` (read with ``layout``) with its datagram; replies to others are skipped."""
        while True:
            data = self._sock.recv(RECV_SIZE)
            for frame in _frames(data, layout):
                if frame.seq == seq:
                    yield frame, data

    def _acknowledged(self, seq: int) -> None:
        """Wait for the acknowledgement of request ``seq``; an error in it raises OSError."""
        for frame, _ in self._replies(seq):
            if frame.kind == NLMSG_ERROR:
                if frame.error:
                    raise OSError(frame.error, os.strerror(frame.error))
                return

    def _answer(self, seq: int, layout: _Layout) -> tuple[Any, dict[str, Any]]:
        """The answer to request ``seq`` decoded with ``layout``; an error reply raises OSError."""
        for frame, data in self._replies(seq, layout):
            if frame.error is not None:  # an answer is not acknowledged: this can only be a refusal
                if frame.error:
                    raise OSError(frame.error, os.strerror(frame.error))
                continue
            answer = _decode(layout, data, frame)
            assert answer is not None  # every answer is wanted
            return answer
        raise AssertionError("not reached: _replies ends only by an exception")

    def _dump(
        self, kind: int, reply_kind: int, layout: _Layout, family: int, wanted: Callable[[Any], bool] | None = None
    ) -> list[tuple[Any, dict[str, Any]]]:
        """A dump of ``kind`` (of address ``family``); its ``reply_kind`` messages decoded with ``layout`` (those
        ``wanted`` by their header), up to NLMSG_DONE. An error (NLMSG_ERROR, or an error code in NLMSG_DONE)
        raises OSError."""

        def build() -> tuple[Any, int, int]:
            message = {RTM_GETLINK: ifinfmsg, RTM_GETADDR: ifaddrmsg, RTM_GETROUTE: rtmsg}[kind]()
            message["family"] = family
            return message, kind, NLM_F_REQUEST | NLM_F_DUMP

        found: list[tuple[Any, dict[str, Any]]] = []
        for frame, data in self._replies(self._send(_template(("dump", kind, family), build)), layout):
            if frame.error is not None:
                if frame.error:
                    raise OSError(frame.error, os.strerror(frame.error))
                if frame.kind == NLMSG_DONE:
                    return found
                continue  # an ack (a dump is not acked unless asked; skip it if it comes)
            if frame.kind == reply_kind and (message := _decode(layout, data, frame, wanted)):
                found.append(message)
        raise AssertionError("not reached: _replies ends only by an exception")

    # -- links ----------------------------------------------------------------------------------------------

    def _get_link(self, ifname: str) -> int:
        """Send RTM_GETLINK for interface ``ifname``; return the request's sequence number."""
        name = ifname.encode()

        def build() -> tuple[Any, int, int]:
            return _link_message(attrs=[("IFLA_IFNAME", ifname)]), RTM_GETLINK, NLM_F_REQUEST

        return self._send(_template(("getlink", len(name)), build), {("IFLA_IFNAME",): ifname})

    def index(self, ifname: str) -> int:
        """The index of interface ``ifname`` (ENODEV if there is none)."""
        head, _ = self._answer(self._get_link(ifname), _LINK_INDEX)
        return int(head["index"])

    def alias(self, ifname: str) -> str | None:
        """The ifalias of interface ``ifname`` (ENODEV if there is none), None if it has none."""
        _, values = self._answer(self._get_link(ifname), _LINK_ALIAS)
        alias = values.get("IFLA_IFALIAS")
        return str(alias) if alias else None

    def set_link(self, index: int, up: bool = False, master: int | None = None, alias: str | None = None) -> None:
        """Bring a link up, enslave it to ``master`` and/or set its ifalias."""

        def build() -> tuple[Any, int, int]:
            attrs: list[tuple[str, Any]] = [("IFLA_MASTER", master)] if master is not None else []
            attrs += [("IFLA_IFALIAS", alias)] if alias is not None else []
            flags = IFF_UP if up else 0
            return _link_message(index, flags, flags, attrs), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK

        values: Values = {"index": index}
        if master is not None:
            values["IFLA_MASTER",] = master
        self._acknowledged(self._send(_template(("setlink", up, master is not None, alias), build), values))

    def add_bridge(self, ifname: str) -> None:
        def build() -> tuple[Any, int, int]:
            info = {"attrs": [("IFLA_INFO_KIND", "bridge")]}
            return _link_message(attrs=[("IFLA_IFNAME", ifname), ("IFLA_LINKINFO", info)]), RTM_NEWLINK, _CREATE

        values: Values = {("IFLA_IFNAME",): ifname}
        self._acknowledged(self._send(_template(("bridge", len(ifname.encode())), build), values))

    def add_veth(self, ifname: str, peer_ifname: str, peer_netns_fd: int) -> None:
        """A veth pair: ``ifname`` here, ``peer_ifname`` created directly in the namespace of ``peer_netns_fd``."""

        def build() -> tuple[Any, int, int]:
            peer = {"attrs": [("IFLA_IFNAME", peer_ifname), ("IFLA_NET_NS_FD", peer_netns_fd)]}
            info = {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}
            return _link_message(attrs=[("IFLA_IFNAME", ifname), ("IFLA_LINKINFO", info)]), RTM_NEWLINK, _CREATE

        shape = ("veth", len(ifname.encode()), len(peer_ifname.encode()))
        values: Values = {
            ("IFLA_IFNAME",): ifname,
            (*_PEER, "IFLA_IFNAME"): peer_ifname,
            (*_PEER, "IFLA_NET_NS_FD"): peer_netns_fd,
        }
        self._acknowledged(self._send(_template(shape, build), values))

    def links(self) -> list[Link]:
        """Every link of the socket's namespace, in the kernel's order (by index)."""
        return [link(*m) for m in self._dump(RTM_GETLINK, RTM_NEWLINK, _LINK, socket.AF_UNSPEC)]

    # -- addresses ------------------------------------------------------------------------------------------

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        self._address(RTM_NEWADDR, _CREATE, index, address, prefixlen)

    def delete_address(self, index: int, address: str, prefixlen: int) -> None:
        self._address(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, index, address, prefixlen)

    def _address(self, kind: int, flags: int, index: int, address: str, prefixlen: int) -> None:
        """An IPv4 or IPv6 address (by its text); an IPv6 one without duplicate address detection (IFA_F_NODAD):
        usable at once, where DAD would hold it tentative for a second or more."""
        family = _family(address)

        def build() -> tuple[Any, int, int]:
            message = ifaddrmsg()
            message["family"], message["prefixlen"], message["index"] = family, prefixlen, index
            message["scope"] = rt_scope["universe"]
            if family == socket.AF_INET6:
                message["flags"] = IFA_F_NODAD
                message["attrs"] = [("IFA_ADDRESS", address)]
            else:
                message["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
            return message, kind, flags

        values: Values = {"index": index, "prefixlen": prefixlen, ("IFA_ADDRESS",): address}
        if family == socket.AF_INET:
            values["IFA_LOCAL",] = address
        self._acknowledged(self._send(_template(("address", kind, family), build), values))

    def addresses(self, ipv6: bool = False) -> list[Address]:
        """Every IPv4 address of the socket's namespace (and with ``ipv6`` every global IPv6 one), grouped by
        link, primary first."""
        families = (socket.AF_INET, socket.AF_INET6) if ipv6 else (socket.AF_INET,)
        dumped = self._dump(RTM_GETADDR, RTM_NEWADDR, _ADDRESS, socket.AF_UNSPEC if ipv6 else socket.AF_INET)
        found = (address(*m, families) for m in dumped)
        return [a for a in found if a is not None]

    # -- routes ---------------------------------------------------------------------------------------------

    def add_route(self, dst: str, gateway: str, replace: bool = False) -> None:
        """A static route to ``dst`` (CIDR, IPv4 or IPv6) via ``gateway`` in the main table; with ``replace``, the
        one there is to ``dst`` is replaced (or the route added)."""
        network = ipaddress.ip_network(dst)
        via = str(ipaddress.ip_address(gateway))
        if network.version != ipaddress.ip_address(gateway).version:
            raise ValueError(f"route to {dst} via {gateway}: the gateway is of another IP version")
        family = socket.AF_INET6 if network.version == 6 else socket.AF_INET

        def build() -> tuple[Any, int, int]:
            message = rtmsg()
            message["family"], message["dst_len"], message["table"] = family, network.prefixlen, RT_TABLE_MAIN
            message["proto"], message["scope"] = rt_proto["static"], rt_scope["universe"]
            message["type"] = rt_type["unicast"]
            message["attrs"] = [("RTA_DST", str(network.network_address))] if network.prefixlen else []
            message["attrs"].append(("RTA_GATEWAY", via))
            return message, RTM_NEWROUTE, _REPLACE if replace else _CREATE

        values: Values = {"dst_len": network.prefixlen, ("RTA_GATEWAY",): via}
        if network.prefixlen:
            values["RTA_DST",] = str(network.network_address)
        self._acknowledged(self._send(_template(("route", family, network.prefixlen > 0, replace), build), values))

    def routes(self, table: int = RT_TABLE_MAIN, ipv6: bool = False) -> list[Route]:
        """The IPv4 routes (with ``ipv6`` also the IPv6 ones) of ``table`` (the kernel dumps every table; the rest is
        dropped, undecoded where the header
        names another table: past 255, the header says RT_TABLE_COMPAT and RTA_TABLE has the number)."""

        def in_table(head: Any) -> bool:
            return bool(head["table"] in (table, RT_TABLE_COMPAT))

        families = (socket.AF_INET, socket.AF_INET6) if ipv6 else (socket.AF_INET,)
        family = socket.AF_UNSPEC if ipv6 else socket.AF_INET
        found = (route(*m, families) for m in self._dump(RTM_GETROUTE, RTM_NEWROUTE, _ROUTE, family, in_table))
        return [r for r in found if r is not None and r.table == table]

    # -- traffic control ------------------------------------------------------------------------------------

    def tc(self, command: str, kind: str | None = None, index: int = 0, handle: int = 0, **params: Any) -> None:
        """A tc request (``command`` as pyroute2's ``tc()``: add, replace, del; ``kind`` netem, tbf, ...) compiled
        by pyroute2's IPBatch with its parameters (pyroute2's sched plugins), sent here and acknowledged."""
        from pyroute2.iproute.linux import IPBatch  # here: only impairments need it (0.04 s more to import)

        batch = IPBatch()
        try:
            if kind is None:
                batch.tc(command, index=index, **params)
            else:
                batch.tc(command, kind, index, handle, **params)
            data = bytes(batch.batch)
        finally:
            batch.close()
        seq = next(_frames(data)).seq
        self._sock.send(data)
        self._acknowledged(seq)


def _link_message(index: int = 0, flags: int = 0, change: int = 0, attrs: list[tuple[str, Any]] | None = None) -> Any:
    message = ifinfmsg()
    message["index"], message["flags"], message["change"] = index, flags, change
    message["attrs"] = attrs or []
    return message


def probe_netem() -> int:
    """Whether this kernel has the netem qdisc, found by trying it on a veth in a namespace of this process's own
    (run it in a process of its own: the namespace vanishes with it). 0 if it has, 3 if not, 1 on another refusal;
    OSError if it cannot make the namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET (os.unshare is 3.12+)
        raise OSError(ctypes.get_errno(), f"unshare: {os.strerror(ctypes.get_errno())}")
    sock = Socket()
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sock.add_veth("probe0", "probe1", own)
        sock.tc("add", "netem", sock.index("probe0"), delay=1000)
    except OSError as exc:
        return 3 if exc.errno in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL) else 1
    finally:
        os.close(own)
        sock.close()
    return 0
