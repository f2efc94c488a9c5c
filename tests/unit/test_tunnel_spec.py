"""What a user asks to forward and allows (punch.tunnel.spec): read strictly, bad values named with the fix."""

from __future__ import annotations

import pytest

from punch.errors import UsageError
from punch.tunnel.spec import Forward, Target, parse_allow, parse_forward

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8080:127.0.0.1:80", Forward(8080, Target("tcp", "127.0.0.1", 80))),
        ("udp:5353:10.0.0.1:53", Forward(5353, Target("udp", "10.0.0.1", 53))),
        ("tcp:2222:[2001:db8::1]:22", Forward(2222, Target("tcp", "2001:db8::1", 22))),
        ("9000:db.local:5432", Forward(9000, Target("tcp", "db.local", 5432))),
    ],
)
def test_forward_specs(value: str, expected: Forward) -> None:
    assert parse_forward(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "8080",
            "--forward '8080': expected [udp:]LOCAL_PORT:HOST:PORT, e.g. 8080:127.0.0.1:80 or udp:5353:127.0.0.1:53",
        ),
        ("0:127.0.0.1:80", "--forward '0:127.0.0.1:80': local port '0' is not a port; give a number from 1 to 65535"),
        (
            "8080:127.0.0.1:http",
            "--forward '8080:127.0.0.1:http': port 'http' is not a port; give a number from 1 to 65535",
        ),
        ("8080:2001:db8::1:80", "--forward '8080:2001:db8::1:80': write an IPv6 host in brackets, [ADDRESS]:PORT"),
    ],
)
def test_bad_forward_specs_name_the_fix(value: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_forward(value)
    assert str(error.value) == message


def test_allow_specs() -> None:
    assert parse_allow("127.0.0.1:80") == Target("tcp", "127.0.0.1", 80)
    assert parse_allow("udp:127.0.0.1:53") == Target("udp", "127.0.0.1", 53)
    assert str(Target("tcp", "2001:db8::1", 22)) == "tcp:[2001:db8::1]:22"
