"""Who the other peer is: each introduction's identity key judged against what we pinned, what we know, or (a session
for anyone, punch.api.accept) the keys we allow; and the known-peers file written on first contact.

A key we do not accept ends the session's hope of that peer before anything of it is taken (punch.peer.session): its
session key is never added, so nothing of that session is even checked. The verdicts themselves are
punch.identity.known_peers' (:func:`judge`, :func:`judge_allowed`).
"""

from __future__ import annotations

import asyncio
import logging

from punch.identity.fingerprint import fingerprint
from punch.identity.known_peers import KnownPeers, judge, judge_allowed
from punch.stun.wire import Introduction

log = logging.getLogger(__name__)


class Trust:
    """The keys a run accepted, by peer ID, the last key presented, and why the last one was refused (if it was)."""

    def __init__(
        self, known_peers: KnownPeers | None, pin: str | None = None, allowed: frozenset[str] | None = None
    ) -> None:
        self._known_peers = known_peers
        self._pin = pin
        self._allowed = allowed
        self._met: dict[str, str] = {}  # peer ID -> the fingerprint of the key we accepted it with
        self.refused: str | None = None  # why we refused the other peer's key, or its key share
        self.presented: str | None = None  # the fingerprint of the key the latest introduction carried

    def accepts(self, introduction: Introduction) -> bool:
        """Whether the introduced peer's key is the one we pinned, knew it by, or allow (or we meet it for the first
        time); else :attr:`refused` says why, in a log line too."""
        peer, presented = introduction.peer_id, fingerprint(introduction.public_key)
        known = self._met.get(peer)
        if known is None and self._allowed is not None:  # a session for anyone: one of the keys allowed
            verdict = judge_allowed(peer, presented, self._allowed)
        else:
            known_peers = self._known_peers
            found = known_peers.lookup(peer) if known_peers is not None and known is None else None
            where = known_peers.where(peer) if known_peers is not None else "met earlier in this run"
            verdict = judge(peer, presented, self._pin, known or (found[0] if found else None), where)
        self.presented = presented
        if not verdict.accepted:
            self.refuse(verdict.reason)
            return False
        if peer not in self._met:
            log.info("%s", verdict.reason)
        self._met[peer] = presented
        return True

    def refuse(self, why: str) -> None:
        """Refuse the introduced peer for ``why`` (also a key share that does not check out)."""
        self.refused = why
        log.warning("%s", why)

    def forgive(self) -> None:
        """Forget the last refusal: a session for anyone waits for the next peer."""
        self.refused = None

    async def remember(self, peer: str) -> None:
        """Write the key we accepted ``peer`` with into the known-peers file if it is new there (in a thread: the file
        is synced)."""
        known_peers, presented = self._known_peers, self._met.get(peer)
        if known_peers is None or presented is None:
            return
        found = known_peers.lookup(peer)
        if found is not None and found[0] == presented:
            return
        await asyncio.to_thread(known_peers.remember, peer, presented)
        log.info("remembered %s's key %s in %s", peer, presented, known_peers.path)
