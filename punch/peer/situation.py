"""What a peer knows when an introduction arrives, and the strategy it makes of it (punch.peer.strategy.decide), with
a log line for each decision a student would ask about: why early checks, why Ready/Go, why no LAN wait, why check
from the main socket before predicting ports, who checks a mapped port."""

from __future__ import annotations

import logging

from punch.peer import routes
from punch.peer.client import RendezvousClient
from punch.peer.predict import PredictConfig, choose_plan
from punch.peer.puncher import PunchTimings
from punch.peer.strategy import NotEarly, Plan, Situation, Strategy, decide, mapped_candidates, mapped_plan, plan
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
    chosen = mapped_plan(ours is not None, bool(theirs), plan(client.mapping, introduction.mapping, introduction.role))
    if chosen is not Plan.MAPPED:  # (choose_plan says why, and leaves prediction out where it is off)
        chosen = choose_plan(predict, client.mapping, introduction)
    same_nat, lan_on_link = behind_one_nat(introduction, client.mapped, endpoint)
    told, their_rtt = client.told_rtt_us, introduction.rtt_us
    strategy = decide(
        Situation(
            plan=chosen,
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
            reflexive_enabled=predict.reflexive,
        )
    )
    peer = introduction.peer_id
    if strategy.plan is Plan.MAPPED:
        _log_mapped(peer, ours, theirs, strategy)
    elif strategy.plan in (Plan.OPEN, Plan.SPRAY):
        untimed = predict.reflexive and (client.rtt is None or their_rtt is None)
        _log_prediction(strategy, peer, introduction.candidates[0], predict.sockets, untimed)
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


def _log_prediction(strategy: Strategy, peer: str, their_public: Address, sockets: int, untimed: bool) -> None:
    """What the two sides of a symmetric NAT and a cone do, and why (punch.peer.reflexive); ``untimed``: we would
    check from our main socket first but lack a round trip to time it."""
    if strategy.plan is Plan.SPRAY and strategy.reflexive_first:
        log.info(
            "%s's NAT maps endpoint-dependently, ours does not: %s checks from its main socket first, from a port "
            "we cannot know; our low-TTL probes open our NAT toward %s, so if it filters by address at most those "
            "checks get in and we answer the port they came from (peer-reflexive); we spray only if %s says Go",
            peer,
            peer,
            their_public[0],
            peer,
        )
    elif strategy.plan is Plan.SPRAY:
        log.info(
            "port prediction: %s's NAT maps endpoint-dependently, ours does not; %s opens many mappings, we spray",
            peer,
            peer,
        )
    elif strategy.reflexive_delay is not None:
        log.info(
            "our NAT maps endpoint-dependently, %s's does not: our checks from our main socket leave from a new port "
            "of our NAT, and if %s's NAT filters by address at most they get in and %s answers that port "
            "(peer-reflexive); checking that first, %.1f ms after the introduction (once %s's probe has opened its "
            "NAT toward us); if nothing comes back within %.0f ms we open %d mappings and %s sprays",
            peer,
            peer,
            peer,
            strategy.reflexive_delay * 1000,
            peer,
            strategy.reflexive_window * 1000,
            sockets,
            peer,
        )
    else:
        log.info(
            "port prediction: our NAT maps endpoint-dependently, %s's does not; we open %d mappings, %s sprays%s",
            peer,
            sockets,
            peer,
            f" (not checking from our main socket first: without both round trips to the server we cannot time it "
            f"after {peer}'s probe)"
            if untimed
            else "",
        )
