"""The relay across servers (punch.rendezvous.tickets): which peers get a ticket and the relay's address in their
Introduce, and how the relay admits a ticketed peer's indications and learns where it is."""

from __future__ import annotations

import logging

import pytest

from punch.rendezvous.registry import Match, Registry, Wish, pair_up
from punch.rendezvous.tickets import RelayEnds, relayed_here
from punch.stun import Address, AttributeType, Message
from punch.stun.wire import Introduction, KeyShare, ProtocolError

pytestmark = pytest.mark.unit

SHARE = KeyShare(bytes(32), bytes(64))
TEN: Address = ("198.51.100.10", 40000)  # 10 as its own server (west) sees it
FOURTEEN: Address = ("192.0.2.14", 40001)  # 14 as its own server (east) sees it
RELAY: Address = ("203.0.113.1", 3478)  # east, which makes the session
TEN_AT_EAST: Address = ("198.51.100.10", 61000)  # 10's symmetric NAT maps it anew toward east
STRANGER: Address = ("203.0.113.166", 5555)


def across(servers: tuple[str, str] = ("west", "east")) -> Match:
    """10 (registered at west) asked first, 14 (at east) completes the pair at east: east made the session."""
    registry = Registry()
    ten = registry.register("10", TEN, (), 30, now=0)
    fourteen = registry.register("14", FOURTEEN, (), 30, now=0)
    return pair_up(ten, Wish(SHARE, None, b"t"), fourteen, Wish(SHARE, None, b"T"), servers)


def test_the_server_that_makes_the_session_gives_a_ticket_to_the_peer_registered_elsewhere() -> None:
    match = relayed_here(across(), "east", RELAY)
    assert match.relay == RELAY
    assert (len(match.ticket_of("10")), match.ticket_of("14")) == (16, b"")
    (opener, to_opener), (prober, to_prober) = match.introductions()
    assert (opener.peer_id, to_opener.relay, to_opener.relay_ticket) == ("10", RELAY, match.ticket_of("10"))
    assert (prober.peer_id, to_prober.relay, to_prober.relay_ticket) == ("14", None, b"")  # east relays it: its own
    assert relayed_here(across(), "east", RELAY).ticket_of("10") != match.ticket_of("10")  # fresh each session


@pytest.mark.parametrize(
    ("servers", "relay"),
    [(("east", "east"), RELAY), (("", ""), RELAY), (("west", "east"), None)],
    ids=["both-here", "one-server", "no-address-to-name"],
)
def test_no_ticket_where_each_peers_own_server_relays_or_none_can_be_named(
    servers: tuple[str, str], relay: Address | None
) -> None:
    match = relayed_here(across(servers), "east", relay)
    assert (match.tickets, match.relay) == ((), None)
    assert [i.relay for _, i in match.introductions()] == [None, None]


def test_an_introduce_carries_the_relay_and_the_ticket_both_or_neither() -> None:
    match = relayed_here(across(), "east", RELAY)
    to_ten = match.introductions()[0][1]
    message = to_ten.to_message()
    assert message.address(AttributeType.RELAY_ADDRESS) == RELAY
    assert Introduction.from_message(message) == to_ten
    half = tuple(a for a in message.attributes if a[0] != AttributeType.RELAY_TICKET)
    with pytest.raises(ProtocolError) as error:
        Introduction.from_message(Message(message.method, message.message_class, message.transaction_id, half))
    assert str(error.value) == "Introduce has one of RELAY-ADDRESS and RELAY-TICKET without the other"


def test_a_ticketed_peer_is_admitted_with_its_ticket_only_and_reached_where_it_came_from(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="punch.rendezvous.tickets")
    match = relayed_here(across(), "east", RELAY)
    ten, fourteen = match.opener, match.prober
    ticket = match.ticket_of("10")
    ends = RelayEnds()
    assert ends.admit(match, ten, None, STRANGER) == "sent no relay ticket"
    assert ends.admit(match, ten, bytes(16), STRANGER) == "sent a wrong relay ticket"
    assert ends.admit(match, ten, ticket[:-1] + bytes((ticket[-1] ^ 1,)), STRANGER) == "sent a wrong relay ticket"
    assert ends.end(match, ten) is None  # nobody moved it: not opened yet
    assert ends.admit(match, ten, ticket, TEN_AT_EAST) is None
    assert ends.end(match, ten) == TEN_AT_EAST
    assert ends.admit(match, ten, ticket, TEN_AT_EAST) is None  # the same again: one log line, not two
    assert caplog.text.count("reaches us at 198.51.100.10:61000") == 1
    assert "relay: 10 (registered at server 'west') reaches us at 198.51.100.10:61000 for session" in caplog.text
    # Its NAT maps it anew (a restart): followed, with the ticket
    assert ends.admit(match, ten, ticket, (TEN_AT_EAST[0], 62000)) is None
    assert ends.end(match, ten) == (TEN_AT_EAST[0], 62000)
    # 14, registered at the relay, has no ticket: relayed from its registered endpoint only, as on one server
    assert ends.admit(match, fourteen, None, FOURTEEN) is None
    assert ends.admit(match, fourteen, ticket, STRANGER) == "is not its registered endpoint"
    assert ends.end(match, fourteen) is None


def test_the_ends_of_sessions_that_ended_are_forgotten() -> None:
    first, second = relayed_here(across(), "east", RELAY), relayed_here(across(), "east", RELAY)
    ends = RelayEnds()
    for match in (first, second):
        assert ends.admit(match, match.opener, match.ticket_of("10"), TEN_AT_EAST) is None
    assert len(ends) == 2
    ends.keep({second.session_id})
    assert len(ends) == 1
    assert (ends.end(first, first.opener), ends.end(second, second.opener)) == (None, TEN_AT_EAST)
