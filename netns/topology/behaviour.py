"""A router's NAT in RFC 4787 terms: the ``Nat`` model, the presets, and which behaviours the kernel builds.

Terms (RFC 4787): mapping §4.1 (endpoint-independent, address-dependent, address-and-port-dependent),
filtering §5 (the same three), hairpinning §6, the UDP mapping timer §4.3 (``udp-timeout``), and the port a new
mapping gets, §4.2.1 (``port-allocation``: ``preserve`` keeps the internal port when it is free, ``sequential``
hands out the next port of a counter, ``random`` a random one, RFC 6056). ``firewall`` is orthogonal: ``home``
drops what no mapping lets in before conntrack confirms it (no conntrack entry); ``none`` is the bare router,
where such a packet ends in the router's own stack (and leaves an entry); ``udp-blocked`` is ``home`` that also
lets only TCP to ports 80 and 443 and UDP to port 53 leave (a corporate or hotel network).

``port-mapping: true`` runs miniupnpd in the router (UPnP IGD, NAT-PMP RFC 6886, PCP RFC 6887;
netns/kernel/portmap.py). ``ipv6`` is what the router does with IPv6 when its WAN and a LAN have it: ``routed``
(no translation: the LAN's prefix is public; with ``firewall: home`` the RFC 6092 stateful filter), ``nptv6``
(the LAN's prefix is translated 1:1 to ``nptv6-prefix``, RFC 6296) or ``nat66`` (every LAN source becomes the
WAN's address, masquerade).

Presets (the classic RFC 3489 names, RFC 4787 §3) set ``type``, ``mapping`` and ``filtering`` together;
``hairpinning``, ``udp-timeout`` and ``firewall`` stay separate knobs next to a preset. Giving ``mapping`` or
``filtering`` next to a preset is an error (a preset is exactly a mapping and a filtering; say one or the
other), and so is a ``type`` that disagrees with it.

Only behaviours the kernel builds are accepted (see netns/rules/nat.py and netns/rules/nft.py); ``problems`` names the
others and why, so nothing is ever faked in user space.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

EIM = EIF = "endpoint-independent"
ADM = ADF = "address-dependent"
APDM = APDF = "address-and-port-dependent"
MAPPINGS = (EIM, ADM, APDM)
FILTERINGS = (EIF, ADF, APDF)
NAT_TYPES = ("masquerade", "none")
FIREWALLS = ("home", "none", "udp-blocked")
UDP_TIMEOUT_MAX = 86400
PRESERVE, SEQUENTIAL, RANDOM = "preserve", "sequential", "random"
PORT_ALLOCATIONS = (PRESERVE, SEQUENTIAL, RANDOM)
ROUTED, NPTV6, NAT66 = "routed", "nptv6", "nat66"
IPV6_MODES = (ROUTED, NPTV6, NAT66)
# What a udp-blocked firewall lets leave: (protocol, destination port).
UDP_BLOCKED_ALLOWS = (("tcp", 80), ("tcp", 443), ("udp", 53))

# name -> (type, mapping, filtering); "none" is plain routing (no translation at all).
PRESETS: dict[str, tuple[str, str, str]] = {
    "full-cone": ("masquerade", EIM, EIF),
    "restricted-cone": ("masquerade", EIM, ADF),
    "port-restricted-cone": ("masquerade", EIM, APDF),
    "symmetric": ("masquerade", APDM, APDF),
    # The carrier's NAT between two NAT layers (NAT444): RFC 6888 REQ-1 holds a CGN to RFC 4787, whose REQ-1 asks
    # for endpoint-independent mapping; the filtering is MASQUERADE's own. Its LAN must be in CARRIER_SPACE.
    "cgnat": ("masquerade", EIM, APDF),
    "none": ("none", EIM, EIF),
}
CARRIER_SPACE = "100.64.0.0/10"  # RFC 6598 shared address space, between a CGN and its customers' home NATs


@dataclass(frozen=True, slots=True)
class Nat:
    """A router's NAT. ``type: masquerade`` translates LAN sources to the first address of ``wan``;
    ``type: none`` only routes (``mapping``/``filtering`` then mean nothing and keep their defaults)."""

    type: str
    wan: str
    firewall: str = "home"
    mapping: str = EIM
    filtering: str = APDF
    hairpinning: bool = False
    udp_timeout: int | None = None
    # The preset it was built from, if one was named (cgnat has port-restricted-cone's rules). Not compared: two
    # NATs that behave alike are equal.
    preset: str | None = field(default=None, compare=False)
    port_allocation: str | None = None  # None: the mapping's own (``allocation``)
    port_mapping: bool = False
    ipv6: str = ROUTED
    nptv6_prefix: str | None = None

    def with_preset(self, preset: str) -> Nat:
        """A copy with ``preset``'s type, mapping and filtering (the ``up --nat`` override)."""
        nat_type, mapping, filtering = PRESETS[preset]
        if nat_type == "none":
            return replace(
                self, type="none", mapping=EIM, filtering=APDF, hairpinning=False, preset=preset, port_allocation=None
            )
        return replace(self, type=nat_type, mapping=mapping, filtering=filtering, preset=preset)


def allocation(nat: Nat) -> str:
    """The port allocation of ``nat``: as given, else ``random`` for an address-and-port-dependent mapping (a fresh
    random port per flow, as MASQUERADE --random-fully gives it) and ``preserve`` for the others."""
    if nat.port_allocation is not None:
        return nat.port_allocation
    return RANDOM if nat.mapping == APDM else PRESERVE


def preset_of(nat: Nat) -> str | None:
    """The preset name that ``nat``'s type, mapping and filtering amount to, if any."""
    if nat.type == "none":
        return "none"
    if nat.preset is not None and PRESETS[nat.preset] == (nat.type, nat.mapping, nat.filtering):
        return nat.preset
    for name, (nat_type, mapping, filtering) in PRESETS.items():
        if (nat_type, mapping, filtering) == (nat.type, nat.mapping, nat.filtering):
            return name
    return None


def problems(nat: Nat) -> list[tuple[str, str]]:
    """``(key, message)`` for each behaviour of ``nat`` that the kernel rules here cannot build."""
    found: list[tuple[str, str]] = []
    if nat.type == "none":
        if nat.hairpinning:
            found.append(("hairpinning", "a router without NAT has no mapping to hairpin; remove hairpinning"))
        if nat.port_allocation is not None:
            found.append(("port-allocation", "a router without NAT allocates no ports; remove port-allocation"))
        if nat.port_mapping:
            found.append(("port-mapping", "a router without NAT has no ports to map; remove port-mapping"))
        return found
    if nat.mapping == APDM and nat.port_allocation == PRESERVE:
        found.append(
            (
                "port-allocation",
                "an address-and-port-dependent mapping gives each flow a port of its own here, so it cannot preserve "
                "the internal port (the kernel would map every flow of an endpoint to it: endpoint-independent); "
                "use random or sequential",
            )
        )
    if nat.mapping == ADM:
        found.append(
            (
                "mapping",
                "address-dependent mapping is not built by this lab (no kernel rules for it yet); "
                "use endpoint-independent or address-and-port-dependent",
            )
        )
    if nat.mapping == APDM and nat.filtering != APDF:
        found.append(
            (
                "filtering",
                f"{nat.filtering} filtering cannot go with address-and-port-dependent mapping here: "
                "MASQUERADE --random-fully may give one public port to several internal endpoints (towards "
                "different remotes), so there is no single endpoint to let other senders through to; "
                "use address-and-port-dependent filtering (preset symmetric)",
            )
        )
    if nat.mapping == APDM and nat.hairpinning:
        found.append(
            (
                "hairpinning",
                "hairpinning cannot go with address-and-port-dependent mapping here: MASQUERADE --random-fully "
                "may give one public port to several internal endpoints, so a hairpinned packet has no single "
                "owner; use an endpoint-independent mapping or `hairpinning: false`",
            )
        )
    return found


def as_dict(nat: Nat) -> dict[str, Any]:
    """The behaviour in RFC 4787 terms, for ``status --json`` and the state file."""
    return {
        "preset": preset_of(nat),
        "mapping": None if nat.type == "none" else nat.mapping,
        "filtering": None if nat.type == "none" else nat.filtering,
        "hairpinning": nat.hairpinning,
        "udp_timeout": nat.udp_timeout,
        "firewall": nat.firewall,
        "port_allocation": None if nat.type == "none" else allocation(nat),
        "port_mapping": nat.port_mapping,
    }


def summary(nat: Nat) -> str:
    """One line in RFC 4787 terms, e.g. ``full-cone: mapping endpoint-independent, filtering ...``."""
    timeout = f"udp-timeout {nat.udp_timeout}s" if nat.udp_timeout else "udp-timeout kernel default"
    if nat.type == "none":
        return f"none: no NAT (plain routing), firewall {nat.firewall}, {timeout}"
    name = preset_of(nat) or "custom"
    hairpin = "hairpinning" if nat.hairpinning else "no hairpinning"
    ports = f"ports {allocation(nat)}" + (", port mapping (UPnP IGD, NAT-PMP, PCP)" if nat.port_mapping else "")
    filtering = f"filtering {nat.filtering}, {hairpin}, firewall {nat.firewall}"
    ipv6 = {ROUTED: "", NPTV6: f", IPv6 NPTv6 to {nat.nptv6_prefix}", NAT66: ", IPv6 NAT66"}[nat.ipv6]
    return f"{name}: mapping {nat.mapping}, {filtering}, {timeout}, {ports}{ipv6}"
