"""How a peer punches, decided the moment its Introduce arrives: pure functions of what it knows then.

Both peers decide from the same facts (the two NAT mappings and the two round trips to the server, each as told to
the server), so they decide alike without talking. The decisions, and where each is explained:

- **plan** (:func:`plan`; punch.peer.predict): punch as usual, predict ports (open many mappings, or spray), or go
  straight to the relay where both NATs map endpoint-dependently (``hopeless``: no direct path to retry from the
  relay either); but where a router maps a port for one of the peers (punch.portmap), check that port (``MAPPED``):
  it lets anyone in, whatever either NAT does, so no opening, no timing, no prediction (:func:`mapped_candidates`,
  :attr:`Strategy.waits`);
- **behind one NAT** (the other peer has our public address): whether a LAN path likely beats the NAT's hairpin
  (``lan_first``: a LAN candidate of theirs is, or may be, on one of our links, punch.peer.routes);
- **early checks** (punch.peer.puncher): check without waiting for Go, timed by both round trips to the server,
  where that is clearly faster than Ready/Go (:func:`early_pays`), never where the peer waits for a LAN path (a
  look-alike LAN may hide a router that loses the race, with no move to recover);
- **aggressive nomination** (RFC 8445 §8.1.1; RFC 5245 §8.1.1.2): the prober nominates the public pair in every
  check, except where a LAN path goes first, ports are predicted or a mapped port is checked;
- **moves** (punch.peer.moving): a refused check has the other peer move to a fresh socket, in a plain punch with
  low-TTL probes and no LAN wait.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from punch.stun import Address
from punch.stun.wire import Mapping, Role

EARLY_FLOOR = 0.001  # seconds: the least an early check waits past the other's Introduce


class Plan(enum.Enum):
    """What a peer does after the introduction; both peers reach the same plan from the two mappings."""

    PUNCH = "punch"  # the usual opener/prober punch (punch.peer.puncher)
    OPEN = "open"  # we are the hard side: open many mappings, then Ready (punch.peer.predict)
    SPRAY = "spray"  # we are the easy side: after Go, spray checks at the hard NAT's ports
    RELAY = "relay"  # both hard: no port to predict, straight to the relay
    MAPPED = "mapped"  # a router maps a port for one of us: the other checks it at once


def mapped_candidates(candidates: tuple[Address, ...]) -> tuple[Address, ...]:
    """The ports a peer's router maps for it, among its ``candidates`` as its Introduce lists them: those after the
    first (the endpoint the server sees) on the same public address. A peer offers a mapped port only on the address
    the server sees it at (punch.peer.portmapping), and a host candidate never has that address: a peer with a public
    address of its own is seen at its own endpoint, which the server passes once."""
    public = candidates[0][0]
    return tuple(c for c in candidates[1:] if c[0] == public)


def plan(ours: Mapping, theirs: Mapping, role: Role) -> Plan:
    """The plan for two mappings; the hard side must be the opener (the server sees to that)."""
    hard, easy = Mapping.ENDPOINT_DEPENDENT, Mapping.ENDPOINT_INDEPENDENT
    if ours is hard and theirs is hard:
        return Plan.RELAY
    if (ours, theirs, role) == (hard, easy, Role.OPENER):
        return Plan.OPEN
    if (ours, theirs, role) == (easy, hard, Role.PROBER):
        return Plan.SPRAY
    return Plan.PUNCH


def _margin(one_way: float, margin: float, floor: float) -> float:
    return max(floor, margin * one_way)


def early_delay(our_rtt: float, their_rtt: float, margin: float, floor: float = EARLY_FLOOR) -> float:
    """How long after our Introduce our first full-TTL check may leave: when the other peer's Introduce (sent at
    the same moment, ``their_rtt/2 - our_rtt/2`` later than ours) has arrived and its low-TTL probe has opened
    its NAT's mapping, plus ``margin`` of the larger one-way delay (at least ``floor``) for the estimates' error.

    A check that reached the other NAT earlier would be recorded there as a connection of its own (the conntrack
    race of punch.peer.puncher); the time the check takes to the other NAT is further slack.
    """
    ours, theirs = our_rtt / 2, their_rtt / 2
    return max(0.0, theirs - ours) + _margin(max(ours, theirs), margin, floor)


def early_pays(opener_rtt: float, prober_rtt: float, margin: float, floor: float = EARLY_FLOOR) -> bool:
    """Whether early checks prove the path sooner than Ready/Go, from the two round trips to the server that both
    peers know alike (each its own, as it told the server, and the other's, from its Introduce): both peers
    decide the same.

    With one-way delays ``a`` (opener) and ``b`` (prober) from the server, and the introductions leaving at 0,
    early checks leave at ``max(a, b) + m`` (:func:`early_delay`; ``m`` the margin), and under Ready/Go the
    prober checks when Go arrives, at ``2a + b`` (the opener's Ready, then the Go): early checks save
    ``a + min(a, b) - m``. They are taken where that saving is more than the margin again, ``2m < a + min(a, b)``:
    a smaller gain is within the error of the round trips measured (a fresh process's first one includes its
    start-up), and Ready/Go cannot race. So with the 1 ms floor, both peers more than a 2 ms round trip from the
    server; nearer (a LAN, a lab without delay) Ready/Go is about as fast, and no NAT can see a check before its
    own peer's probe.
    """
    a, b = opener_rtt / 2, prober_rtt / 2
    return 2 * _margin(max(a, b), margin, floor) < a + min(a, b)


@dataclass(frozen=True, slots=True)
class Situation:
    """What a peer knows when its Introduce arrives (times in seconds)."""

    plan: Plan
    role: Role
    early_enabled: bool  # --early-checks
    open_ttl: int  # the TTL of our low-TTL probes; 0: none
    same_nat: bool  # the other peer has our public address
    lan_on_link: bool  # a LAN candidate of theirs is (or may be) on one of our links
    our_rtt: float | None  # our shortest round trip to the server so far
    told_rtt: float | None  # the round trip we told the server in Connect (what the other peer knows of ours)
    their_rtt: float | None  # the round trip the other peer told the server (its Introduce carried it)
    mapped_ours: bool = False  # our router maps a port for us, and we offered it (Plan.MAPPED)
    mapped_theirs: bool = False  # the other's candidates hold a port its router maps for it
    early_margin: float = 0.05
    early_floor: float = EARLY_FLOOR


class NotEarly(enum.Enum):
    """Why a punch waits for Go, where that deserves a log line."""

    LAN = "lan"  # a LAN candidate of the other is on our link
    NEAR = "near"  # the server is so near that Ready/Go is as fast


@dataclass(frozen=True, slots=True)
class Strategy:
    """How to punch (module docstring). ``early_delay``: seconds after our Introduce when our first check may leave
    without waiting for Go, or None for Ready/Go."""

    plan: Plan = Plan.PUNCH
    same_nat: bool = False
    lan_on_link: bool = False
    early_delay: float | None = None
    may_move: bool = False
    not_early: NotEarly | None = None
    # Plan.MAPPED: the other peer checks the port our router maps for us, and we wait for its checks (answering
    # them, and checking back where they came from), checking ourselves only if none came after a while
    waits: bool = False

    @property
    def early(self) -> bool:
        return self.early_delay is not None

    @property
    def lan_first(self) -> bool:
        """Behind one NAT, a LAN path likely beats the NAT's hairpin: the prober waits for it a moment."""
        return self.same_nat and self.lan_on_link

    @property
    def predicting(self) -> bool:
        """Ports are predicted (or the relay is taken at once): every path through the NATs is ``predicted``."""
        return self.plan in (Plan.OPEN, Plan.SPRAY, Plan.RELAY)

    @property
    def hopeless(self) -> bool:
        """Both NATs map endpoint-dependently: no direct path, also not from the relay's retries."""
        return self.plan is Plan.RELAY

    @property
    def aggressive(self) -> bool:
        """The prober nominates the public pair in every check (not when a LAN path goes first, nor predicting, nor
        with a mapped port: the prober then nominates the first pair proven, whichever it is)."""
        return not self.lan_first and not self.predicting and self.plan is not Plan.MAPPED


def mapped_plan(ours: bool, theirs: bool, otherwise: Plan) -> Plan:
    """MAPPED where either peer offers a port its router maps (``ours``, ``theirs``), else ``otherwise``.

    A mapped port beats every other plan: it lets in whoever sends to it, so the other peer's checks get through at
    once, whatever the two NATs map and filter; and a plan that ignored it could be broken by it: in a plain punch,
    a check that reached our mapped port before our low-TTL probe left would make our NAT send our packets to that
    peer from the mapped port, not from the public endpoint the prober nominates."""
    return Plan.MAPPED if ours or theirs else otherwise


def waits_for_checks(ours: bool, theirs: bool, role: Role) -> bool:
    """In a MAPPED plan, whether we wait for the other's checks through our mapped port rather than check first: where
    only we offer one, or both do and we are the opener (the prober then checks ours).

    Why wait. Our check toward the other's endpoint would make our NAT record that flow; if the other peer's NAT
    maps endpoint-independently, its checks to our mapped port come from that very endpoint, and the router's DNAT
    toward us would clash with the flow we recorded (the conntrack race of punch.peer.puncher): dropped. Answering
    their check first puts the DNAT entry in place, and our triggered check then leaves through it, from the mapped
    port."""
    return ours and (not theirs or role is Role.OPENER)


def mapped_strategy(same_nat: bool, lan_on_link: bool, ours: bool, theirs: bool, role: Role) -> Strategy:
    """Plan.MAPPED's strategy, in a first punch and in a rejoin alike: no low-TTL probes, no Ready/Go (a mapped port
    is open already, so the checker checks on its Introduce), and the prober nominates the first pair proven, not
    the public endpoint in every check (that would never nominate the mapped port)."""
    return Strategy(
        plan=Plan.MAPPED,
        same_nat=same_nat,
        lan_on_link=lan_on_link,
        early_delay=0.0,
        waits=waits_for_checks(ours, theirs, role),
    )


def decide(situation: Situation) -> Strategy:
    """The strategy for ``situation`` (module docstring)."""
    s = situation
    if s.plan is Plan.MAPPED:
        return mapped_strategy(s.same_nat, s.lan_on_link, s.mapped_ours, s.mapped_theirs, s.role)
    lan_first = s.same_nat and s.lan_on_link
    delay, not_early = _early(s, lan_first)
    return Strategy(
        plan=s.plan,
        same_nat=s.same_nat,
        lan_on_link=s.lan_on_link,
        early_delay=delay,
        may_move=s.plan is Plan.PUNCH and s.open_ttl > 0 and not lan_first,
        not_early=not_early,
    )


def _early(s: Situation, lan_first: bool) -> tuple[float | None, NotEarly | None]:
    """Early checks need both round trips, a plain punch, low-TTL probes (they open both NATs first), a way back from
    a lost race (a move: not ``lan_first``), and a server far enough away that they beat Ready/Go."""
    if not s.early_enabled or s.plan is not Plan.PUNCH or s.open_ttl <= 0:
        return None, None
    if lan_first:
        return None, NotEarly.LAN
    if s.our_rtt is None or s.told_rtt is None or s.their_rtt is None:
        return None, None
    opener_rtt, prober_rtt = (s.told_rtt, s.their_rtt) if s.role is Role.OPENER else (s.their_rtt, s.told_rtt)
    if not early_pays(opener_rtt, prober_rtt, s.early_margin, s.early_floor):
        return None, NotEarly.NEAR
    return early_delay(s.our_rtt, s.their_rtt, s.early_margin, s.early_floor), None
