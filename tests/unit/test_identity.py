"""A peer's identity (punch.identity): the key file, the fingerprint, the known peers, and the session key only the
two peers derive."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from punch.identity.agreement import OwnShare, Party, share_is_genuine
from punch.identity.fingerprint import FingerprintError, fingerprint, looks_like_fingerprint, parse_fingerprint
from punch.identity.keyfile import Identity, IdentityError, load_identity
from punch.identity.known_peers import KnownPeers, judge

pytestmark = pytest.mark.unit

SESSION = bytes(range(16))


# -- the key file ---------------------------------------------------------------------------------------------


def test_an_identity_made_on_first_use_is_private_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "punch" / "identity"
    made, created = load_identity(path, create=True)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again, created = load_identity(path, create=True)
    assert not created
    assert (again.public_key, again.fingerprint) == (made.public_key, made.fingerprint)


def test_a_second_process_making_the_same_identity_takes_the_first_ones(tmp_path: Path) -> None:
    path = tmp_path / "identity"
    first = Identity.generate()
    path.write_bytes(first.pem())
    path.chmod(0o600)
    second, created = load_identity(path, create=True)
    assert (second.public_key, created) == (first.public_key, False)


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        (None, 0o600, r"--identity {p}: no such file; make a new identity with `punch id --identity {p}`"),
        (
            b"not a key",
            0o600,
            r"--identity {p}: not a private key in PEM; move it away and make a new identity with `punch id --identity {p}`",
        ),
        (
            "identity",
            0o644,
            r"--identity {p}: others may read this private key \(mode 0644\); run `chmod 600 {p}`, or make a new identity if it may have leaked",
        ),
        ("identity", 0o640, r"--identity {p}: others may read this private key \(mode 0640\); .*"),
    ],
    ids=["missing", "corrupt", "world-readable", "group-readable"],
)
def test_a_bad_identity_file_is_a_one_line_error_with_the_fix(
    tmp_path: Path, content: bytes | str | None, mode: int, expected: str
) -> None:
    path = tmp_path / "identity"
    if content is not None:
        path.write_bytes(Identity.generate().pem() if content == "identity" else content)  # type: ignore[arg-type]
        path.chmod(mode)
    with pytest.raises(IdentityError) as error:
        load_identity(path, create=False)
    assert re.fullmatch(expected.format(p=re.escape(str(path))), str(error.value))
    if content is not None:
        assert path.exists()  # never overwritten


def test_a_key_of_another_kind_is_named(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "identity"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    with pytest.raises(IdentityError, match=r"an Elliptic ?Curve key, not Ed25519|key, not Ed25519"):
        load_identity(path, create=False)


# -- the fingerprint --------------------------------------------------------------------------------------------


@given(st.binary(min_size=32, max_size=32))
def test_a_fingerprint_reads_back_as_itself_however_it_is_pasted(key: bytes) -> None:
    text = fingerprint(key)
    assert looks_like_fingerprint(text)
    assert len(text) == 39
    for pasted in (text, text.upper(), text.replace("-", ""), text.replace("-", " "), f" {text} "):
        assert parse_fingerprint(pasted) == text


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_two_keys_have_two_fingerprints(first: bytes, second: bytes) -> None:
    assert (fingerprint(first) == fingerprint(second)) == (first == second)


@given(st.text(max_size=60))
def test_anything_else_is_refused_with_why(text: str) -> None:
    plain = re.sub(r"[-\s]", "", text).lower()
    if re.fullmatch(r"[a-z2-7]{32}", plain):
        assert looks_like_fingerprint(parse_fingerprint(text))
        return
    with pytest.raises(FingerprintError) as error:
        parse_fingerprint(text)
    assert str(error.value).startswith(f"{text!r} is not a fingerprint: ")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            "abcd-efgh",
            "it has 8 letters and digits, a fingerprint has 32 (8 groups of 4); was it cut short when copied?",
        ),
        ("abcd-efgh-ijkl-mnop-qrst-uvwx-yz01-2345", "'0', '1' cannot appear in one (only a-z and 2-7)"),
    ],
)
def test_a_malformed_fingerprint_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(FingerprintError) as error:
        parse_fingerprint(text)
    assert str(error.value).startswith(f"{text!r} is not a fingerprint: {why}")


# -- the known peers ------------------------------------------------------------------------------------------


def test_known_peers_round_trip_and_keep_what_others_added(tmp_path: Path) -> None:
    path = tmp_path / "known_peers"
    one, two = fingerprint(bytes(32)), fingerprint(bytes(range(32)))
    known = KnownPeers(path)
    assert known.lookup("14") is None
    known.remember("14", one)
    KnownPeers(path).remember("peer with spaces", two)  # another process, meanwhile
    known.remember("14", one)  # already there: nothing added
    again = KnownPeers(path)
    assert again.lookup("14") == (one, 2)
    assert again.lookup("peer with spaces") == (two, 3)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines()[1:] == [f"{one} 14", f"{two} peer with spaces"]


def test_a_pinned_new_key_replaces_the_line(tmp_path: Path) -> None:
    path = tmp_path / "known_peers"
    old, new = fingerprint(bytes(32)), fingerprint(bytes(range(32)))
    path.write_text(f"# mine\n{old} 14\n{old} 10\n")
    KnownPeers(path).remember("14", new)
    assert path.read_text() == f"# mine\n{old} 10\n{new} 14\n"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("14", "expected `FINGERPRINT ID`, got '14'; fix or delete that line"),
        ("abcd 14", "'abcd' is not a fingerprint: it has 4 letters and digits"),
        (f"{fingerprint(bytes(32))} a\x01b", "peer ID 'a\\x01b' contains a control character; fix or delete that line"),
    ],
)
def test_a_known_peers_file_that_does_not_parse_is_an_error_naming_the_line(
    tmp_path: Path, line: str, why: str
) -> None:
    path = tmp_path / "known_peers"
    path.write_text(f"# ok\n{line}\n")
    with pytest.raises(IdentityError) as error:
        KnownPeers(path)
    assert str(error.value).startswith(f"--known-peers {path} line 2: {why}")
    assert path.read_text() == f"# ok\n{line}\n"  # never rewritten


def test_a_peer_known_by_two_keys_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "known_peers"
    path.write_text(f"{fingerprint(bytes(32))} 14\n{fingerprint(bytes(range(32)))} 14\n")
    with pytest.raises(IdentityError, match=r"line 2: 14 is known by two keys \(line 1 too\); delete the wrong line"):
        KnownPeers(path)


OLD, NEW = fingerprint(bytes(32)), fingerprint(bytes(range(32)))


@pytest.mark.parametrize(
    ("pinned", "known", "presented", "accepted", "remember"),
    [
        (None, None, NEW, True, True),  # trust on first use
        (None, NEW, NEW, True, False),  # the key we know
        (None, OLD, NEW, False, False),  # an impostor, or a new key: refused
        (NEW, None, NEW, True, True),  # pinned and right
        (NEW, OLD, NEW, True, True),  # pinned beats what we knew: the line is replaced
        (OLD, None, NEW, False, False),  # pinned and wrong
        (OLD, OLD, NEW, False, False),
    ],
)
def test_judge(pinned: str | None, known: str | None, presented: str, accepted: bool, remember: bool) -> None:
    verdict = judge("14", presented, pinned, known, "known_peers line 3")
    assert (verdict.accepted, verdict.remember) == (accepted, remember)


def test_a_refusal_says_which_key_was_expected_which_came_and_how_to_accept_it() -> None:
    verdict = judge("14", NEW, None, OLD, "/root/.config/punch/known_peers line 3")
    assert verdict.reason == (
        f"14 presented the key {NEW}, but we know 14 by {OLD} (/root/.config/punch/known_peers line 3): it may be an "
        f"impostor. If 14 really has a new key, accept it with `--to-key {NEW}` (that replaces the line), or delete "
        "that line"
    )


# -- the session key --------------------------------------------------------------------------------------------


def shares() -> tuple[Identity, Identity, OwnShare, OwnShare]:
    ten, fourteen = Identity.generate(), Identity.generate()
    return ten, fourteen, OwnShare(ten, "10", "14"), OwnShare(fourteen, "14", "10")


def test_both_peers_derive_one_key_and_nobody_else_does() -> None:
    _, _, ours, theirs = shares()
    as_ten = ours.session_key(theirs.party, SESSION, we_open=True)
    as_fourteen = theirs.session_key(ours.party, SESSION, we_open=False)
    assert as_ten is not None
    assert as_ten == as_fourteen
    assert len(as_ten) == 32
    # The server saw both public halves: with a share of its own it gets another key
    server = OwnShare(Identity.generate(), "10", "14")
    assert server.session_key(theirs.party, SESSION, we_open=True) != as_ten
    assert ours.session_key(theirs.party, bytes(16), we_open=True) != as_ten  # another session, another key
    assert ours.session_key(theirs.party, SESSION, we_open=False) != as_ten  # roles are bound in


def test_a_share_is_genuine_only_from_its_key_and_for_us() -> None:
    ten, fourteen, ours, theirs = shares()
    assert share_is_genuine(ours.party, ours.public.signature, asked_for="14")
    assert not share_is_genuine(ours.party, ours.public.signature, asked_for="15")  # made for someone else
    impostor = Party("10", fourteen.public_key, ours.party.share)  # 10's share under another key
    assert not share_is_genuine(impostor, ours.public.signature, asked_for="14")
    swapped = Party("10", ten.public_key, theirs.party.share)  # another share under 10's signature
    assert not share_is_genuine(swapped, ours.public.signature, asked_for="14")
    assert not share_is_genuine(Party("10", bytes(31), ours.party.share), ours.public.signature, asked_for="14")


def test_a_share_that_is_no_usable_key_gives_no_session_key() -> None:
    _, _, ours, _ = shares()
    low_order = Party("14", bytes(32), bytes(32))  # the all-zero point: the shared secret would be zero
    assert ours.session_key(low_order, SESSION, we_open=True) is None
    assert ours.session_key(Party("14", bytes(32), bytes(31)), SESSION, we_open=True) is None


def test_the_ephemeral_key_is_fresh_for_every_connect() -> None:
    ten = Identity.generate()
    assert OwnShare(ten, "10", "14").public.share != OwnShare(ten, "10", "14").public.share
