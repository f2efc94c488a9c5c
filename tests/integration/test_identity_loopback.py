"""Peers know each other by their keys, not by what the server says (punch.identity, punch.peer.session): on
loopback, with the server started in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from punch.api import Connection, run_peer
from punch.errors import PeerError
from punch.identity.keyfile import Identity
from punch.identity.known_peers import KnownPeers
from punch.peer.config import PeerConfig, PeerResult
from punch.rendezvous.server import RendezvousServer
from punch.stun import AttributeType, Method, encode
from punch.stun.wire import request
from tests.integration.conftest import LogLine, peer_config, texts

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def peer(server: RendezvousServer, me: str, other: str, identity: Identity, known: Path, **more: object) -> PeerConfig:
    return peer_config(server, me, other, identity=identity, known_peers=KnownPeers(known), **more)


async def meet(first: PeerConfig, second: PeerConfig) -> tuple[PeerResult, PeerResult]:
    return await asyncio.gather(
        run_peer(first, texts(f"hello from {first.peer_id}"), lambda _: None),
        run_peer(second, texts(f"hello from {second.peer_id}"), lambda _: None),
    )


async def refused(config: PeerConfig, impostor: PeerConfig) -> tuple[str, PeerResult]:
    """``config`` asks for the impostor's ID: its error and result (the impostor is stopped then)."""
    session = await Connection.open(config)
    faking = asyncio.create_task(run_peer(impostor, texts("I am the real one"), lambda _: None))
    with pytest.raises(PeerError) as error:
        await session.run(texts("secret for the real one"), lambda _: None)
    await session.close()
    faking.cancel()
    await asyncio.gather(faking, return_exceptions=True)
    return str(error.value), session.result


async def test_peers_meet_remember_each_others_keys_and_refuse_an_impostor_later(
    server: RendezvousServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's story: 10 and 14 meet; 14 leaves; another machine registers as 14 (the ID is free again) and
    10, asking for 14 again, refuses it: exit 1, nothing of the impostor's taken, and the message says which key
    was expected, which came, and how to accept it."""
    caplog.set_level(logging.INFO, logger="punch")
    ten, real, fake = Identity.generate(), Identity.generate(), Identity.generate()
    known10, known14 = tmp_path / "known10", tmp_path / "known14"
    first = await meet(peer(server, "10", "14", ten, known10), peer(server, "14", "10", real, known14))
    assert [r.peer_key for r in first] == [real.fingerprint, ten.fingerprint]
    assert KnownPeers(known10).lookup("14") == (real.fingerprint, 2)
    assert KnownPeers(known14).lookup("10") == (ten.fingerprint, 2)
    assert "first contact with 14: trusting its key" in caplog.text
    why, result = await refused(
        peer(server, "10", "14", ten, known10, timeout=5.0), peer(server, "14", "10", fake, tmp_path / "fake")
    )
    assert why == (
        f"14 presented the key {fake.fingerprint}, but we know 14 by {real.fingerprint} ({known10} line 2): it may "
        f"be an impostor. If 14 really has a new key, accept it with `--to-key {fake.fingerprint}` (that replaces "
        "the line), or delete that line"
    )
    assert (result.error, result.peer_key, result.received, result.path) == (why, fake.fingerprint, [], None)
    assert KnownPeers(known10).lookup("14") == (real.fingerprint, 2)  # unchanged
    # The real 14 comes back: accepted as before
    again = await meet(peer(server, "10", "14", ten, known10), peer(server, "14", "10", real, known14))
    assert [r.received for r in again] == [["hello from 14"], ["hello from 10"]]


async def test_a_pinned_key_is_accepted_and_any_other_refused_even_on_first_contact(
    server: RendezvousServer, tmp_path: Path
) -> None:
    ten, real, fake = Identity.generate(), Identity.generate(), Identity.generate()
    pinned = peer(server, "10", "14", ten, tmp_path / "known10", pin=real.fingerprint)
    results = await meet(pinned, peer(server, "14", "10", real, tmp_path / "known14"))
    assert results[0].received == ["hello from 14"]
    why, result = await refused(
        dataclasses.replace(pinned, known_peers=KnownPeers(tmp_path / "empty"), timeout=5.0),
        peer(server, "14", "10", fake, tmp_path / "fake"),
    )
    assert why == f"14 presented the key {fake.fingerprint}, not the pinned {real.fingerprint}: refused"
    assert result.received == []
    assert KnownPeers(tmp_path / "empty").lookup("14") is None


async def test_a_peer_named_by_its_fingerprint_is_pinned_to_it(server: RendezvousServer, tmp_path: Path) -> None:
    """A peer started without --id registers under its fingerprint; --to FINGERPRINT names and pins it at once."""
    ten, fourteen = Identity.generate(), Identity.generate()
    results = await meet(
        peer(server, ten.fingerprint, fourteen.fingerprint, ten, tmp_path / "a", pin=fourteen.fingerprint),
        peer(server, fourteen.fingerprint, ten.fingerprint, fourteen, tmp_path / "b", pin=ten.fingerprint),
    )
    assert [r.received for r in results] == [[f"hello from {fourteen.fingerprint}"], [f"hello from {ten.fingerprint}"]]


async def test_nobody_registers_a_fingerprint_as_its_id_but_the_key_it_names(server: RendezvousServer) -> None:
    owner, squatter = Identity.generate(), Identity.generate()
    config = peer_config(server, owner.fingerprint, "x", identity=squatter)
    with pytest.raises(
        PeerError, match=r"the server refused our registration: 400 ID .* is a fingerprint: only the key"
    ):
        await run_peer(config, texts(), lambda _: None)


async def test_a_check_under_another_key_is_dropped_and_counted(
    server: RendezvousServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that knows the session (its ID, the endpoints: the server knows all that) but not its key: its checks,
    signed under any other key, never reach the puncher; the session goes on."""
    ten, fourteen = Identity.generate(), Identity.generate()
    session = await Connection.open(peer(server, "10", "14", ten, tmp_path / "a"))
    caplog.set_level(logging.INFO, logger="punch")
    introduced = LogLine("introduced to 14")
    logging.getLogger("punch.peer.client").addHandler(introduced)

    async def forger() -> None:
        await asyncio.wait_for(introduced.seen.wait(), 5)
        [match] = server.registry.sessions.values()
        forged = request(Method.BINDING, (AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, match.session_id))
        target = match.opener.observed if match.opener.peer_id == "10" else match.prober.observed
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        transport.sendto(encode(forged, integrity_sha256_key=bytes(32)), target)
        transport.close()

    try:
        other = peer(server, "14", "10", fourteen, tmp_path / "b")
        await asyncio.gather(
            session.run(texts("hi"), lambda _: None), run_peer(other, texts("hi"), lambda _: None), forger()
        )
    finally:
        logging.getLogger("punch.peer.client").removeHandler(introduced)
        await session.close()
    assert session.result.dropped.get("bad-integrity", 0) == 1
    assert session.result.received == ["hi"]
