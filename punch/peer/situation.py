"""What a peer knows when an introduction arrives, and the strategy it makes of it (punch.peer.strategy.decide), with
a log line for each decision a student would ask about: why early checks, why Ready/Go, why no LAN wait."""

from __future__ import annotations

import logging

from punch.peer import routes
from punch.peer.client import RendezvousClient
from punch.peer.predict import PredictConfig, choose_plan
from punch.peer.puncher import PunchTimings
from punch.peer.strategy import NotEarly, Plan, Situation, Strategy, decide, mapped_candidates, mapped_plan
from punch.stun import Address
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.wire import Introduction

log = logging.getLogger(__name__)


def strategy_for(
    introduction: Introduction,
    client: RendezvousClient,
    timings: PunchTimings,
    predict: PredictConfig,
    endpoint: StunEndpoint,
) -> Strategy:
    """The strategy for ``introduction``, from our NAT's mapping and round trips as ``client`` measured them, the
    punch's ``timings`` and our socket's routes (``endpoint``)."""
    ours, theirs = client.offered, mapped_candidates(introduction.candidates)
    plan = mapped_plan(ours is not None, bool(theirs), Plan.PUNCH)
    if plan is Plan.PUNCH:
        plan = choose_plan(predict, client.mapping, introduction)
    same_nat, lan_on_link = behind_one_nat(introduction, client.mapped, endpoint)
    told, their_rtt = client.told_rtt_us, introduction.rtt_us
    strategy = decide(
        Situation(
            plan=plan,
            role=introduction.role,
            early_enabled=timings.early,
            open_ttl=timings.open_ttl,
            same_nat=same_nat,
            lan_on_link=lan_on_link,
            our_rtt=client.rtt,
            told_rtt=None if told is None else told / 1e6,
            their_rtt=None if their_rtt is None else their_rtt / 1e6,
            mapped_ours=ours is not None,
            mapped_theirs=bool(theirs),
            early_margin=timings.early_margin,
            early_floor=timings.early_floor,
        )
    )
    peer = introduction.peer_id
    if strategy.plan is Plan.MAPPED:
        _log_mapped(peer, ours, theirs, strategy)
    elif strategy.not_early is NotEarly.LAN:
        # On one LAN no race can be lost, but a LAN candidate on our link may be a look-alike: another home behind
        # the same carrier NAT with the same addresses (192.168.1.0/24 in both), whose router can lose the race,
        # and a peer that waits for a LAN candidate does not move (Strategy.may_move).
        log.info("%s's LAN candidate is on our link: Ready/Go, not early checks", peer)
    elif strategy.not_early is NotEarly.NEAR and told is not None and their_rtt is not None:
        log.info(
            "round trips to the server: ours %.2f ms, %s's %.2f ms: Ready/Go is as fast as early checks here",
            told / 1000,
            peer,
            their_rtt / 1000,
        )
    elif strategy.early_delay is not None and client.rtt is not None and their_rtt is not None:
        log.info(
            "round trips to the server: ours %.1f ms, %s's %.1f ms: both open our mappings now, and check after "
            "%.1f ms",
            client.rtt * 1000,
            peer,
            their_rtt / 1000,
            strategy.early_delay * 1000,
        )
    return strategy


def _log_mapped(peer: str, ours: Address | None, theirs: tuple[Address, ...], strategy: Strategy) -> None:
    """Say which mapped port is checked, by whom, and why nothing else is needed."""
    if theirs and not strategy.waits:
        log.info(
            "%s's router maps %s for it: we check it now (a mapped port lets anyone in: no prediction, no Ready/Go)",
            peer,
            ", ".join(format_address(c) for c in theirs),
        )
    elif ours is not None:
        log.info(
            "our router maps %s for us: %s checks it now, and we answer from there (checking ourselves only if no "
            "check comes)",
            format_address(ours),
            peer,
        )


def behind_one_nat(introduction: Introduction, mapped: Address | None, endpoint: StunEndpoint) -> tuple[bool, bool]:
    """Whether the other peer has our public address ``mapped`` (both behind one NAT), and if so whether a LAN
    candidate of theirs may be on one of our links (punch.peer.routes), so that its path likely beats the NAT's
    hairpin and is worth a short wait."""
    same_nat = mapped is not None and introduction.candidates[0][0] == mapped[0]
    lans = introduction.candidates[1:]
    if not same_nat or not lans:
        return same_nat, False
    table = routes.table_of(endpoint.fileno())
    if table is None or any(routes.on_link_in(table, host) is not False for host, _ in lans):
        return True, True
    log.info(
        "none of %s's LAN candidates (%s) is on a link of ours: our NAT's hairpin is nominated at once, no LAN wait",
        introduction.peer_id,
        ", ".join(format_address(c) for c in lans),
    )
    return True, False
