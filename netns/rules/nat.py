"""Router NAT -> kernel rules: RFC 4787 behaviours (netns/topology/behaviour.py) built by the kernel's own netfilter.

Which mechanism builds which behaviour (``mechanism``):

* ``masquerade`` -- endpoint-independent mapping, address-and-port-dependent filtering, no hairpinning (the
  port-restricted cone): iptables MASQUERADE on the WAN interface. Linux keeps the source port when it can
  and reuses it towards every remote, and only conntrack replies come back in.
* ``masquerade-random-fully`` -- address-and-port-dependent mapping (symmetric): MASQUERADE --random-fully
  picks a fresh random public port for each new flow (each remote address and port).
* ``nftables`` -- endpoint-independent mapping with endpoint-independent or address-dependent filtering,
  or with hairpinning: an nftables table that records each mapping in dynamic maps and DNATs inbound
  packets through them (netns/rules/nft.py); iptables then only carries the firewall.
* ``routing`` -- ``type: none``: no translation, only the firewall.

Firewall profiles (iptables filter table, replaced whole by one iptables-restore run):

* ``home`` -- FORWARD policy DROP except LAN->WAN, LAN->LAN, ESTABLISHED,RELATED WAN->LAN and (when the
  filtering lets unsolicited packets in) WAN->LAN packets the NAT DNATed; on the WAN, INPUT accepts
  ESTABLISHED,RELATED and drops everything else. An unsolicited packet to the WAN address is dropped in the
  filter table, before conntrack confirms it, so it leaves no conntrack entry.
* ``none`` -- everything accepted (the bare router): an unsolicited inbound packet to the WAN address that
  no mapping takes in ends in the router's own stack and leaves a conntrack entry.
"""

from __future__ import annotations

from netns.errors import LabError
from netns.topology import behaviour
from netns.topology.behaviour import Nat
from netns.topology.model import Node

_TABLE_NAT = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]


def mechanism(nat: Nat) -> str:
    """The kernel mechanism that builds ``nat`` (see the module docstring)."""
    if nat.type == "none":
        return "routing"
    if nat.mapping == behaviour.APDM:
        return "masquerade-random-fully"
    if nat.filtering == behaviour.APDF and not nat.hairpinning:
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


def _home(nat: Nat, lans: list[str]) -> list[str]:
    wan = nat.wan
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines.append(f"-A INPUT -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
    lines.append(f"-A INPUT -i {wan} -j DROP")
    for lan in lans:
        # Hosts on one LAN talk freely (also hairpinned): with br_netfilter, bridged frames cross FORWARD too.
        lines.append(f"-A FORWARD -i {lan} -o {lan} -j ACCEPT")
        lines.append(f"-A FORWARD -i {lan} -o {wan} -j ACCEPT")
        lines.append(f"-A FORWARD -i {wan} -o {lan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
        if nat.type != "none" and nat.filtering != behaviour.APDF:
            # What the nftables filtering let through a mapping (RFC 4787 §5) was DNATed in prerouting.
            lines.append(f"-A FORWARD -i {wan} -o {lan} -m conntrack --ctstate DNAT -j ACCEPT")
    return [*lines, "COMMIT"]


def _none(nat: Nat, lans: list[str]) -> list[str]:
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
    firewall = _home if node.nat.firewall == "home" else _none
    return "\n".join(_nat_table(node.nat) + firewall(node.nat, lans)) + "\n"


def describe(nat: Nat) -> str:
    """A short name for the kernel mechanism, shown by ``status`` and the ``up`` summary."""
    return f"{mechanism(nat)}/{nat.firewall} on {nat.wan}"
