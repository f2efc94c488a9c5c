"""Which key each peer ID had when we first met it: trust on first use, as ssh's known_hosts.

The file (``$XDG_CONFIG_HOME/punch/known_peers``, mode 0600) holds one line per peer, ``FINGERPRINT ID`` (the ID is
the rest of the line: IDs may hold spaces), and ``#`` comments. A file that does not parse is an error naming the
line; it is never rewritten. A new peer's line is appended under an exclusive lock (peers started together on one
machine share the file); a key accepted by a pin (``--to-key``) replaces the line of that ID.

:func:`judge` decides, from what we pinned and what we knew, whether a key is accepted; it is pure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from punch.identity.fingerprint import FingerprintError, parse_fingerprint
from punch.identity.keyfile import IdentityError, config_dir
from punch.stun.wire import ProtocolError, check_peer_id

HEADER = "# punch known peers: FINGERPRINT ID, one peer a line (trust on first use; docs/security.md)\n"


def default_known_peers_path() -> Path:
    return config_dir() / "known_peers"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a peer's key is accepted, and what to say. ``remember``: add (or, after a pin, replace) its line."""

    accepted: bool
    remember: bool
    reason: str


def judge(peer_id: str, presented: str, pinned: str | None, known: str | None, where: str) -> Verdict:
    """The verdict on ``peer_id`` presenting the key with fingerprint ``presented``: against ``pinned`` (given on
    the command line) if any, else against ``known`` (``where``: the known-peers file and line), else trusted on
    first use."""
    if pinned is not None:
        if presented != pinned:
            return Verdict(False, False, f"{peer_id} presented the key {presented}, not the pinned {pinned}: refused")
        return Verdict(True, known != presented, f"{peer_id}'s key {presented} is the one pinned")
    if known is None:
        return Verdict(True, True, f"first contact with {peer_id}: trusting its key {presented} from now on")
    if presented != known:
        return Verdict(
            False,
            False,
            f"{peer_id} presented the key {presented}, but we know {peer_id} by {known} ({where}): it may be an "
            f"impostor. If {peer_id} really has a new key, accept it with `--to-key {presented}` (that replaces the "
            "line), or delete that line",
        )
    return Verdict(True, False, f"{peer_id}'s key {presented} is the one we know")


def judge_allowed(peer_id: str, presented: str, allowed: Collection[str]) -> Verdict:
    """The verdict on ``peer_id`` presenting ``presented`` to a session for anyone (punch.api.accept): its key must
    be one of the fingerprints ``allowed``, whatever ID it came under."""
    if presented not in allowed:
        return Verdict(False, False, f"{peer_id} presented the key {presented}, not one we allow: refused")
    return Verdict(True, False, f"{peer_id}'s key {presented} is one we allow")


class KnownPeers:
    """The known-peers file (module docstring): read when made, appended to on first contact."""

    def __init__(self, path: Path, flag: str = "--known-peers") -> None:
        self._path = path
        self._flag = flag
        self._known = self._parse(self._read_text())

    @property
    def path(self) -> Path:
        return self._path

    def lookup(self, peer_id: str) -> tuple[str, int] | None:
        """The fingerprint we know ``peer_id`` by and its line, if any."""
        return self._known.get(peer_id)

    def where(self, peer_id: str) -> str:
        found = self._known.get(peer_id)
        return f"{self._path} line {found[1]}" if found else str(self._path)

    def remember(self, peer_id: str, presented: str) -> None:
        """Record that ``peer_id`` has the key ``presented`` (a new line, or its line replaced), under the file's
        lock; what another peer added meanwhile is kept."""
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise IdentityError(f"{self._flag} {self._path}: cannot write it ({error.strerror})") from None
        with os.fdopen(descriptor, "r+", encoding="utf-8") as file, _locked(file.fileno()):
            text = file.read()
            self._known = self._parse(text)
            if peer_id not in self._known:
                file.write(("" if text else HEADER) + ("" if not text or text.endswith("\n") else "\n"))
                file.write(f"{presented} {peer_id}\n")
            elif self._known[peer_id][0] != presented:
                kept = [
                    line
                    for number, line in enumerate(text.splitlines(keepends=True), 1)
                    if number != self._known[peer_id][1]
                ]
                file.seek(0)
                file.truncate()
                file.write("".join(kept) + f"{presented} {peer_id}\n")
            file.flush()
            os.fsync(file.fileno())
        self._known = self._parse(self._read_text())

    def _read_text(self) -> str:
        try:
            return self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""
        except (OSError, UnicodeDecodeError) as error:
            why = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise IdentityError(f"{self._flag} {self._path}: cannot read it ({why})") from None

    def _parse(self, text: str) -> dict[str, tuple[str, int]]:
        known: dict[str, tuple[str, int]] = {}
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            fix = f"{self._flag} {self._path} line {number}"
            parts = stripped.split(maxsplit=1)
            if len(parts) != 2:
                raise IdentityError(f"{fix}: expected `FINGERPRINT ID`, got {stripped!r}; fix or delete that line")
            try:
                key, peer_id = parse_fingerprint(parts[0]), check_peer_id(parts[1])
            except (FingerprintError, ProtocolError) as error:
                raise IdentityError(f"{fix}: {error}; fix or delete that line") from None
            if peer_id in known and known[peer_id][0] != key:
                raise IdentityError(
                    f"{fix}: {peer_id} is known by two keys (line {known[peer_id][1]} too); delete the wrong line"
                )
            known[peer_id] = (key, number)
        return known


@contextlib.contextmanager
def _locked(descriptor: int) -> Iterator[None]:
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
