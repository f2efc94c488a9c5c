"""A port-mapping router's miniupnpd: its configuration and the nftables table it writes its rules into.

miniupnpd (UPnP IGD, NAT-PMP RFC 6886, PCP RFC 6887) answers the router's LANs and installs each mapping as a
DNAT rule (and an accept rule) in chains of an nftables table that must exist before it starts: the lab's own
``inet netns_upnp``, whose base chains jump to miniupnpd's. Its prerouting runs before the lab's NAT
(netns/rules/nft.py, at dstnat), so an explicit mapping wins over a learnt one. The lab's firewall lets in what
was DNATed (netns/rules/nat.py). Everything lives in the router's namespace and goes with it.

``ext_allow_private_ipv4``: the lab's public addresses are documentation ranges, which miniupnpd counts as
reserved; without the option (miniupnpd 2.3.9 has it, Debian 12's 2.3.1 does not) it refuses every mapping.
"""

from __future__ import annotations

import uuid

from netns.topology.model import Node

TABLE = "netns_upnp"
HTTP_PORT = 2189  # UPnP IGD's description and control (fixed, so `upnpc -u` can be pointed at it)
NATPMP_PORT = 5351  # NAT-PMP and PCP (RFC 6886 §3, RFC 6887 §19.1)
MIN_PORT, MAX_PORT = 1024, 65535  # what a LAN host may map (external and internal ports)


def nft_table() -> str:
    """The ``nft -f`` input that gives miniupnpd the chains its rules go into (its default names)."""
    return (
        "\n".join(
            [
                f"table inet {TABLE} {{",
                "\tchain forward {",
                "\t\ttype filter hook forward priority filter; policy accept;",
                "\t\tjump miniupnpd",
                "\t}",
                "\tchain miniupnpd {",
                "\t}",
                "\tchain prerouting {",
                "\t\ttype nat hook prerouting priority dstnat - 10; policy accept;",
                "\t\tjump prerouting_miniupnpd",
                "\t}",
                "\tchain prerouting_miniupnpd {",
                "\t}",
                "\tchain postrouting {",
                "\t\ttype nat hook postrouting priority srcnat - 10; policy accept;",
                "\t\tjump postrouting_miniupnpd",
                "\t}",
                "\tchain postrouting_miniupnpd {",
                "\t}",
                "}",
            ]
        )
        + "\n"
    )


def config(node: Node, lans: list[str], lease_file: str) -> str:
    """miniupnpd.conf for router ``node``: WAN and LANs by interface name, every protocol on, any LAN host may map
    its own address (secure_mode) on ports 1024-65535, the mappings kept in ``lease_file`` (what ``status`` reads)."""
    assert node.nat is not None
    lines = [
        f"ext_ifname={node.nat.wan}",
        "ext_allow_private_ipv4=yes",
        *(f"listening_ip={lan}" for lan in lans),
        f"http_port={HTTP_PORT}",
        "enable_upnp=yes",
        "enable_natpmp=yes",  # NAT-PMP and PCP share the switch and the port
        "ipv6_disable=yes",
        "secure_mode=yes",
        "system_uptime=yes",
        f"lease_file={lease_file}",
        f"upnp_table_name={TABLE}",
        f"upnp_nat_table_name={TABLE}",
        f"uuid={uuid.uuid5(uuid.NAMESPACE_DNS, node.name + '.netns-lab')}",
        f"allow {MIN_PORT}-{MAX_PORT} 0.0.0.0/0 {MIN_PORT}-{MAX_PORT}",
        "deny 0-65535 0.0.0.0/0 0-65535",
    ]
    return "\n".join(lines) + "\n"


def parse_leases(text: str) -> tuple[list[dict[str, object]], int]:
    """The mappings in miniupnpd's lease file (one ``PROTO:EPORT:IADDR:IPORT:EXPIRES:DESCRIPTION`` a line; EXPIRES
    is a Unix time, 0 for no expiry), and how many lines did not parse (dropped)."""
    mappings: list[dict[str, object]] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(":", 5)
        if (
            len(parts) != 6
            or parts[0] not in ("TCP", "UDP")
            or not all(p.isdigit() for p in (parts[1], parts[3], parts[4]))
        ):
            bad += 1
            continue
        protocol, external, internal, port, expires, description = parts
        mappings.append(
            {
                "protocol": protocol.lower(),
                "external_port": int(external),
                "internal": f"{internal}:{port}",
                "expires": int(expires) or None,
                "description": description,
            }
        )
    return mappings, bad
