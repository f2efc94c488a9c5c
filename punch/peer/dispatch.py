"""The peer's socket hands each request to the first of its routes that takes it: the rendezvous client (the
server's Introduce, Go, Move, Notice), the current puncher (checks); and each indication to its own routes (the
carrier: relayed QUIC packets)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from punch.stun import Address, Message, MessageClass, describe, method_name
from punch.stun.protocol import format_address

log = logging.getLogger(__name__)

Route = Callable[[Message, Address], bool]  # handles a request and says True, or says False: not mine


class Dispatcher:
    """Routes the requests of one socket (a punch.stun.protocol.Handler) to its routes, in the order added."""

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._indications: list[Route] = []

    def __call__(self, message: Message, source: Address, data: bytes) -> None:
        if message.message_class is MessageClass.INDICATION:
            if not any(route(message, source) for route in self._indications):
                log.debug("ignored a %s from %s", describe(message), format_address(source))
            return
        if message.message_class is not MessageClass.REQUEST:
            log.debug("ignored a %s from %s", describe(message), format_address(source))
            return
        for route in self._routes:
            if route(message, source):
                return
        log.debug("ignored a %s from %s: nothing expects it now", method_name(message.method), format_address(source))

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes, in the order they are asked."""
        return tuple(self._routes)

    def add(self, route: Route) -> None:
        """Ask ``route`` after the routes already there."""
        self._routes.append(route)

    def add_indications(self, route: Route) -> None:
        """Ask ``route`` about indications."""
        self._indications.append(route)

    def replace(self, old: Route, new: Route) -> None:
        """Ask ``new`` where ``old`` was asked (a new puncher of the same session takes over its checks)."""
        self._routes[self._routes.index(old)] = new
