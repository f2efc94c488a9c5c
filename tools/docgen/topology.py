"""The topology reference of docs/lab.md from the lab's own model (netns.topology: model, behaviour, impairment).

The keys each level of a topology file accepts are asked of the model itself (an unknown key is refused with
the list of allowed ones); allowed values and defaults come from the model's constants. What each key is for is
written here once; a key the model accepts and this module does not describe (or the reverse) stops the generator.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netns.errors import TopologyError
from netns.topology import behaviour, model
from netns.topology import impairment as impair
from tools.docgen.markdown import EMPTY, code, table
from tools.docgen.regions import RegionError, check_described

_UNKNOWN = re.compile(r": (?P<path>[\w.-]+): unknown key; allowed keys are (?P<keys>.+)$")
_PROBE = "notakey"


def _one_of(values: Any) -> str:
    return ", ".join(code(str(v)) for v in values)


def _nat_default(name: str) -> str:
    (found,) = [f for f in dataclasses.fields(behaviour.Nat) if f.name == name]
    value = found.default
    return code(str(value).lower() if isinstance(value, bool) else str(value))


# level -> (a document whose level holds one unknown key, {key: (type, default, allowed values, what it is)})
Doc = tuple[str, Callable[[], str], Callable[[], str], str]
LEVELS: dict[str, tuple[dict[str, Any], dict[str, Doc]]] = {
    "top level": (
        {_PROBE: 1},
        {
            "version": ("integer", lambda: "required", lambda: code(str(model.VERSION)), "the schema's version"),
            "networks": ("mapping", lambda: "required", lambda: "NAME: network", "the links: one L2 segment each"),
            "nodes": ("mapping", lambda: "required", lambda: "NAME: node", "namespaces (or containers), in order"),
        },
    ),
    "networks.NAME": (
        {"networks": {"n": {_PROBE: 1}}},
        {
            "subnet": (
                "IPv4 CIDR",
                lambda: "required",
                lambda: "prefix length 30 or less",
                "the network's addresses; 2 members make a veth pair, more a bridge in the first member's namespace",
            ),
            "subnet6": (
                "IPv6 CIDR",
                lambda: "none",
                lambda: f"inside {code(str(model.LAB6))}, prefix length 126 or less",
                "makes the network dual-stack: its members may have IPv6 addresses",
            ),
            "impair": ("mapping", lambda: "none", lambda: "the keys below", "link impairments on every member"),
        },
    ),
    "networks.NAME.impair": (
        {"networks": {"n": {"subnet": "10.0.0.0/24", "impair": {_PROBE: 1}}}},
        {
            "delay": (
                "duration",
                lambda: "none",
                lambda: f"`us`, `ms` or `s`, at most {impair.DELAY_MAX_MS / 1000:g}s",
                "added one way at each member (a round trip crosses it twice)",
            ),
            "jitter": ("duration", lambda: "none", lambda: "as delay; needs one", "delay ± jitter, uniform: reorders"),
            "loss": (
                "percentage",
                lambda: "none",
                lambda: f"0% to 100% in steps of {100 / impair.PERMILLE:g}%",
                "dropped silently, ARP too",
            ),
            "duplicate": ("percentage", lambda: "none", lambda: "as loss", "sent twice"),
            "rate": (
                "bits per second",
                lambda: "none",
                lambda: (
                    f"`bit`, `kbit`, `mbit`, `gbit`; {impair.RATE_MIN_BIT // 1000}kbit to "
                    f"{impair.RATE_MAX_BIT // 10**9}gbit"
                ),
                "a token bucket (tbf)",
            ),
        },
    ),
    "nodes.NAME": (
        {"nodes": {"a": {_PROBE: 1}}},
        {
            "kind": ("string", lambda: "required", lambda: _one_of(model.KINDS), "core and router forward"),
            "interfaces": (
                "mapping",
                lambda: "required",
                lambda: "NETWORK: ADDRESS or [ADDRESS, ...]",
                "addresses in each network's subnet (IPv6 ones in its subnet6, in the same list); the interface "
                "carries the network's name",
            ),
            "gateway": ("IPv4 address", lambda: "none", lambda: "a neighbour's address", "the default route"),
            "gateway6": ("IPv6 address", lambda: "none", lambda: "a neighbour's address", "the IPv6 default route"),
            "nat": ("mapping", lambda: "none", lambda: "the keys below", "routers only, required there"),
            "image": (
                "Docker image reference",
                lambda: "none",
                lambda: f"on {_one_of(model.CONTAINER_KINDS)}",
                "run the node as a container of this image, wired by the lab",
            ),
            "command": ("list of strings, or a string", lambda: "the image's", lambda: "with image", "its command"),
            "env": ("mapping of strings", lambda: "none", lambda: "with image", "its environment"),
        },
    ),
    "nodes.NAME.nat": (
        {"nodes": {"a": {"kind": "router", "nat": {_PROBE: 1}}}},
        {
            "wan": ("network name", lambda: "required", lambda: "one of the router's", "the interface facing out"),
            "preset": (
                "string",
                lambda: "none",
                lambda: _one_of(behaviour.PRESETS),
                "sets type, mapping and filtering together (table below)",
            ),
            "mapping": (
                "string",
                lambda: _nat_default("mapping"),
                lambda: _one_of(behaviour.MAPPINGS),
                "RFC 4787 §4.1; not with a preset",
            ),
            "filtering": (
                "string",
                lambda: _nat_default("filtering"),
                lambda: _one_of(behaviour.FILTERINGS),
                "RFC 4787 §5; not with a preset",
            ),
            "hairpinning": (
                "boolean",
                lambda: _nat_default("hairpinning"),
                lambda: "`true`, `false`",
                "RFC 4787 §6: LAN hosts reach each other through the public address",
            ),
            "udp-timeout": (
                "seconds",
                lambda: "the kernel's",
                lambda: f"1 to {behaviour.UDP_TIMEOUT_MAX}",
                "conntrack's UDP timeouts (RFC 4787 §4.3)",
            ),
            "firewall": (
                "string",
                lambda: _nat_default("firewall"),
                lambda: _one_of(behaviour.FIREWALLS),
                "`home` drops unsolicited packets on the WAN; `none` is a bare MASQUERADE router; `udp-blocked` is "
                "`home` letting only TCP 80/443 and UDP 53 leave",
            ),
            "type": (
                "string",
                lambda: "`masquerade`",
                lambda: _one_of(behaviour.NAT_TYPES),
                "`none` only routes (a public LAN); a preset sets it",
            ),
            "port-allocation": (
                "string",
                lambda: "`preserve`; `random` with an address-and-port-dependent mapping",
                lambda: _one_of(behaviour.PORT_ALLOCATIONS),
                "the public port of a new mapping (RFC 4787 §4.2.1)",
            ),
            "port-mapping": (
                "boolean",
                lambda: _nat_default("port_mapping"),
                lambda: "`true`, `false`",
                "miniupnpd in the router: UPnP IGD, NAT-PMP (RFC 6886), PCP (RFC 6887)",
            ),
            "ipv6": (
                "string",
                lambda: _nat_default("ipv6"),
                lambda: _one_of(behaviour.IPV6_MODES),
                "with IPv6 on WAN and LAN: no translation (RFC 6092 filter with `home`), NPTv6 (RFC 6296), NAT66",
            ),
            "nptv6-prefix": (
                "IPv6 CIDR",
                lambda: "none",
                lambda: "the LAN's prefix length; with `ipv6: nptv6`, required there",
                "the public prefix the LAN's is translated to",
            ),
        },
    ),
}


def allowed_keys(document: dict[str, Any]) -> tuple[str, list[str]]:
    """(yaml path, allowed keys) that the model names when it refuses ``document``'s one unknown key."""
    try:
        model.parse(document)
    except TopologyError as error:
        for problem in error.problems:
            match = _UNKNOWN.search(problem)
            if match and match["path"].endswith(_PROBE):
                return match["path"].removesuffix(_PROBE).rstrip("."), match["keys"].split(", ")
    raise RegionError(f"netns.model did not refuse an unknown key in {document}; tools/docgen/topology.py must learn")


def keys() -> str:
    lines: list[str] = []
    for level, (probe, described) in LEVELS.items():
        _, known = allowed_keys(probe)
        check_described(__name__, f"the keys netns.model accepts at {level}", known, described)
        rows = []
        for key in known:
            kind, default, allowed, meaning = described[key]
            rows.append([code(key), kind, default(), allowed(), meaning])
        lines += [f"`{level}`:" if level != "top level" else "The top level:", ""]
        lines += [*table(["key", "type", "default", "allowed", "what it is"], rows), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def presets() -> str:
    rows = []
    for name, (nat_type, mapping, filtering) in behaviour.PRESETS.items():
        translated = nat_type != "none"
        rows.append([code(name), code(nat_type), mapping if translated else EMPTY, filtering if translated else EMPTY])
    return "\n".join(table(["preset", "type", "mapping", "filtering"], rows)) + "\n"


def _summary(path: Path) -> str:
    """The file's opening comment, as one paragraph."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text and words:
            break
        words.append(text)
    return " ".join(words)


def files(root: Path) -> str:
    rows = []
    for path in sorted((root / "netns" / "topologies").glob("*.yaml")):
        try:
            topology = model.load(path)
        except TopologyError as error:
            raise RegionError(f"{path.relative_to(root)} does not validate: {error}") from None
        kinds = [n.kind for n in topology.nodes]
        counts = f"{_count(kinds, 'peer')}, {_count(kinds, 'router')}"
        link = f"[{path.name}](../{path.relative_to(root)})"
        rows.append([link, counts, _summary(path)])
    return "\n".join(table(["file", "nodes", "what it is"], rows)) + "\n"


def _count(kinds: list[str], kind: str) -> str:
    number = kinds.count(kind)
    return f"{number} {kind}" + ("" if number == 1 else "s")
