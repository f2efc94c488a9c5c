"""Router NAT -> kernel rules: one iptables-restore ruleset, loaded in the router's namespace in one go.

The NAT is the kernel's own (netfilter with conntrack). A builder per ``nat.type`` turns the model into
rules; RFC 4787 behaviours (mapping §4.1, filtering §5, hairpinning §6, timeouts §4.3, or an nftables
backend) slot in later as further builders and firewall profiles without touching the caller.

``type: masquerade`` is MASQUERADE on the WAN interface: Linux keeps the source port when it can and
maps endpoint-independently in practice; its filtering is what the firewall profile makes it:

* ``firewall: home`` -- FORWARD policy DROP except LAN->WAN and ESTABLISHED,RELATED WAN->LAN; on the WAN,
  INPUT accepts ESTABLISHED,RELATED and drops everything else. An unsolicited packet to the WAN address
  is dropped in the filter table, before conntrack confirms it, so it leaves no conntrack entry.
* ``firewall: none`` -- only MASQUERADE, everything accepted (the bare router): an unsolicited inbound
  packet to the WAN address does leave a conntrack entry.
"""

from __future__ import annotations

from collections.abc import Callable

from netns.errors import LabError
from netns.model import Nat, Node

_TABLE_NAT = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]


def _masquerade(nat: Nat, lans: list[str]) -> list[str]:
    lines = [*_TABLE_NAT, ":POSTROUTING ACCEPT [0:0]", f"-A POSTROUTING -o {nat.wan} -j MASQUERADE", "COMMIT"]
    lines += _FIREWALLS[nat.firewall](nat.wan, lans)
    return lines


def _home(wan: str, lans: list[str]) -> list[str]:
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines.append(f"-A INPUT -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
    lines.append(f"-A INPUT -i {wan} -j DROP")
    for lan in lans:
        # Hosts on one LAN talk freely: with br_netfilter, bridged frames between them cross FORWARD too.
        lines.append(f"-A FORWARD -i {lan} -o {lan} -j ACCEPT")
        lines.append(f"-A FORWARD -i {lan} -o {wan} -j ACCEPT")
        lines.append(f"-A FORWARD -i {wan} -o {lan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
    return [*lines, "COMMIT"]


def _none(wan: str, lans: list[str]) -> list[str]:
    return ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT"]


_FIREWALLS: dict[str, Callable[[str, list[str]], list[str]]] = {"home": _home, "none": _none}
_BUILDERS: dict[str, Callable[[Nat, list[str]], list[str]]] = {"masquerade": _masquerade}


def ruleset(node: Node) -> str:
    """The iptables-restore input for a router ``node`` (every table it touches, replaced whole)."""
    if node.nat is None:
        raise LabError(f"node {node.name!r} has no NAT; only routers get NAT rules")
    lans = [i.network for i in node.interfaces if i.network != node.nat.wan]
    return "\n".join(_BUILDERS[node.nat.type](node.nat, lans)) + "\n"


def describe(nat: Nat) -> str:
    """A short name for the NAT kind, shown by ``status`` and the ``up`` summary."""
    return f"{nat.type}/{nat.firewall} on {nat.wan}"
