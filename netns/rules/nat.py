"""Router NAT -> kernel rules: RFC 4787 behaviours (netns/topology/behaviour.py) built by the kernel's own netfilter.

Which mechanism builds which behaviour (``mechanism``):

* ``masquerade`` -- endpoint-independent mapping, address-and-port-dependent filtering, no hairpinning (the
  port-restricted cone): iptables MASQUERADE on the WAN interface. Linux keeps the source port when it can
  and reuses it towards every remote, and only conntrack replies come back in.
* ``masquerade-random-fully`` -- address-and-port-dependent mapping (symmetric) with random ports:
  MASQUERADE --random-fully picks a fresh random public port for each new flow (each remote address and port).
* ``nftables`` -- endpoint-independent mapping with endpoint-independent or address-dependent filtering,
  with hairpinning, or with sequential or random port allocation: an nftables table that records each mapping
  in dynamic maps and DNATs inbound packets through them (netns/rules/nft.py); iptables then only carries the
  firewall. Also address-and-port-dependent mapping with sequential ports (a counter per new flow).
* ``routing`` -- ``type: none``: no translation, only the firewall.

Firewall profiles (iptables filter table, replaced whole by one iptables-restore run):

* ``home`` -- FORWARD policy DROP except LAN->WAN, LAN->LAN, ESTABLISHED,RELATED WAN->LAN and (when the
  filtering lets unsolicited packets in) WAN->LAN packets the NAT DNATed; on the WAN, INPUT accepts
  ESTABLISHED,RELATED and drops everything else. An unsolicited packet to the WAN address is dropped in the
  filter table, before conntrack confirms it, so it leaves no conntrack entry.
* ``none`` -- everything accepted (the bare router): an unsolicited inbound packet to the WAN address that
  no mapping takes in ends in the router's own stack and leaves a conntrack entry.
* ``udp-blocked`` -- ``home``, except that from a LAN only TCP to ports 80 and 443 and UDP to port 53 leave
  (``behaviour.UDP_BLOCKED_ALLOWS``): every other packet towards the WAN is dropped, as corporate and hotel
  networks do.

With ``port-mapping``, the firewall also lets in what miniupnpd's DNAT rules map (netns/rules/portmap.py).

IPv6 (``ruleset6``, ip6tables-restore, for a router with IPv6 on its WAN): ``routed`` translates nothing,
``nat66`` is MASQUERADE on the WAN, ``nptv6`` is NETMAP both ways between the LAN's prefix and ``nptv6-prefix``:
the prefix is swapped and the interface identifier kept, a 1:1 stateless-looking mapping (RFC 6296 §3 also
adjusts one word of the address to keep checksums neutral; the kernel's NETMAP rewrites the checksum instead,
which no peer can tell apart). The firewall profiles are the same with ICMPv6 neighbour discovery let in on the
WAN; ``home`` is then RFC 6092's stateful filter (§3.2: only what answers something sent comes in).
"""

from __future__ import annotations

import ipaddress

from netns.errors import LabError
from netns.topology import behaviour
from netns.topology.behaviour import Nat
from netns.topology.model import Node

_TABLE_NAT = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
_NEIGHBOUR_DISCOVERY = ("neighbour-solicitation", "neighbour-advertisement")


def mechanism(nat: Nat) -> str:
    """The kernel mechanism that builds ``nat`` (see the module docstring)."""
    if nat.type == "none":
        return "routing"
    allocation = behaviour.allocation(nat)
    if nat.mapping == behaviour.APDM:
        return "masquerade-random-fully" if allocation == behaviour.RANDOM else "nftables"
    if nat.filtering == behaviour.APDF and not nat.hairpinning and allocation == behaviour.PRESERVE:
        return "masquerade"
    return "nftables"


def uses_nftables(nat: Nat) -> bool:
    return mechanism(nat) == "nftables"


def _nat_table(nat: Nat) -> list[str]:
    how = mechanism(nat)
    if how == "masquerade":
        rule = f"-A POSTROUTING -o {nat.wan} -j MASQUERADE"
    elif how == "masquerade-random-fully":
        rule = f"-A POSTROUTING -o {nat.wan} -j MASQUERADE --random-fully"
    else:
        return []  # no translation, or nftables does it
    return [*_TABLE_NAT, ":POSTROUTING ACCEPT [0:0]", rule, "COMMIT"]


def _home(nat: Nat, lans: list[str], ipv6: bool = False) -> list[str]:
    wan = nat.wan
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines.append(f"-A INPUT -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
    if ipv6:  # without neighbour discovery the WAN's next hop could not find the router's address
        lines += [f"-A INPUT -i {wan} -p ipv6-icmp --icmpv6-type {kind} -j ACCEPT" for kind in _NEIGHBOUR_DISCOVERY]
    lines.append(f"-A INPUT -i {wan} -j DROP")
    if nat.firewall == "udp-blocked":
        leave = [f"-p {proto} --dport {port} " for proto, port in behaviour.UDP_BLOCKED_ALLOWS]
    else:
        leave = [""]
    dnat = nat.type != "none" and (nat.filtering != behaviour.APDF or nat.port_mapping)
    for lan in lans:
        # Hosts on one LAN talk freely (also hairpinned): with br_netfilter, bridged frames cross FORWARD too.
        lines.append(f"-A FORWARD -i {lan} -o {lan} -j ACCEPT")
        lines += [f"-A FORWARD -i {lan} -o {wan} {match}-j ACCEPT" for match in leave]
        lines.append(f"-A FORWARD -i {wan} -o {lan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
        if dnat and not ipv6:
            # What the nftables filtering let through a mapping (RFC 4787 §5), or a port mapping miniupnpd made,
            # was DNATed in prerouting.
            lines.append(f"-A FORWARD -i {wan} -o {lan} -m conntrack --ctstate DNAT -j ACCEPT")
    return [*lines, "COMMIT"]


def _none(nat: Nat, lans: list[str], ipv6: bool = False) -> list[str]:
    return ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT"]


def lans_of(node: Node) -> list[str]:
    """The router's LAN networks: every interface but the WAN."""
    if node.nat is None:
        raise LabError(f"node {node.name!r} has no NAT; only routers get NAT rules")
    return [i.network for i in node.interfaces if i.network != node.nat.wan]


def ruleset(node: Node) -> str:
    """The iptables-restore input for a router ``node`` (every table it touches, replaced whole)."""
    lans = lans_of(node)
    assert node.nat is not None
    firewall = _none if node.nat.firewall == "none" else _home
    return "\n".join(_nat_table(node.nat) + firewall(node.nat, lans)) + "\n"


def ruleset6(node: Node, lan_prefixes: dict[str, ipaddress.IPv6Network]) -> str | None:
    """The ip6tables-restore input for a router ``node`` whose WAN has IPv6 (None if it has none): the translation
    its ``ipv6`` names and the firewall. ``lan_prefixes`` maps each LAN with IPv6 to its subnet6."""
    nat = node.nat
    if nat is None or not any(i.addresses6 for i in node.interfaces if i.network == nat.wan):
        return None
    lans = lans_of(node)
    lines = [*_TABLE_NAT, ":POSTROUTING ACCEPT [0:0]"]
    if nat.ipv6 == behaviour.NAT66:
        lines.append(f"-A POSTROUTING -o {nat.wan} -j MASQUERADE")
    elif nat.ipv6 == behaviour.NPTV6 and nat.nptv6_prefix is not None:
        inside = next(iter(lan_prefixes.values()))
        lines.append(f"-A POSTROUTING -o {nat.wan} -s {inside} -j NETMAP --to {nat.nptv6_prefix}")
        lines.append(f"-A PREROUTING -i {nat.wan} -d {nat.nptv6_prefix} -j NETMAP --to {inside}")
    lines.append("COMMIT")
    firewall = _none if nat.firewall == "none" else _home
    return "\n".join(lines + firewall(nat, lans, ipv6=True)) + "\n"


def describe(nat: Nat) -> str:
    """A short name for the kernel mechanism, shown by ``status`` and the ``up`` summary."""
    extra = (f" + {nat.ipv6}" if nat.ipv6 != behaviour.ROUTED else "") + (" + miniupnpd" if nat.port_mapping else "")
    return f"{mechanism(nat)}/{nat.firewall} on {nat.wan}{extra}"
