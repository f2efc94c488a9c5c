"""Answers cut to their cap (punch.rendezvous.replies): SOFTWARE goes first, then the end of the reason phrase."""

from __future__ import annotations

import pytest

from punch import SOFTWARE
from punch.rendezvous.replies import binding_allowance, fit, limit_for
from punch.stun import AttributeType, Message, MessageClass, Method, decode, encode, make_error, make_success

pytestmark = pytest.mark.unit

REQUEST = Message(Method.REGISTER, MessageClass.REQUEST, bytes(12), ((AttributeType.PEER_ID, "10"),))


def test_the_allowance_is_what_a_binding_reply_adds_to_a_header_only_request() -> None:
    # XOR-MAPPED-ADDRESS (12 bytes, 24 for IPv6), SOFTWARE (4 + the text, padded), FINGERPRINT (8)
    software = 4 + len(SOFTWARE) + (-len(SOFTWARE) % 4)
    assert binding_allowance(False) == 12 + software + 8
    assert binding_allowance(True) == 24 + software + 8
    assert limit_for(28, "127.0.0.1") == 28 + binding_allowance(False)
    assert limit_for(28, "::1") == 28 + binding_allowance(True)


def test_an_answer_that_fits_is_sent_whole() -> None:
    answer = make_error(REQUEST, 400, "short", ((AttributeType.SOFTWARE, SOFTWARE),))
    assert fit(answer, 1000, encode) == encode(answer)


def test_software_goes_first_then_the_end_of_the_reason_on_a_character_boundary() -> None:
    answer = make_error(REQUEST, 401, "é" * 40, ((AttributeType.SOFTWARE, SOFTWARE),))
    without_software = make_error(REQUEST, 401, "é" * 40)
    assert fit(answer, len(encode(without_software)), encode) == encode(without_software)
    cut = fit(answer, 60, encode)
    assert cut is not None
    assert len(cut) <= 60
    reason = decode(cut).error_code()
    assert reason is not None
    assert reason.code == 401
    assert reason.reason == "é" * (len(reason.reason))
    assert 0 < len(reason.reason) < 40
    assert len(encode(make_error(REQUEST, 401, "é" * (len(reason.reason) + 2)))) > 60  # cut no more than needed


def test_what_cannot_shrink_enough_is_not_sent() -> None:
    assert fit(make_error(REQUEST, 400, "reason"), 35, encode) is None  # header, ERROR-CODE, FINGERPRINT: 36
    success = make_success(REQUEST, ((AttributeType.REGISTRATION_TOKEN, bytes(16)),))
    assert fit(success, 40, encode) is None
