"""Types of the optional C accelerator (punch/_fastpath.c); see punch.stun.fastpath."""

from collections.abc import Callable, Iterable

API: int

def drain(
    fd: int, tail: bytes, budget: int, take: Callable[[str, int], int] | None = None, /
) -> tuple[int, list[tuple[bytes, tuple[str, int]]], int, int, int]: ...
def answer(request: bytes, host: str, port: int, tail: bytes, /) -> bytes | None: ...
def set_known(types: Iterable[int], /) -> None: ...
