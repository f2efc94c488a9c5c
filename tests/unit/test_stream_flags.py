"""The flags of STUN over TCP and TLS (punch.cli.streams): what `punch server` listens on and how `punch peer`
reaches its server, and the one-line errors that name the flag and the fix (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from punch import cli
from punch.cli.peer import peer_config
from punch.cli.streams import reach_of, stream_listen
from punch.errors import UsageError
from punch.peer.reach import Reach, TlsServer, Via
from punch.rendezvous.streams import StreamListen
from punch.stun.tls import format_sha256, parse_sha256
from tests.certificates import Authority

pytestmark = pytest.mark.unit

SERVER = ("203.0.113.1", 3478)
PIN = bytes(range(32))


def reach(*flags: str) -> Reach:
    args = cli.build_parser().parse_args(["peer", "--server", "203.0.113.1", "--id", "a", "--to", "b", *flags])
    return reach_of(args, SERVER)


def listen(*flags: str) -> StreamListen:
    return stream_listen(cli.build_parser().parse_args(["server", *flags]), ("0.0.0.0", 3478))


def test_by_default_a_peer_tries_udp_then_tcp_at_the_servers_own_address() -> None:
    assert reach() == Reach(via=Via.AUTO, tcp=True, tcp_at=None, tls=None)


def test_a_peer_takes_the_servers_tcp_and_tls_addresses_a_ca_and_a_pin() -> None:
    pem = Path(__file__)  # any file: the CA file is read when connecting
    got = reach("--server-tcp", "203.0.113.1:80", "--server-tls", "stun.example.net:443", "--server-ca", str(pem),
                "--server-pin", f"sha256 Fingerprint={format_sha256(PIN)}")  # fmt: skip
    assert got == Reach(tcp_at=("203.0.113.1", 80), tls=TlsServer("stun.example.net", 443, pem, PIN))
    assert reach("--server-tls", "[2001:db8::1]", "--server-tcp", "no").tls == TlsServer("2001:db8::1", 5349)
    assert reach("--server-tcp", "no").tcp is False
    assert reach("--server-via", "tls", "--server-tls", "203.0.113.1:443", "--server-pin", PIN.hex()).via is Via.TLS


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--server-pin", "zz"], "--server-ca and --server-pin check a TLS server: give its --server-tls HOST[:PORT]"),
        (["--server-tls", "203.0.113.1:443", "--server-pin", "zz"],
         "--server-pin 'zz' is not hex digits; give the certificate's SHA-256 as 64 hex digits"),
        (["--server-tls", "203.0.113.1:443", "--server-pin", "ab:cd"],
         "--server-pin 'ab:cd' has 2 bytes, a SHA-256 has 32; give the certificate's SHA-256 as 64 hex digits"),
        (["--server-tls", "203.0.113.1:443", "--server-ca", "/nonexistent/ca.pem"],
         "--server-ca /nonexistent/ca.pem: no such file; give the CA certificates (PEM) that signed the server's"),
        (["--server-tls", "stun_example:443"],
         "--server-tls 'stun_example:443': give HOST[:PORT], HOST a name or an address, e.g. stun.example.net:443"),
        (["--server-tls", "stun.example.net:https"],
         "--server-tls 'stun.example.net:https': give HOST[:PORT], HOST a name or an address, e.g. stun.example.net:443"),
        (["--server-via", "tls"], "--server-via tls needs --server-tls HOST[:PORT]"),
        (["--server-via", "tcp", "--server-tcp", "no"], "--server-via tcp and --server-tcp no contradict each other; give one"),
        (["--server-via", "tcp", "--no-relay"],
         "--server-via tcp starts every session on the relay, which --no-relay turns off; drop one"),
        (["--server-tcp", "203.0.113.1:http"], "--server-tcp '203.0.113.1:http': port must be a number from 0 to 65535"),
    ],
)  # fmt: skip
def test_a_peers_wrong_flags_are_one_line_naming_the_fix(flags: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        reach(*flags)
    assert str(caught.value) == message


def test_a_peers_wrong_reach_flag_makes_no_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`punch peer` checks every flag before it loads or makes an identity (punch.cli.peer.peer_config)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    args = cli.build_parser().parse_args(["peer", "--server", "203.0.113.1", "--to", "b", "--server-via", "tls"])
    with pytest.raises(UsageError, match=r"^--server-via tls needs --server-tls HOST\[:PORT\]$"):
        peer_config(args)
    assert list(tmp_path.iterdir()) == []


def test_a_server_listens_over_tcp_at_its_udp_address_and_over_tls_only_with_a_certificate(tmp_path: Path) -> None:
    assert listen() == StreamListen(tcp=("0.0.0.0", 3478))
    assert listen("--tcp-listen", "no") == StreamListen()
    assert listen("--tcp-listen", "0.0.0.0:80").tcp == ("0.0.0.0", 80)
    issued = Authority(tmp_path).issue("server", "203.0.113.1")
    tls = ("--tls-cert", str(issued.cert), "--tls-key", str(issued.key))
    assert listen(*tls).tls == ("0.0.0.0", 5349)
    with_tls = listen(*tls, "--tls-listen", "0.0.0.0:443")
    assert (with_tls.tcp, with_tls.tls, with_tls.context is not None) == (("0.0.0.0", 3478), ("0.0.0.0", 443), True)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together: give the certificate chain and its private key"),
        (["--tls-listen", "0.0.0.0:443"], "--tls-listen needs --tls-cert and --tls-key: TLS presents a certificate"),
        (["--tcp-listen", "everywhere"],
         "--tcp-listen 'everywhere': 'everywhere' is not an IP address; give e.g. 203.0.113.1:3478"),
        (["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"],
         "--tls-cert /nonexistent/c.pem and --tls-key /nonexistent/k.pem cannot be used (No such file or directory); "
         "give a PEM certificate chain and its key"),
    ],
)  # fmt: skip
def test_a_servers_wrong_flags_are_one_line_naming_the_fix(flags: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        listen(*flags)
    assert str(caught.value) == message


def test_a_certificate_that_is_not_its_keys_is_refused(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    one, other = authority.issue("one", "203.0.113.1"), authority.issue("other", "203.0.113.1")
    with pytest.raises(UsageError, match=r"^--tls-cert .*one\.pem and --tls-key .*other\.key cannot be used \("):
        listen("--tls-cert", str(one.cert), "--tls-key", str(other.key))


def test_a_pin_reads_as_openssl_prints_it() -> None:
    printed = format_sha256(PIN)
    assert printed.startswith("00:01:02:")
    assert parse_sha256(printed) == parse_sha256(PIN.hex()) == parse_sha256(f"SHA256 Fingerprint={printed}") == PIN
