"""`punch probe`: discover how the NAT in front of us behaves, with the tests of RFC 5780 §4.

Needs a server started with ``--alternate`` (two addresses, two ports). Mapping (§4.3): is the public
endpoint the same toward the server's other address, and toward its other port? Filtering (§4.4), on a fresh
socket that has only talked to the primary address: does an answer come back from the other address and port
(CHANGE-REQUEST change IP and port), or from the other port only? Hairpinning (§4.5): does a packet from a second
local socket to our own public endpoint come back in?
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from punch.errors import PeerError
from punch.stun import CHANGE_IP, CHANGE_PORT, Address, AttributeType, Message, MessageClass, Method
from punch.stun.protocol import StunEndpoint, format_address, host_candidates, open_endpoint
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import request

log = logging.getLogger(__name__)

# A filtering test passes by getting no answer, so its wait bounds the probe's length: about 2 s each.
PROBE_POLICY = RetransmitPolicy(rto=0.25, max_rto=1.0, max_sends=4, last_wait=2.0)

CLASSIC_NAMES = {  # RFC 3489's names, still what most people say (RFC 4787 §3 explains why they are too coarse)
    ("endpoint-independent", "endpoint-independent"): "full cone",
    ("endpoint-independent", "address-dependent"): "restricted cone",
    ("endpoint-independent", "address-and-port-dependent"): "port-restricted cone",
}


@dataclass(frozen=True, slots=True)
class NatBehaviour:
    """What the probe found, in RFC 4787 terms."""

    local: Address
    mapped: Address
    other_address: Address
    mapping: str
    filtering: str
    hairpinning: bool

    @property
    def nat(self) -> str:
        """The classic (RFC 3489) name: full cone, restricted cone, port-restricted cone, symmetric, or none."""
        if self.mapped == self.local:
            return "no NAT"
        return CLASSIC_NAMES.get((self.mapping, self.filtering), "symmetric")


class _Inbox:
    """Requests that reach a probe socket (only the hairpinning test expects one)."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()

    def __call__(self, message: Message, source: Address, data: bytes) -> None:
        if message.message_class is MessageClass.REQUEST:
            self.arrived.set()


async def _binding(
    endpoint: StunEndpoint, server: Address, policy: RetransmitPolicy, change: int = 0
) -> tuple[Message, Address] | None:
    attributes = ((AttributeType.CHANGE_REQUEST, change),) if change else ()
    try:
        response, source = await endpoint.request(request(Method.BINDING, *attributes), server, policy)
    except TransactionTimeout:
        return None
    if response.message_class is MessageClass.ERROR:
        error = response.error_code()
        raise PeerError(
            f"the server refused a Binding request: {error.code if error else '?'} {error.reason if error else ''}"
        )
    return response, source


def _mapped(answer: tuple[Message, Address] | None, what: str) -> Address:
    if answer is None:
        raise PeerError(f"no answer to {what}; is `punch server --alternate ...` running and reachable?")
    mapped = answer[0].address(AttributeType.XOR_MAPPED_ADDRESS)
    if mapped is None:
        raise PeerError(f"the answer to {what} lacks XOR-MAPPED-ADDRESS")
    return mapped


async def probe(
    server: Address, bind: Address = ("0.0.0.0", 0), policy: RetransmitPolicy = PROBE_POLICY
) -> NatBehaviour:
    """Run the RFC 5780 mapping, filtering and hairpinning tests against ``server``."""
    inbox = _Inbox()
    main = await open_endpoint(inbox, bind)
    fresh = await open_endpoint(_Inbox(), (bind[0], 0))
    second = await open_endpoint(_Inbox(), (bind[0], 0))
    try:
        local = host_candidates(main.local_address, server)[0]
        first = await _binding(main, server, policy)
        mapped = _mapped(first, f"a Binding request to {format_address(server)}")
        assert first is not None
        other = first[0].address(AttributeType.OTHER_ADDRESS)
        if other is None:
            raise PeerError(
                f"the server at {format_address(server)} gives no OTHER-ADDRESS; start it with --alternate IP:PORT"
            )
        log.info(
            "test I: %s sees us at %s; its other address is %s",
            format_address(server),
            format_address(mapped),
            format_address(other),
        )
        mapping = await _mapping(main, server, other, mapped, policy)
        filtering = await _filtering(fresh, server, policy)
        second.send(request(Method.BINDING), mapped)
        try:
            await asyncio.wait_for(inbox.arrived.wait(), policy.total())
            hairpinning = True
        except TimeoutError:
            hairpinning = False
        log.info(
            "hairpinning: a packet from another local socket to %s %s",
            format_address(mapped),
            "came back in" if hairpinning else "never arrived",
        )
        return NatBehaviour(local, mapped, other, mapping, filtering, hairpinning)
    finally:
        for endpoint in (main, fresh, second):
            await endpoint.close()


async def _mapping(
    endpoint: StunEndpoint, server: Address, other: Address, mapped: Address, policy: RetransmitPolicy
) -> str:
    """RFC 5780 §4.3: the public endpoint toward (other IP, same port), then toward (other IP, other port)."""
    toward_other_ip = _mapped(await _binding(endpoint, (other[0], server[1]), policy), "test II (other address)")
    log.info("test II: toward %s:%d we are %s", other[0], server[1], format_address(toward_other_ip))
    if toward_other_ip == mapped:
        return "endpoint-independent"
    toward_other_port = _mapped(await _binding(endpoint, other, policy), "test III (other address and port)")
    log.info("test III: toward %s we are %s", format_address(other), format_address(toward_other_port))
    return "address-dependent" if toward_other_port == toward_other_ip else "address-and-port-dependent"


async def _filtering(endpoint: StunEndpoint, server: Address, policy: RetransmitPolicy) -> str:
    """RFC 5780 §4.4, on a socket that has talked to the primary address only."""
    _mapped(await _binding(endpoint, server, policy), "filtering test I")
    if await _binding(endpoint, server, policy, CHANGE_IP | CHANGE_PORT) is not None:
        log.info("filtering test II: an answer from the other address and port got in")
        return "endpoint-independent"
    log.info("filtering test II: no answer from the other address and port")
    if await _binding(endpoint, server, policy, CHANGE_PORT) is not None:
        log.info("filtering test III: an answer from the other port got in")
        return "address-dependent"
    log.info("filtering test III: no answer from the other port either")
    return "address-and-port-dependent"
