"""Endpoint-independent mapping with open filtering or hairpinning: one nftables table per router.

RFC 4787 §4.1 (REQ-1) endpoint-independent mapping, §5 filtering and §6 hairpinning, for UDP, built in the
kernel (nothing runs in user space). The table ``ip netns_lab`` in the router's namespace holds:

* map ``mappings``  internal address . port -> public port (what the NAT has bound; REQ-1),
* map ``owners``    public port -> internal address . port (the same binding read backwards, for DNAT),
* set ``bindings``  internal address . port . public port (to tell an owner from a stranger),
* set ``contacted`` public port . remote address (address-dependent filtering only, REQ-8).

All four are dynamic with a timeout (``udp-timeout``, else the kernel's 120 s UDP stream timeout) that
outbound packets refresh (REQ-6). They are filled in a filter chain at postrouting priority srcnat + 10,
after the NAT chain (srcnat) has chosen the public port: the packet then carries the public port and
``ct original`` still names the internal endpoint.

Port choice, in the srcnat chain (UDP from a LAN leaving through the WAN):
1. an internal endpoint that has a mapping keeps it, towards every remote (``snat to WAN : map @mappings``);
2. a source port that is already some other endpoint's public port gets a random free one
   (``snat ... random``), so two LAN hosts never share a public port;
3. anything else gets the port ``port-allocation`` says (RFC 4787 §4.2.1): ``preserve`` SNATs to the WAN
   address keeping its port when the kernel can, ``random`` takes any free port at random (``fully-random``),
   ``sequential`` the next number of a counter (``numgen inc``) from 1024 on, 4,096 of them.
A random pick in (2) can still hit a public port another endpoint owns (the kernel only checks 5-tuples,
not our maps): the recording chain drops that first packet before conntrack confirms it, so the binding is
never made and the application's retransmission gets a fresh pick. We chose this over fixed per-host port
ranges because it keeps port preservation for the common case and needs no knowledge of the LAN hosts.

Inbound (prerouting, dstnat): from the WAN, a packet to a public port in ``owners`` is DNATed to its owner,
for endpoint-independent filtering always, for address-dependent filtering only if the owner has sent to
the packet's source address (``contacted``). Address-and-port-dependent filtering needs no rule: conntrack
replies are the only way in. Hairpinning (REQ-9): from a LAN, a packet to the WAN address and a public port
in ``owners`` is DNATed to the owner and SNATed to the sender's own mapping, so the receiver sees the
sender's public endpoint. Hairpinned packets are not filtered (a caveat: the LAN is trusted).

TCP and other protocols get plain SNAT to the WAN address (the kernel's port-preserving mapping, replies
only).

An address-and-port-dependent mapping with sequential ports (``sequential_ruleset``) needs none of this: each new
flow (each remote address and port) is SNATed to the next port of the counter, and conntrack lets only its
replies back (address-and-port-dependent filtering).
"""

from __future__ import annotations

from netns.errors import LabError
from netns.rules import nat
from netns.topology import behaviour
from netns.topology.model import Node

TABLE = "netns_lab"
DEFAULT_TIMEOUT = 120  # nf_conntrack_udp_timeout_stream's default
FIRST_PORT = 1024  # where sequential allocation starts; random allocation picks from here to 65535 too
SEQUENTIAL_PORTS = 4096  # the counter wraps after this many mappings, as a small device's does
# The counter's value goes through a map to the port: a port taken straight from ``numgen`` would reach the NAT in
# host byte order (nft 1.0.6 does not convert it; port 1024 came out as 4), a map's values are typed ports.
SEQUENTIAL = (
    f"numgen inc mod {SEQUENTIAL_PORTS} map {{ "
    + ", ".join(f"{n} : {FIRST_PORT + n}" for n in range(SEQUENTIAL_PORTS))
    + " }"
)


def wan_address(node: Node) -> str:
    """The address LAN sources are translated to: the first address of the WAN interface."""
    assert node.nat is not None
    iface = next(i for i in node.interfaces if i.network == node.nat.wan)
    if not iface.addresses:
        raise LabError(f"router {node.name!r} has no address on its WAN {node.nat.wan}")
    return str(iface.addresses[0])


def ruleset(node: Node) -> str:
    """The ``nft -f`` input for a router whose NAT is built with nftables (``nat.uses_nftables``)."""
    if node.nat is None or not nat.uses_nftables(node.nat):
        raise LabError(f"node {node.name!r} has no NAT built with nftables")
    n = node.nat
    wan, public = f'"{n.wan}"', wan_address(node)
    lans = "{ " + ", ".join(f'"{lan}"' for lan in nat.lans_of(node)) + " }"
    allocation = behaviour.allocation(n)
    if n.mapping == behaviour.APDM:
        return sequential_ruleset(lans, wan, public)
    timeout = f"timeout {n.udp_timeout or DEFAULT_TIMEOUT}s"
    dynamic = f"flags dynamic,timeout; {timeout};"
    udp = "meta l4proto udp"
    lines = [
        f"table ip {TABLE} {{",
        f"\tmap mappings {{ type ipv4_addr . inet_service : inet_service; {dynamic} }}",
        f"\tmap owners {{ type inet_service : ipv4_addr . inet_service; {dynamic} }}",
        f"\tset bindings {{ type ipv4_addr . inet_service . inet_service; {dynamic} }}",
    ]
    if n.filtering == behaviour.ADF:
        lines.append(f"\tset contacted {{ type inet_service . ipv4_addr; {dynamic} }}")
    dnat = "dnat ip addr . port to udp dport map @owners"
    lines += ["\tchain prerouting {", "\t\ttype nat hook prerouting priority dstnat; policy accept;"]
    if n.hairpinning:
        lines.append(f"\t\tiifname {lans} ip daddr {public} udp dport @owners {dnat}")
    if n.filtering == behaviour.EIF:
        lines.append(f"\t\tiifname {wan} udp dport @owners {dnat}")
    elif n.filtering == behaviour.ADF:
        lines.append(f"\t\tiifname {wan} udp dport . ip saddr @contacted {dnat}")
    lines += ["\t}", "\tchain postrouting {", "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    own = f"snat ip to {public} : ip saddr . udp sport map @mappings"
    if n.hairpinning:
        lines.append(f"\t\tiifname {lans} oifname {lans} ct status dnat {udp} {own}")
        lines.append(f"\t\tiifname {lans} oifname {lans} ct status dnat snat ip to {public}")
    lines.append(f"\t\tiifname {lans} oifname {wan} {udp} {own}")
    if allocation == behaviour.PRESERVE:
        lines.append(
            f"\t\tiifname {lans} oifname {wan} udp sport @owners snat ip to {public}:{FIRST_PORT}-65535 random"
        )
    elif allocation == behaviour.RANDOM:
        lines.append(f"\t\tiifname {lans} oifname {wan} {udp} snat ip to {public}:{FIRST_PORT}-65535 fully-random")
    else:
        lines.append(f"\t\tiifname {lans} oifname {wan} {udp} snat ip to {public} : {SEQUENTIAL}")
    lines += [
        f"\t\tiifname {lans} oifname {wan} snat ip to {public}",
        "\t}",
        "\tchain record {",
        "\t\ttype filter hook postrouting priority srcnat + 10; policy accept;",
        "\t\tct direction reply accept",
        "\t\tct status & snat == 0 accept",
        f"\t\t{udp} ct original ip saddr . ct original proto-src . udp sport != @bindings udp sport @owners drop",
        f"\t\t{udp} update @mappings {{ ct original ip saddr . ct original proto-src : udp sport }}",
        f"\t\t{udp} update @owners {{ udp sport : ct original ip saddr . ct original proto-src }}",
        f"\t\t{udp} update @bindings {{ ct original ip saddr . ct original proto-src . udp sport }}",
    ]
    if n.filtering == behaviour.ADF:
        lines.append(f"\t\t{udp} update @contacted {{ udp sport . ct original ip daddr }}")
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"


def sequential_ruleset(lans: str, wan: str, public: str) -> str:
    """Address-and-port-dependent mapping with sequential ports: every new UDP flow from ``lans`` out of ``wan``
    gets the next port of the counter on ``public``; other protocols keep their ports where they can."""
    return (
        "\n".join(
            [
                f"table ip {TABLE} {{",
                "\tchain postrouting {",
                "\t\ttype nat hook postrouting priority srcnat; policy accept;",
                f"\t\tiifname {lans} oifname {wan} meta l4proto udp snat ip to {public} : {SEQUENTIAL}",
                f"\t\tiifname {lans} oifname {wan} snat ip to {public}",
                "\t}",
                "}",
            ]
        )
        + "\n"
    )
