"""Link impairments (netns/topology/impairment.py) built from kernel mechanisms: which one, and its rule text.

Mechanisms (``mechanisms``): with the ``netem`` qdisc (stock Debian/Ubuntu kernels) one netem qdisc per
interface does everything. Without it (detected by trying, netns/kernel/tc.py ``netem_supported``):

* delay and jitter -- an iptables rule in the raw table sends the packets *arriving* on the interface to an
  NFQUEUE, where ``python -m netns.kernel.delayd`` (netns/kernel/delayd.py) holds each verdict for delay +/- jitter;
  no ``--queue-bypass``, so a dead daemon stops the traffic rather than letting it pass unimpaired. The hold
  is at the receiving end, before its connection tracking, because that is where a wire's delay is: a NAT
  router creates its mapping the moment its packet leaves, as with netem (a qdisc, after the whole IP stack).
  Held at the sender's egress (any IP hook runs before conntrack confirms the connection and before source
  NAT picks the port), every mapping would open a link's delay late, and the other side's packet arriving
  meanwhile would race it. The price: a capture on the receiving interface sees a packet when it reaches the
  interface, a delay before the node's stack does (netem shows it after the delay at both ends);
* loss -- nftables ``numgen random mod 1000 < N drop`` (0.1% steps) on the interface's netdev egress hook
  (table ``netdev netns_impair``): silent like a loss on the wire (a drop in the IP hooks would make a local
  sender's ``send()`` fail with EPERM), and like a wire (and netem) it loses ARP frames too;
* duplication -- nftables ``dup to rt ip nexthop device IF`` after source NAT (priority srcnat + 10, table
  ``ip netns_impair``), so forwarded and locally generated packets alike are copied with their final
  addresses; original and copy are each held at the receiving end, and the copy may be lost like any packet;
* rate -- a tbf qdisc (token bucket) on the interface.

This module is pure: the rule text and qdisc parameters for the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netns.topology.impairment import PERMILLE, Impairment

TABLE = "netns_impair"
TBF_LATENCY_MS = 100  # the bottleneck's buffer, as time at the rate: what tbf may queue before it drops
NETEM_LIMIT = 10_000  # packets netem may hold (its default of 1000 is reached at 20k pps with 50ms)

NETEM = "netem"
NFQUEUE = "nfqueue"
NUMGEN = "nft numgen"
DUP = "nft dup"
TBF = "tbf"


def mechanisms(impairment: Impairment, netem: bool) -> dict[str, str]:
    """Which kernel mechanism builds each impairment (``{"delay": "nfqueue", "loss": "nft numgen"}``)."""
    fallback = {"delay": NFQUEUE, "loss": NUMGEN, "duplicate": DUP, "rate": TBF}
    return {kind: NETEM if netem else fallback[kind] for kind, _ in impairment.parts()}


@dataclass(frozen=True, slots=True)
class Link:
    """One impaired interface: ``ifname`` (named after the network) of ``node`` in namespace ``ns``."""

    network: str
    node: str
    ns: str
    ifname: str
    impairment: Impairment
    queue: int


def qdisc(impairment: Impairment, netem: bool) -> tuple[str, tuple[tuple[str, Any], ...]] | None:
    """The root qdisc for an interface as (kind, pyroute2 tc keyword arguments), or None for none."""
    i = impairment
    if netem:
        params: list[tuple[str, Any]] = [("limit", NETEM_LIMIT)]
        if i.delay_ms is not None:
            params.append(("delay", round(i.delay_ms * 1000)))  # microseconds
        if i.jitter_ms is not None:
            params.append(("jitter", round(i.jitter_ms * 1000)))
        if i.loss is not None:
            params.append(("loss", i.loss / 10))  # percent
        if i.duplicate is not None:
            params.append(("duplicate", i.duplicate / 10))
        if i.rate is not None:
            params.append(("rate", f"{i.rate}bit"))
        return NETEM, tuple(params)
    if i.rate is None:
        return None
    burst = max(i.rate // 8 // 100, 2 * 1514)  # 10ms at the rate, at least two full frames
    return TBF, (("rate", f"{i.rate}bit"), ("burst", burst), ("latency", f"{TBF_LATENCY_MS}ms"))


def iptables_ruleset(links: Sequence[Link]) -> str:
    """The raw table of one node (replaced whole by iptables-restore): one NFQUEUE rule per delayed link, for
    the packets arriving on it (raw PREROUTING runs before connection tracking: see the module docstring).

    No ``--queue-bypass``: without its daemon the traffic stops instead of passing unimpaired.
    """
    lines = ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    for link in links:
        if link.impairment.delay_ms is not None:
            lines.append(f"-A PREROUTING -i {link.ifname} -j NFQUEUE --queue-num {link.queue}")
    return "\n".join([*lines, "COMMIT"]) + "\n"


def nft_ruleset(links: Sequence[Link]) -> str:
    """``nft -f`` input that replaces the node's two impairment tables atomically (or deletes them).

    ``netdev netns_impair``: loss, one chain per lossy interface on its egress hook (after the delay queue,
    before the qdisc). A drop there is silent, as on a wire: a local sender's ``send()`` does not fail with
    EPERM as it would for a drop in the IP hooks. ``ip netns_impair``: duplication, after source NAT.
    """
    lines = []
    for family in ("ip", "netdev"):  # add-then-delete: works whether or not the table exists
        lines += [f"table {family} {TABLE}", f"delete table {family} {TABLE}"]
    lossy = [(link, link.impairment.loss) for link in links if link.impairment.loss]
    if lossy:
        lines.append(f"table netdev {TABLE} {{")
        for index, (link, loss) in enumerate(lossy):
            lines += [
                f"\tchain loss{index} {{",
                f'\t\ttype filter hook egress device "{link.ifname}" priority 0; policy accept;',
                f"\t\t{_chance(loss)}drop",
                "\t}",
            ]
        lines.append("}")
    dup = [
        f'\t\toifname "{link.ifname}" {_chance(share)}dup to rt ip nexthop device "{link.ifname}"'
        for link in links
        if (share := link.impairment.duplicate)
    ]
    if dup:
        lines += [f"table ip {TABLE} {{", "\tchain duplicate {"]
        lines += ["\t\ttype filter hook postrouting priority srcnat + 10; policy accept;", *dup, "\t}", "}"]
    return "\n".join(lines) + "\n"


def _chance(permille: int) -> str:
    """The match that holds for ``permille`` tenths of a percent of packets (nothing for 100%)."""
    return "" if permille >= PERMILLE else f"numgen random mod {PERMILLE} < {permille} "


def delayd_argv(python: str, link: Link) -> list[str]:
    """The command line of the delaying daemon for ``link`` (``status`` finds it by ``--queue``)."""
    i = link.impairment
    assert i.delay_ms is not None
    return [python, "-m", "netns.kernel.delayd", "--queue", str(link.queue), "--delay", f"{i.delay_ms:g}"] + (
        ["--jitter", f"{i.jitter_ms:g}"] if i.jitter_ms is not None else []
    )
