"""Messages between two peers over a punched path: each text encrypted, acknowledged, resent until it is, in order.

A Data request carries one text and its SEQUENCE number; the success response is the acknowledgement.
Texts are sent one at a time (stop and wait), so they arrive in order and exactly once (duplicates from
retransmission are acknowledged again but not delivered twice). A Close request says "I have nothing more
to send"; a session ends when our Close is acknowledged and the other side's Close has arrived.

The texts stay in the session they started in, whatever path carries them: when the path breaks and the peers
find a new one (punch.peer.session rejoins), :meth:`Channel.move` points the channel at it, and a text still
unacknowledged is sent again there (the SEQUENCE keeps it from arriving twice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from punch.errors import PeerError
from punch.peer.keys import RequestKey
from punch.peer.sealing import TAG_BYTES, Sealer
from punch.stun import (
    Address,
    AttributeType,
    Message,
    MessageClass,
    Method,
    make_success,
    method_name,
    new_transaction_id,
)
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import request

log = logging.getLogger(__name__)

# 16 sends over 14.4 s: delivered even when a round trip between the peers fails 6 times in 10
MESSAGE_POLICY = RetransmitPolicy(rto=0.2, backoff=2.0, max_rto=1.0, max_sends=16, last_wait=5.0)
MAX_TEXT_BYTES = 1200 - TAG_BYTES  # DATA-PAYLOAD holds at most 1200 bytes: the text and the AEAD tag


class Channel:
    """Reliable, ordered texts with one peer of one session."""

    def __init__(
        self,
        endpoint: StunEndpoint,
        me: str,
        peer: str,
        session_id: bytes,
        key: bytes,
        on_text: Callable[[str], None],
        *,
        policy: RetransmitPolicy = MESSAGE_POLICY,
        relay: Address | None = None,
        relay_key: RequestKey | None = None,
    ) -> None:
        self._endpoint = endpoint  # the socket of the chosen path (port prediction may choose another one)
        self._me = me
        self.peer = peer
        self._session_id = session_id
        self._sealer = Sealer(key)
        self._on_text = on_text
        self._policy = policy
        self._remote: Address | None = None
        self._relay = relay  # the server's address: when ``remote`` is this, the path is the server's relay
        # What signs the relay's own answers (a refusal: our request key), taken beside the session's key
        self._relay_key = relay_key
        self._next_send = 0
        self._next_receive = 0
        self.received: list[str] = []
        self.sent: list[str] = []
        self.remote_closed = asyncio.Event()
        self._moved = asyncio.Event()  # set (and replaced) each time the path moves
        self._recovering = False  # a new path is being sought: an unanswered text waits for it instead of failing

    def _identity(self) -> tuple[tuple[int, object], ...]:
        return ((AttributeType.PEER_ID, self._me), (AttributeType.SESSION_ID, self._session_id))

    def _request(self, method: Method, *attributes: tuple[int, object]) -> Message:
        return request(
            method,
            (AttributeType.PEER_ID, self._me),
            (AttributeType.SESSION_ID, self._session_id),
            *attributes,
        )

    @property
    def endpoint(self) -> StunEndpoint:
        """The socket the texts leave from."""
        return self._endpoint

    @property
    def remote(self) -> Address | None:
        """Where the texts go: the other peer's end of the path, or the relay."""
        return self._remote

    def use(self, endpoint: StunEndpoint) -> None:
        """Send from ``endpoint`` from now on (the socket a path was chosen over)."""
        self._endpoint = endpoint

    def point_at(self, remote: Address) -> None:
        """Send the next texts to ``remote`` (what is in flight finishes where it went)."""
        self._remote = remote

    def await_new_path(self) -> None:
        """A new path is being sought: a text left unanswered waits for it (:meth:`move`) instead of failing."""
        self._recovering = True

    def move(self, remote: Address) -> None:
        """Carry the session over a new path from now on (what is in flight is sent again there)."""
        self._remote = remote
        self._recovering = False
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def _deliver(self, message: Message, what: str) -> None:
        while True:
            if self._remote is None:
                raise PeerError("no path to send on")
            remote, moved = self._remote, self._moved
            relay_key = self._relay_key.key if remote == self._relay and self._relay_key is not None else None
            also = (relay_key,) if relay_key is not None else ()
            sending = asyncio.ensure_future(self._endpoint.request(message, remote, self._policy, answer_keys=also))
            waiting = asyncio.ensure_future(moved.wait())
            try:
                await asyncio.wait((sending, waiting), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                if not sending.done():  # the path moved: send again over the new one
                    sending.cancel()
                    await asyncio.gather(sending, return_exceptions=True)
            if sending.cancelled():
                log.info("%s: the path moved; sending it again via %s", what, format_address(self._remote or remote))
                continue
            try:
                response, _ = sending.result()
            except TransactionTimeout:
                if self._recovering:
                    log.info("%s unacknowledged; it waits for the new path", what)
                    await moved.wait()
                    continue
                raise PeerError(
                    f"{self.peer} stopped acknowledging ({what} unacknowledged after "
                    f"{self._policy.max_sends} sends to {format_address(remote)})"
                ) from None
            if response.message_class is not MessageClass.SUCCESS:
                error = response.error_code()
                detail = f": {error.code} {error.reason}" if error else ""
                if remote == self._relay:  # a peer never answers with an error: the relay refused
                    raise PeerError(f"the relay at {format_address(remote)} refused {what}{detail}")
                raise PeerError(f"{self.peer} refused {what}{detail}")
            return

    async def send_text(self, text: str) -> None:
        """Send one text and wait for its acknowledgement (PeerError if it never comes)."""
        payload = text.encode("utf-8")
        if len(payload) > MAX_TEXT_BYTES:
            raise PeerError(f"a message is {len(payload)} bytes; the limit is {MAX_TEXT_BYTES}")
        sequence = self._next_send
        self._next_send += 1
        log.info("message %d sent to %s (encrypted): %r", sequence, self.peer, text)
        transaction_id = new_transaction_id()
        sealed = self._sealer.seal(transaction_id, self._me, sequence, payload)
        data = Message(
            Method.DATA,
            MessageClass.REQUEST,
            transaction_id,
            (*self._identity(), (AttributeType.SEQUENCE, sequence), (AttributeType.DATA_PAYLOAD, sealed)),
        )
        await self._deliver(data, f"message {sequence}")
        self.sent.append(text)
        log.info("message %d acknowledged by %s", sequence, self.peer)

    async def close(self) -> None:
        """Tell the other side we have nothing more to send, and wait for its acknowledgement."""
        log.info("telling %s we are done sending", self.peer)
        await self._deliver(self._request(Method.CLOSE), "our Close")

    def on_request(self, message: Message, source: Address) -> bool:
        """Handle Data and Close of this session; False if the message is not ours."""
        if message.method not in (Method.DATA, Method.CLOSE):
            return False
        if (
            message.raw(AttributeType.SESSION_ID) != self._session_id
            or message.text(AttributeType.PEER_ID) != self.peer
        ):
            log.info(
                "ignored a %s from %s: not from %s in our session",
                method_name(message.method),
                format_address(source),
                self.peer,
            )
            return True
        if message.method == Method.CLOSE:
            if not self.remote_closed.is_set():
                log.info("%s is done sending", self.peer)
                self.remote_closed.set()
            self._endpoint.send(make_success(message, self._identity()), source)
            return True
        sequence = message.integer(AttributeType.SEQUENCE)
        payload = message.raw(AttributeType.DATA_PAYLOAD)
        if sequence is None or payload is None or sequence > self._next_receive:
            log.info("ignored a malformed or out-of-order message from %s", format_address(source))
            return True
        if sequence == self._next_receive:
            plain = self._sealer.open(message.transaction_id, self.peer, sequence, payload)
            if plain is None:
                log.info(
                    "ignored message %d from %s: it does not decrypt with our session key",
                    sequence,
                    format_address(source),
                )
                return True
            text = plain.decode("utf-8", "replace")
            self._next_receive += 1
            self.received.append(text)
            log.info("message %d received from %s: %r", sequence, self.peer, text)
            self._on_text(text)
        else:
            log.debug("duplicate of message %d from %s; acknowledged again", sequence, self.peer)
        self._endpoint.send(make_success(message, self._identity()), source)
        return True
