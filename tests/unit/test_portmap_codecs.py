"""punch.portmap's codecs: PCP (RFC 6887), NAT-PMP (RFC 6886) and the SSDP answer, byte for byte against the RFCs'
layouts (the answers built in tests/fake_router.py from the RFCs), and every way an answer is refused, with its exact
error."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from punch.portmap import natpmp, pcp, upnp
from punch.portmap.errors import Mismatch, NotSpoken, PortmapDecodeError
from punch.portmap.mapper import epoch_lost
from tests.fake_router import (
    natpmp_address_answer,
    natpmp_map_answer,
    natpmp_unsupported_version,
    pcp_header,
    pcp_map_answer,
)

pytestmark = pytest.mark.unit

NONCE = bytes(range(1, 13))
ASKED = pcp.MapData(NONCE, pcp.UDP, 5000, 5000, pcp.ANY_IPV4)


def test_a_pcp_map_request_is_laid_out_as_rfc_6887_says() -> None:
    request = pcp.encode_map("10.0.10.2", ASKED, 7200)
    assert len(request) == 24 + 36
    assert request[:8] == bytes([2, 1, 0, 0]) + (7200).to_bytes(4, "big")  # version, R=0 + MAP, reserved, lifetime
    assert request[8:24] == ipaddress.IPv6Address("::ffff:10.0.10.2").packed  # the client's address, IPv4-mapped
    assert request[24:36] == NONCE
    assert request[36:40] == bytes([17, 0, 0, 0])  # UDP, reserved
    assert request[40:44] == struct.pack("!HH", 5000, 5000)  # internal port, suggested external port
    assert request[44:60] == ipaddress.IPv6Address("::ffff:0.0.0.0").packed  # no preference (§11.1)
    assert pcp.encode_announce("10.0.10.2") == bytes([2, 0, 0, 0, 0, 0, 0, 0]) + request[8:24]


def test_a_pcp_map_answer_decodes_to_its_fields() -> None:
    answer = pcp.read_map(ASKED, pcp_map_answer(NONCE, 5000, 40000, "198.51.100.10", lifetime=120, epoch=77))
    assert (answer.opcode, answer.result, answer.lifetime, answer.epoch) == (1, 0, 120, 77)
    assert answer.map is not None
    assert (answer.map.external_ip, answer.map.external_port, answer.map.internal_port) == (
        "198.51.100.10",
        40000,
        5000,
    )


def test_pcp_options_are_framed_and_kept() -> None:
    option = struct.pack("!BBH", 0x81, 0, 5) + b"abcde" + bytes(3)  # PREFER_FAILURE-like, 5 bytes padded to 8
    answer = pcp.decode(pcp_map_answer(NONCE, 5000, 40000, options=option))
    assert answer.options == ((0x81, b"abcde"),)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x02\x81\x00", "PCP header: an answer is 24 bytes at least, got 3"),
        (pcp_header(1, 0, 0, 0) + bytes(1080), "PCP header: an answer is 1100 bytes at most, got 1104"),
        (pcp_header(1, 0, 0, 0) + bytes(38), "PCP header: an answer's length is a multiple of 4, got 62"),
        (b"\x03" + pcp_header(0, 0, 0, 0)[1:], "PCP header/version: expected 2, got 3"),
        (b"\x02\x01" + pcp_header(0, 0, 0, 0)[2:], "PCP header/R: the R bit is 0: a request, not an answer"),
        (pcp_header(1, 0, 0, 0) + bytes(12), "PCP MAP: MAP data is 36 bytes, 12 left"),
        (pcp_header(2, 0, 0, 0), "PCP header/opcode: 2 is neither MAP nor ANNOUNCE: not asked by us"),
        (pcp_map_answer(NONCE, 1, 2) + b"\x01\x00\x00\x08", "PCP option 1: 8 bytes (padded 8) declared, 0 left"),
        (
            pcp_map_answer(NONCE, 1, 2) + b"\x01\x00\x00\x08\x00\x00\x00\x00\x00",
            "PCP header: an answer's length is a multiple of 4, got 69",
        ),
    ],
)
def test_a_malformed_pcp_answer_is_refused_with_its_place(data: bytes, error: str) -> None:
    with pytest.raises(PortmapDecodeError) as raised:
        pcp.decode(data)
    assert str(raised.value) == error


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            pcp_map_answer(bytes(12), 5000, 40000),
            f"PCP MAP answer for another mapping nonce ({bytes(12).hex()}, ours {NONCE.hex()})",
        ),
        (pcp_map_answer(NONCE, 5001, 40000), "PCP MAP answer for protocol 17 port 5001, we asked 17 port 5000"),
        (
            pcp_map_answer(NONCE, 5000, 40000, protocol=6),
            "PCP MAP answer for protocol 6 port 5000, we asked 17 port 5000",
        ),
        (pcp_header(0, 0, 0, 0), "PCP answer for opcode 0, we asked MAP"),
    ],
)
def test_a_pcp_answer_to_another_request_is_not_ours(data: bytes, error: str) -> None:
    with pytest.raises(Mismatch) as raised:
        pcp.read_map(ASKED, data)
    assert str(raised.value) == error


def test_a_router_that_speaks_only_nat_pmp_or_another_pcp_version_says_so() -> None:
    with pytest.raises(NotSpoken, match=r"^the router speaks NAT-PMP, not PCP \(it answered: unsupported version\)$"):
        pcp.decode(natpmp_unsupported_version(0x01))
    old = b"\x01\x81\x00\x01" + pcp_header(1, 1, 0, 0)[4:]
    with pytest.raises(NotSpoken, match=r"^the router speaks PCP version 1, not 2 \(it answered UNSUPP_VERSION\)$"):
        pcp.decode(old)


def test_an_error_answer_with_only_the_header_is_still_an_answer() -> None:
    answer = pcp.read_map(ASKED, pcp_header(1, 2, 30, 5))
    assert (answer.result_name, answer.map) == ("NOT_AUTHORIZED", None)


def test_nat_pmp_requests_are_laid_out_as_rfc_6886_says() -> None:
    assert natpmp.encode_address_request() == b"\x00\x00"
    assert natpmp.encode_map(5000, 5001, 7200) == struct.pack("!BBHHHI", 0, 1, 0, 5000, 5001, 7200)
    assert natpmp.encode_map(5000, 0, 0) == bytes([0, 1, 0, 0, 0x13, 0x88, 0, 0, 0, 0, 0, 0])  # delete (§3.4)


def test_nat_pmp_answers_decode_to_their_fields() -> None:
    address = natpmp.read_address(natpmp_address_answer("198.51.100.10", epoch=9))
    assert (address.external_ip, address.epoch) == ("198.51.100.10", 9)
    mapped = natpmp.read_map(5000, natpmp_map_answer(5000, 40000, lifetime=3600, epoch=10))
    assert (mapped.internal_port, mapped.external_port, mapped.lifetime, mapped.epoch) == (5000, 40000, 3600, 10)
    refused = natpmp.read_map(5000, struct.pack("!BBHI", 0, 129, 2, 11))  # an error answer may stop after the epoch
    assert (refused.result_name, refused.external_port) == ("Not Authorized/Refused", 0)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x00\x80\x00", "NAT-PMP header: an answer is 8 bytes at least, got 3"),
        (b"\x01" + natpmp_address_answer()[1:], "NAT-PMP header/version: expected 0, got 1"),
        (b"\x00\x01" + natpmp_address_answer()[2:], "NAT-PMP header/opcode: 1 is a request's opcode, not an answer's"),
        (b"\x00\x82" + natpmp_address_answer()[2:], "NAT-PMP header/opcode: 130 answers opcode 2, never asked by us"),
        (natpmp_address_answer() + b"\x00", "NAT-PMP answer to opcode 0: expected 12 bytes, got 13"),
        (natpmp_map_answer(5000, 1)[:12], "NAT-PMP answer to opcode 1: expected 16 bytes, got 12"),
    ],
)
def test_a_malformed_nat_pmp_answer_is_refused_with_its_place(data: bytes, error: str) -> None:
    with pytest.raises(PortmapDecodeError) as raised:
        natpmp.decode(data)
    assert str(raised.value) == error


def test_a_nat_pmp_answer_to_another_request_is_not_ours() -> None:
    with pytest.raises(Mismatch, match=r"^NAT-PMP mapping answer for port 5001, we asked for 5000$"):
        natpmp.read_map(5000, natpmp_map_answer(5001, 40000))
    with pytest.raises(Mismatch, match=r"^NAT-PMP answer to opcode 0, we asked for a UDP mapping$"):
        natpmp.read_map(5000, natpmp_address_answer())
    with pytest.raises(NotSpoken, match=r"^the router speaks PCP, not NAT-PMP"):
        natpmp.decode(pcp_header(0, 1, 0, 0))


LOCATION = b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLocation: http://10.0.10.1:2189/rootDesc.xml\r\n\r\n"


def test_the_ssdp_answer_gives_the_description_url_on_the_router() -> None:
    assert upnp.read_location("10.0.10.1", LOCATION) == "http://10.0.10.1:2189/rootDesc.xml"
    assert upnp.encode_search().startswith(b"M-SEARCH * HTTP/1.1\r\n")
    assert b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" in upnp.encode_search()


@pytest.mark.parametrize(
    ("data", "kind", "error"),
    [
        (b"\xff\xfe", PortmapDecodeError, "SSDP answer: not ASCII text"),
        (
            b"HTTP/1.1 404 Not Found\r\n\r\n",
            PortmapDecodeError,
            "SSDP status line: expected HTTP/1.1 200, got 'HTTP/1.1 404 Not Found'",
        ),
        (b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n", PortmapDecodeError, "SSDP LOCATION: missing"),
        (
            LOCATION.replace(b"10.0.10.1:", b"10.0.10.9:"),
            Mismatch,
            "SSDP LOCATION 'http://10.0.10.9:2189/rootDesc.xml' is not an http URL on router 10.0.10.1",
        ),
        (
            LOCATION.replace(b"http:", b"file:"),
            Mismatch,
            "SSDP LOCATION 'file://10.0.10.1:2189/rootDesc.xml' is not an http URL on router 10.0.10.1",
        ),
        (
            LOCATION.replace(b"10.0.10.1:2189", b"[zz"),
            Mismatch,
            "SSDP LOCATION 'http://[zz/rootDesc.xml' is not an http URL on router 10.0.10.1",
        ),
    ],
)
def test_an_ssdp_answer_we_cannot_use_is_refused(data: bytes, kind: type[Exception], error: str) -> None:
    with pytest.raises(kind) as raised:
        upnp.read_location("10.0.10.1", data)
    assert str(raised.value) == error


@pytest.mark.parametrize(
    ("previous", "previous_at", "epoch", "now", "lost"),
    [
        (1000, 0.0, 1060, 60.0, False),  # both clocks ran a minute
        (1000, 0.0, 1061, 60.0, False),  # within the slack
        (1000, 0.0, 5, 60.0, True),  # the router's went back: it restarted
        (1000, 0.0, 1010, 60.0, True),  # it ran 10 s while we ran 60: it restarted meanwhile
        (1000, 0.0, 1200, 60.0, True),  # it ran far faster than ours
        (1000, 0.0, 999, 0.5, False),  # one second back is rounding (§8.5)
    ],
)
def test_a_router_that_lost_its_state_shows_in_its_epoch(
    previous: int, previous_at: float, epoch: int, now: float, lost: bool
) -> None:
    assert epoch_lost(previous, previous_at, epoch, now) is lost
