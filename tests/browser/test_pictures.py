"""The pictures, looked at in a real browser: a sequence diagram of a real (loopback) punch rendered by Mermaid, and
bench/matrix.html, in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from punch.api import run_peer
from punch.diagram import draw
from punch.peer.config import PeerResult
from punch.rendezvous.server import RendezvousServer
from punch.stun import trace
from tests.browser.chromium import Chromium, matrix_page, mermaid_page
from tests.integration.conftest import FAST, peer_config, texts
from tests.traces import datagrams_in

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

BENCH = Path(__file__).resolve().parent.parent.parent / "bench"
OWN_NAT = {"a": ("127.0.0.2", 0), "b": ("127.0.0.3", 0)}  # to the server, behind NATs of their own


async def traced(path: Path, participant: str, role: str, run: Callable[[], Awaitable[Any]], **facts: Any) -> Any:
    """``run()`` in a task of its own whose endpoints and punch log lines trace to ``path`` (a trace that starts as
    ``punch ROLE --trace`` starts: punch.cli)."""
    with path.open("w", encoding="utf-8") as out:
        tracer = trace.Tracer(out)
        tracer.start(participant, role, **facts)
        with trace.tracing(tracer):
            task = asyncio.ensure_future(run())  # the task copies the context: the tracer is current in it
        return await task


async def a_traced_punch(directory: Path) -> list[Path]:
    """A server and peers a and b on loopback, each tracing to a file of its own; the files."""
    paths = [directory / f"{who}.trace" for who in ("server", "a", "b")]
    handler = trace.TraceHandler()
    punch_log = logging.getLogger("punch")
    level = punch_log.level
    punch_log.addHandler(handler)
    punch_log.setLevel(logging.INFO)
    started: asyncio.Future[RendezvousServer] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def serve() -> None:
        async with RendezvousServer(push_policy=FAST) as server:
            await server.start(("127.0.0.1", 0))
            started.set_result(server)
            await done.wait()

    try:
        serving = asyncio.ensure_future(traced(paths[0], "server", "server", serve))
        server = await asyncio.wait_for(asyncio.shield(started), 5)

        def peer(path: Path, me: str, other: str) -> Awaitable[PeerResult]:
            config = peer_config(server, me, other, bind=OWN_NAT[me])
            at = f"{server.address[0]}:{server.address[1]}"
            run = lambda: run_peer(config, texts(f"hello from {me}"), lambda _: None)  # noqa: E731
            return traced(path, f"peer {me}", "peer", run, id=me, to=other, server=at)

        results = await asyncio.gather(peer(paths[1], "a", "b"), peer(paths[2], "b", "a"))
        done.set()
        await serving
    finally:
        punch_log.removeHandler(handler)
        punch_log.setLevel(level)
    assert [r.path for r in results] == ["direct", "direct"]
    return paths


def drawn(message: str) -> int:
    """How many datagrams one arrow's text stands for (``... x12``, else one)."""
    run = re.search(r" \N{MULTIPLICATION SIGN}(\d+)", message)
    return int(run[1]) if run else 1


async def test_a_diagram_of_a_traced_punch_renders_an_arrow_for_every_datagram(
    chromium: Chromium, tmp_path: Path
) -> None:
    paths = await a_traced_punch(tmp_path)
    diagram = draw(paths)
    report = chromium.report(mermaid_page(diagram, tmp_path / "diagram.html"))
    assert report["error"] is None, report
    assert report["participants"] == 3  # peer a, the server, peer b
    assert sum(drawn(m) for m in report["messages"]) == datagrams_in(paths)
    assert any(
        re.search(r"Introduce: a at 127\.0\.0\.2:\d+, you are the (opener|prober)", m) for m in report["messages"]
    )
    assert any(re.search(r"QUIC 1-RTT: message 0 'hello from a' → 127\.0\.0\.3:\d+", m) for m in report["messages"])
    assert report["notes"] >= 2  # each peer's path chosen, at least


def kind_of(cell: dict[str, Any]) -> str:
    """What a matrix.json cell should be coloured as, worked out here: its most common path, or failed."""
    paths = cell["paths"]
    if cell["error"] or cell["successes"] == 0 or not paths:
        return "failed"
    most = Counter(paths).most_common(1)[0][0]
    return "direct" if most.startswith("direct") else most


async def test_the_matrix_page_colours_every_cell_by_the_path_its_trials_took(
    chromium: Chromium, tmp_path: Path
) -> None:
    cells = json.loads((BENCH / "matrix.json").read_text())
    report = chromium.report(matrix_page(BENCH / "matrix.html", tmp_path / "matrix.html"))
    assert report["error"] is None, report
    shown = report["cells"]
    assert Counter(c["kind"] for c in shown) == Counter(kind_of(c) for c in cells)
    colours: dict[str, set[str]] = {}
    for cell in shown:
        colours.setdefault(cell["kind"], set()).add(cell["background"])
    assert all(len(found) == 1 for found in colours.values()), colours  # one colour per kind
    used = [found.pop() for found in colours.values()]
    assert len(set(used)) == len(used)  # and each kind its own
    assert not {"rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"} & set(used)  # coloured, not blank
    assert all(c["whyHidden"] and c["why"] for c in shown)  # each has its theory, shown on hover only
    theories = {c["cell"]: c["theory"] for c in cells}
    assert all(any(w["why"] == f"{name}: {text}" or w["why"].startswith(f"{name}: {text} |") for w in shown)
               for name, text in theories.items())  # fmt: skip


async def test_a_focused_matrix_cell_shows_its_theory(chromium: Chromium, tmp_path: Path) -> None:
    report = chromium.report(matrix_page(BENCH / "matrix.html", tmp_path / "matrix.html", focus="cell-4"))
    assert report["error"] is None, report
    assert [c["whyHidden"] for c in report["cells"]].count(False) == 1
    assert report["cells"][3]["whyHidden"] is False
