"""The server's relay: Data and Close of an introduced session forwarded between its two peers, and their answers.

The relay fallback, for peers that cannot punch a direct path. A Data or Close request of an introduced session, sent
to the server by one of its two peers from its registered endpoint, is forwarded to the other peer; the answer goes
back the same way, once, and only from that peer. Each session has a budget (punch.rendezvous.relay): what exceeds
it is dropped, counted, and logged once per session; once the total is used, requests get 486. Well-formed relayed
datagrams are read from their bytes (punch.rendezvous.relayed), with the same checks, counters and log lines as the
general path.

:class:`Relayer` is the part of punch.rendezvous.server that does this; it sends on the server's primary endpoint,
and hands its one answer of its own, the 486, back to the server, which caps every answer (punch.rendezvous.replies).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from punch.rendezvous.ratelimit import RateLimiter
from punch.rendezvous.registry import Registration, Registry
from punch.rendezvous.relay import Refusal, RelayBudget, RelayLedger, RelayTable, Waiting
from punch.rendezvous.relayed import ANSWER_TYPES, REQUEST_TYPES, is_answer, parse_request
from punch.stun import Address, AttributeType, Message, MessageClass, Method, method_name
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.wire import ProtocolError, required_peer_id, required_session

log = logging.getLogger(__name__)

# Answers a request with an error, capped to the request's size and signed with the sender's request key: (request,
# source, request's size, code, reason, sender).
Refuse = Callable[[Message, Address, int, int, str, str], None]


class Relayer:
    """Forwards a session's Data/Close and their answers between its two peers, within the session's budget.

    ``now`` and ``limiter`` are the server's (its clock and per-source rate limit); ``refuse`` sends the server's
    error answer. :meth:`start` puts the fast paths on the endpoint the relay sends from.
    """

    def __init__(
        self,
        registry: Registry,
        budget: RelayBudget | None,
        *,
        now: Callable[[], float],
        limiter: RateLimiter | None,
        refuse: Refuse,
    ) -> None:
        self._registry = registry
        self._now = now
        self._limiter = limiter
        self._refuse = refuse
        self._table = RelayTable()
        self._ledger = RelayLedger(budget or RelayBudget())
        self._endpoint: StunEndpoint | None = None

    @property
    def endpoint(self) -> StunEndpoint:
        if self._endpoint is None:
            raise RuntimeError("relay is not started")
        return self._endpoint

    def start(self, endpoint: StunEndpoint) -> None:
        """Relay through ``endpoint``, with the fast paths for well-formed relayed requests and answers on it."""
        self._endpoint = endpoint
        for kind in REQUEST_TYPES:
            endpoint.fast_paths[kind] = self.on_relayed_request
        for kind in ANSWER_TYPES:
            endpoint.fast_paths[kind] = self.on_relayed_answer

    def on_relay(self, message: Message, source: Address, data: bytes) -> None:
        """Forward a Data/Close of an introduced session to the other peer (the relay fallback).

        Only a session exists for two peers that both asked for each other (Connect), and only its two peers, from
        their registered endpoints, are relayed, within the session's budget (punch.rendezvous.relay). What is relayed
        is signed with the session's key, which only the two peers hold (punch.identity.agreement): the relay can
        neither read nor forge it, and the receiving peer drops what is not signed so.
        """
        sender = required_peer_id(message)
        session_id = required_session(message)
        match = self._registry.session(session_id)
        pair = (match.opener, match.prober) if match else ()
        peers = {r.peer_id: r for r in pair}
        if sender not in peers or peers[sender].observed != source:
            raise ProtocolError(f"{sender} at {format_address(source)} is not in this session")
        other = next(r for r in pair if r.peer_id != sender)
        self._forward(Method(message.method), message.transaction_id, sender, other, session_id, data, source)

    def _forward(
        self,
        method: Method,
        transaction_id: bytes,
        sender: str,
        other: Registration,
        session_id: bytes,
        data: bytes,
        source: Address,
    ) -> None:
        """Charge a checked Data/Close to its session and send it on to ``other`` (486 once the total is used)."""
        refusal = self._over_budget(session_id, len(data), f"{sender} -> {other.peer_id}")
        if refusal is Refusal.QUOTA:  # for good: say so (a datagram over the rate is dropped; a retry gets through)
            total = self._ledger.budget.total
            request = Message(method, MessageClass.REQUEST, transaction_id, ((AttributeType.SESSION_ID, session_id),))
            self._refuse(request, source, len(data), 486, f"Relay quota reached: {total} bytes per session", sender)
        if refusal is not None:
            return
        destination = self._registry.lookup(other.peer_id, self._now())
        target = destination.observed if destination else other.observed
        if self._table.remember(transaction_id, source, self._now(), target, session_id):
            log.info("relaying %s from %s to %s", method_name(method), sender, other.peer_id)
        self.endpoint.counters["relayed-request"] += 1
        self.endpoint.send_bytes(data, target)

    def on_relayed_request(self, data: bytes, source: Address) -> bool:
        """The fast path of :meth:`on_relay` (punch.rendezvous.relayed): a well-formed Data/Close of one of a
        session's two peers from its registered endpoint, read from its bytes, with the same checks,
        rate limit, budget and counters. False hands anything else to the general path, which answers or counts
        it as before."""
        request = parse_request(data)
        match = self._registry.session(request.session_id) if request else None
        if request is None or match is None:
            return False
        if match.opener.peer_id == request.peer_id:
            me, other = match.opener, match.prober
        elif match.prober.peer_id == request.peer_id:
            me, other = match.prober, match.opener
        else:
            return False
        if me.observed != source:
            return False
        self.endpoint.counters["request"] += 1
        if self._limiter is not None and not self._limiter.allow(source[0], self._now()):
            self.endpoint.counters["rate-limited"] += 1
            return True
        self._forward(request.method, data[8:20], request.peer_id, other, request.session_id, data, source)
        return True

    def on_relayed_answer(self, data: bytes, source: Address) -> bool:
        """The fast path of :meth:`relay_back` for a well-formed success answer to a relayed request."""
        waiting = self._table.waiting(data[8:20])
        if waiting is None or waiting.responder != source or not is_answer(data):
            return False
        self._relay_back_checked(data[8:20], waiting, data)
        return True

    def relay_back(self, message: Message, source: Address, data: bytes) -> None:
        """Forward the answer to a relayed request to its requester: once, and only from where the request went."""
        waiting = self._table.waiting(message.transaction_id)
        if waiting is None:
            self.endpoint.counters["unmatched-response"] += 1
            return
        if waiting.responder != source:
            self.endpoint.counters["relay-wrong-responder"] += 1
            return
        self._relay_back_checked(message.transaction_id, waiting, data)

    def _relay_back_checked(self, transaction_id: bytes, waiting: Waiting, data: bytes) -> None:
        if self._over_budget(waiting.session_id, len(data), f"answer to {format_address(waiting.requester)}"):
            return
        self._table.pop(transaction_id)
        self.endpoint.counters["relayed-response"] += 1
        self.endpoint.send_bytes(data, waiting.requester)

    def _over_budget(self, session_id: bytes, size: int, what: str) -> Refusal | None:
        """Charge a relayed datagram to its session; over budget it is counted, and logged once per session."""
        ledger = self._ledger
        refusal = ledger.charge(session_id, size, self._now())
        if len(ledger) > 2 * len(self._registry.sessions) + 64:
            ledger.keep(self._registry.sessions)  # sessions end with their peers' registrations
        if refusal is None:
            return None
        self.endpoint.counters[refusal.value] += 1
        if ledger.first(session_id, refusal):
            budget, session = ledger.budget, session_id.hex()[:8]
            if refusal is Refusal.QUOTA:
                log.warning(
                    "relay: session %s has used %d of its %d bytes (%s, %d bytes, does not fit); nothing more is "
                    "relayed for it: requests get 486 (logged once per session)",
                    session,
                    ledger.used(session_id),
                    budget.total,
                    what,
                    size,
                )
            else:
                log.warning(
                    "relay: session %s is over its rate of %g bytes/s (%s, %d bytes); what exceeds it is dropped "
                    "(logged once per session)",
                    session,
                    budget.rate,
                    what,
                    size,
                )
        return refusal
