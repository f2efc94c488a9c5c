"""punch diagram on traces of real punches through the lab (tests/data/traces, kept by `just docs-diagrams`): what
each case's diagram shows, that it draws every datagram once, and the pieces (reading, runs, escaping, names)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from punch import cli
from punch.diagram import labels, mermaid
from punch.diagram.notes import note
from punch.diagram.story import ANSWER, CROSS, REQUEST, Arrow, Note, Story, bursts, collapse, story
from punch.diagram.traces import Icmp, TraceError, clip, parse, read_all
from tests.e2e import diagrams
from tests.traces import datagrams_in

pytestmark = pytest.mark.unit

TRACES = Path(__file__).parent.parent / "data" / "traces"
FILES = ("server.trace", "peer10.trace", "peer14.trace")


def paths(case: str) -> list[Path]:
    return [TRACES / case / name for name in FILES]


def told(case: str) -> Story:
    return story(read_all(paths(case)))


def arrows(run: Story, frm: str | None = None, to: str | None = None) -> list[Arrow]:
    return [
        s for s in run.steps if isinstance(s, Arrow) and (frm is None or s.frm == frm) and (to is None or s.to == to)
    ]


def notes(run: Story, over: str) -> list[str]:
    return [s.words for s in run.steps if isinstance(s, Note) and s.over == over]


@pytest.mark.parametrize("case", [c.name for c in diagrams.CASES])
def test_every_datagram_of_a_run_is_drawn_once(case: str) -> None:
    assert told(case).messages() == datagrams_in(paths(case))


@pytest.mark.parametrize("case", [c.name for c in diagrams.CASES])
def test_the_docs_diagrams_are_what_their_traces_draw(case: str) -> None:
    """docs/diagrams/CASE.mmd is drawn from tests/data/traces/CASE by the code as it is: after a change to
    punch.diagram, `just docs-diagrams --redraw` draws them again."""
    expected = diagrams.drawing(next(c for c in diagrams.CASES if c.name == case), TRACES)
    assert (diagrams.DOCS / f"{case}.mmd").read_text(encoding="utf-8") == expected


def test_ready_go_the_openers_probes_die_at_the_router_then_ready_and_go() -> None:
    run = told("ready-go")
    probes = [a for a in arrows(run, "peer 10") if "TTL 2" in a.words]
    assert {(a.to, a.line, a.outcome) for a in probes} == {("router 198.51.100.1", CROSS, "dies here")}
    assert [a.words for a in arrows(run, "peer 10", "server") if a.words.startswith("Ready")] == [
        "Ready: our NAT is open"
    ]
    assert [a.words for a in arrows(run, "server", "peer 14") if a.words.startswith("Go")] == [
        "Go: 10's NAT is open, check now"
    ]
    nominations = [a for a in arrows(run, "peer 14", "peer 10") if a.words == "check, USE-CANDIDATE"]
    assert nominations
    assert all(a.line == REQUEST and a.remotes[0].startswith("198.51.100.10:") for a in nominations)
    assert any(n.startswith("path chosen: direct") for n in notes(run, "peer 10"))
    assert "Ready/Go: early checks would not be faster" not in notes(run, "peer 10")  # it was told: --no-early-checks


def test_early_checks_both_probe_at_once_and_nobody_says_ready() -> None:
    run = told("early-checks")
    assert not [a for a in arrows(run) if a.words.startswith(("Ready", "Go"))]
    for peer, router in (("peer 10", "router 198.51.100.1"), ("peer 14", "router 192.0.2.1")):
        assert any(a.to == router and a.outcome == "dies here" for a in arrows(run, peer))
        assert any(n.startswith("early checks: round trips") for n in notes(run, peer))


def test_a_move_shows_the_refusal_the_move_and_the_fresh_socket() -> None:
    run = told("move")
    refused = [a for a in arrows(run, "peer 10", "NAT 192.0.2.14") if a.outcome == "refused"]
    assert refused
    assert refused[0].line == CROSS
    assert any(a.words == "ICMP port unreachable" for a in arrows(run, "NAT 192.0.2.14", "peer 10"))
    assert any(a.words == "Move: their NAT refused our check" for a in arrows(run, "peer 10", "server"))
    assert any(a.words.startswith("Move: 10's check was refused") for a in arrows(run, "server", "peer 14"))
    fresh = "peer 14's fresh socket"
    assert any(a.words == "Ready: our NAT is open" for a in arrows(run, fresh, "server"))
    assert any(re.fullmatch(r"Go: 14 moved, check it at 192\.0\.2\.14:\d+", a.words) for a in arrows(run, "server"))
    assert any(a.words.startswith("QUIC 1-RTT: message 0 'hello from 10'") for a in arrows(run, "peer 10", fresh))
    assert run.cast.participants[fresh].label()[1].startswith("seen as 192.0.2.14:")


def test_port_prediction_opens_256_mappings_and_sprays_until_a_hit() -> None:
    run = told("prediction")
    sockets = "peer 10's other sockets"
    assert run.cast.participants[sockets].label() == ["peer 10's 256 other sockets"]
    (probes,) = [a for a in arrows(run, sockets) if a.outcome == "dies here"]
    assert (probes.count, probes.to, probes.words) == (256, "router 198.51.100.1", "check, TTL 2")
    sprayed = [a for a in arrows(run, "peer 14", "peer 10") if a.outcome == "lost"]
    assert sum(a.count for a in sprayed) > 20
    assert any(a.words == "check, USE-CANDIDATE" for a in arrows(run, "peer 14", sockets))  # the hit, nominated
    assert any(n.startswith("hit: 198.51.100.10:") for n in notes(run, "peer 14"))


def test_peer_reflexive_first_checks_from_the_main_socket_and_is_answered_at_a_port_nobody_saw() -> None:
    run = told("reflexive")
    assert "peer 10's other sockets" not in run.cast.participants  # no socket opened to predict
    assert not any(a.words.startswith(("Ready", "Go")) for a in arrows(run))
    (registered,) = {
        a.words.split("you are ")[1] for a in arrows(run, "server", "peer 10") if "Register OK: you" in a.words
    }
    # peer14 checks back, nominating, at the port its check from peer10's main socket came from: not the registered one
    nominations = [a for a in arrows(run, "peer 14", "peer 10") if a.words == "check, USE-CANDIDATE"]
    assert nominations
    reflexive = nominations[0].remotes[0]
    assert reflexive.startswith("198.51.100.10:")
    assert reflexive != registered
    assert any(n.startswith(f"path chosen: direct via {reflexive}") for n in notes(run, "peer 14"))


def test_quic_comes_up_on_the_chosen_path_the_prober_its_client() -> None:
    """peer 14 is the prober (Introduce: "you are the prober"), so QUIC's client: it sends the first Initial, peer 10
    answers with Initial and Handshake; every datagram between them is a check or QUIC, each text on a 1-RTT arrow
    of its own."""
    run = told("ready-go")
    between = arrows(run, "peer 14", "peer 10") + arrows(run, "peer 10", "peer 14")
    quic = sorted((a for a in between if a.words.startswith("QUIC")), key=lambda a: a.t)
    assert {a.words.split(" →")[0] for a in between} - {a.words for a in quic} <= {
        "check",
        "check answered",
        "check, USE-CANDIDATE",
        "check, TTL 2",
    }
    assert (quic[0].frm, quic[0].words) == ("peer 14", "QUIC Initial")
    assert any(a.frm == "peer 10" and a.words.startswith("QUIC Initial + Handshake") for a in quic)
    for me, other in (("10", "14"), ("14", "10")):
        (text,) = [a for a in quic if "message" in a.words and a.frm == f"peer {me}"]
        assert text.words == f"QUIC 1-RTT: message 0 'hello from {me}'"
        assert text.count == 1
        assert any(n == f"QUIC is up: we are {other}'s {'client' if me == '14' else 'server'}, keys checked both ways"
                   for n in notes(run, f"peer {me}"))  # fmt: skip
    assert [a.words for a in quic if "done sending" in a.words] == ["QUIC 1-RTT: done sending"] * 2


def test_the_relay_carries_quic_through_the_server() -> None:
    run = told("relay")
    assert not arrows(run, "peer 10", "peer 14")
    assert not arrows(run, "peer 14", "peer 10")
    relayed = [a.words for a in arrows(run, "server") if "(relayed)" in a.words]
    sent = [a.words for a in arrows(run, "peer 10", "server") + arrows(run, "peer 14", "server")]
    assert "QUIC Initial (relayed)" in relayed
    for me in ("10", "14"):
        assert f"QUIC 1-RTT (relayed): message 0 'hello from {me}'" in relayed
        relay = f"QUIC 1-RTT in a Relay indication: message 0 'hello from {me}'"
        assert relay in [a.words for a in arrows(run, f"peer {me}", "server")]
    assert "QUIC Initial in a Relay indication" in sent
    assert any(n.endswith(": the relay") for n in notes(run, "peer 10"))


def test_a_text_names_the_first_1_rtt_datagram_its_peer_sent_after_logging_it() -> None:
    """Not a QUIC datagram before the line, nor one without a 1-RTT packet after it: the first with one, and only
    that one; the plain 1-RTT packets around it are folded into bursts."""

    def line(t: float, event: str, **fields: object) -> str:
        return json.dumps({"t": t, "event": event, **fields}) + "\n"

    def quic(t: float, event: str, types: list[str], digest: str) -> str:
        where = {"local": "192.0.2.14:5000", "remote": "198.51.100.10:4000"}
        if event == "recv":
            where = {"local": "10.0.10.2:4000", "remote": "192.0.2.14:5000"}
        return line(t, event, **where, size=60, stun=False, digest=digest, quic=types)

    start = {"format": 1, "role": "peer"}
    said = "message 0 sent to 10 (encrypted): 'hi'"
    sender = [line(0, "start", participant="peer 14", **start), line(0, "socket", local="192.0.2.14:5000")]
    receiver = [line(0, "start", participant="peer 10", **start), line(0, "socket", local="10.0.10.2:4000")]
    packets = [(1, ["1-RTT"]), (3, ["Handshake"]), (4, ["Handshake", "1-RTT"]), (5, ["1-RTT"]), (6, ["1-RTT"])]
    for number, (t, types) in enumerate(packets):
        sender.append(quic(t, "send", types, f"{number:08x}"))
        receiver.append(quic(t + 0.1, "recv", types, f"{number:08x}"))
    sender.insert(3, line(2, "log", logger="punch.tunnel.texts", level="INFO", message=said))
    run = story([parse(sender, "14.trace", 0), parse(receiver, "10.trace", 1)])
    assert [(a.frm, a.to, a.words, a.count) for a in arrows(run)] == [
        ("peer 14", "peer 10", "QUIC 1-RTT", 1),
        ("peer 14", "peer 10", "QUIC Handshake", 1),
        ("peer 14", "peer 10", "QUIC Handshake + 1-RTT: message 0 'hi'", 1),
        ("peer 14", "peer 10", "QUIC 1-RTT", 2),
    ]
    assert {remote for a in arrows(run) for remote in a.remotes} == {"198.51.100.10:4000"}


def test_a_relay_notice_and_datagrams_neither_stun_nor_quic_are_named() -> None:
    notice = {"method": "Notice", "class": "request", "error": "486 Relay quota reached: 100 bytes per session"}
    assert labels.text(notice, None, from_server=True) == "Notice: 486 Relay quota reached: 100 bytes per session"
    assert labels.text({"method": "Notice", "class": "success"}, notice) == "Notice OK"
    assert labels.text({"size": 3, "stun": False, "digest": "00"}, None) == "3-byte datagram, neither STUN nor QUIC"
    relay = {"method": "Relay", "class": "indication", "quic": ["Handshake", "1-RTT"]}
    assert labels.text(relay, None, said="done sending") == "QUIC Handshake + 1-RTT in a Relay indication: done sending"
    assert labels.text(relay, None, from_server=True) == "QUIC Handshake + 1-RTT (relayed)"


def test_the_routers_of_one_node_share_its_column_when_named_alike() -> None:
    run = told("early-checks")
    columns, column = run.cast.columns(run.used(), {"198.51.100.1": "core", "192.0.2.1": "core"})
    assert column["router 198.51.100.1"] == column["router 192.0.2.1"]
    assert [label[0] for _, label in columns] == ["peer 10", "core", "server", "peer 14"]
    unnamed, _ = run.cast.columns(run.used(), {})
    assert [label[0] for _, label in unnamed] == [
        "peer 10",
        "router 198.51.100.1",
        "server",
        "router 192.0.2.1",
        "peer 14",
    ]


def test_alike_arrows_in_a_row_and_a_repeated_exchange_are_counted_not_repeated() -> None:
    def arrow(t: float, frm: str, to: str, words: str, line: str = REQUEST, remote: str = "") -> Arrow:
        return Arrow(t, frm, to, line, words, remotes=[remote] if remote else [], until=t)

    steps = [
        arrow(1, "a", "r", "check, TTL 2", CROSS, "192.0.2.14:1"),
        arrow(2, "a", "r", "check, TTL 2", CROSS, "192.0.2.14:1"),
        arrow(3, "a", "s", "route probe"),
        arrow(4, "s", "a", "route probe answered", ANSWER),
        arrow(5, "a", "s", "route probe"),
        arrow(6, "s", "a", "route probe answered", ANSWER),
        arrow(7, "a", "b", "check", remote="192.0.2.14:1"),
        arrow(8, "a", "b", "check", remote="192.0.2.14:2"),  # elsewhere, and not lost: an arrow of its own
    ]
    runs = collapse(steps)
    assert [(a.words, a.count, a.t, a.until) for a in runs] == [
        ("check, TTL 2", 2, 1, 2),
        ("route probe", 2, 3, 5),
        ("route probe answered", 2, 4, 6),
        ("check", 1, 7, 7),
        ("check", 1, 8, 8),
    ]
    assert (
        mermaid.arrow_text(runs[0], 0.5)
        == "500.0\N{EN DASH}1500.0 ms check, TTL 2 → 192.0.2.14:1 \N{MULTIPLICATION SIGN}2"
    )


def test_a_burst_of_plain_quic_packets_is_an_arrow_per_kind_and_anything_else_ends_it() -> None:
    def arrow(t: float, frm: str, to: str, words: str = "QUIC 1-RTT", plain: bool = True) -> Arrow:
        return Arrow(t, frm, to, REQUEST, words, until=t, plain=plain)

    steps = [
        arrow(1, "a", "s"),
        arrow(2, "s", "b"),
        arrow(3, "b", "s"),
        arrow(4, "s", "a"),
        arrow(5, "a", "s"),
        arrow(6, "s", "b"),
        arrow(7, "a", "s", "QUIC 1-RTT: message 0 'hi'", plain=False),
        arrow(8, "a", "s"),
        arrow(9, "a", "s"),
    ]
    assert [(a.frm, a.to, a.count, a.t, a.until) for a in bursts(steps)] == [
        ("a", "s", 2, 1, 5),
        ("s", "b", 2, 2, 6),
        ("b", "s", 1, 3, 3),
        ("s", "a", 1, 4, 4),
        ("a", "s", 1, 7, 7),
        ("a", "s", 2, 8, 9),
    ]


def test_labels_are_escaped_for_mermaid_but_keep_their_line_breaks() -> None:
    assert mermaid.escape("message 0 'a;b#c<d>'<br/>next") == "message 0 'a#59;b#35;c#lt;d#gt;'<br/>next"


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([], "t.trace: empty; give files written by"),
        (['{"t": 1, "event": "socket", "local": "x"}\n'], "t.trace line 1: a trace begins with a start event, not 'socket'"),
        (['{"t": 1, "event": "start", "format": 9, "participant": "p", "role": "peer"}\n'], "t.trace line 1: trace format 9, but this punch reads format 1"),
        (['{"t": 1, "event": "start", "format": 1, "participant": "p", "role": "peer"}\n', "nonsense\n", "{}\n"], "t.trace line 2: not JSON"),
        (['{"t": 1, "event": "start", "format": 1, "participant": "p", "role": "peer"}\n', '{"t": 2, "event": "send", "local": "a"}\n'], "t.trace line 2: its send event lacks 'remote' or it has the wrong type"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_trace_is_refused_naming_the_line(lines: list[str], error: str) -> None:
    with pytest.raises(TraceError) as refused:
        parse(lines, "t.trace")
    assert str(refused.value).startswith(error)
    assert str(refused.value).endswith(
        "; give files written by `punch server --trace FILE` or `punch peer --trace FILE`"
    )


def test_a_last_line_cut_short_is_left_out_and_a_servers_older_runs_too() -> None:
    start = '{"t": 10, "event": "start", "format": 1, "participant": "server", "role": "server"}\n'
    old = '{"t": 11, "event": "log", "logger": "punch", "level": "INFO", "message": "an earlier run"}\n'
    now = '{"t": 21, "event": "log", "logger": "punch", "level": "INFO", "message": "this run"}\n'
    server = parse([start, old, now, '{"t": 22, "eve'], "server.trace")
    peer = parse(['{"t": 20, "event": "start", "format": 1, "participant": "peer 1", "role": "peer"}\n', now], "p", 1)
    clip([server, peer])
    assert [line.message for line in server.logs] == ["this run"]


def test_punch_diagram_writes_the_diagram_in_a_markdown_block(tmp_path: Path) -> None:
    output = tmp_path / "run.md"
    names = ["--name", "198.51.100.1=core", "--name", "192.0.2.1=core"]
    assert cli.main(["diagram", *map(str, paths("relay")), "--format", "markdown", "-o", str(output), *names]) == 0
    text = output.read_text()
    assert text.startswith("```mermaid\nsequenceDiagram\n")
    assert text.endswith("```\n")
    assert "participant P2 as server<br/>203.0.113.1:3478" in text


def test_punch_diagram_says_which_file_is_no_trace_and_which_name_is_malformed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus.trace"
    bogus.write_text(json.dumps({"hello": 1}) + "\n")
    assert cli.main(["diagram", str(bogus)]) == 1
    assert capsys.readouterr().err.startswith(f"punch: {bogus} line 1: the line lacks 't' or it has the wrong type")
    with pytest.raises(SystemExit) as usage:
        cli.main(["diagram", str(bogus), "--name", "core"])
    assert usage.value.code == 2
    assert "punch: --name 'core': write WHO=LABEL, e.g. --name 198.51.100.1=core" in capsys.readouterr().err


def test_a_route_note_names_each_router_and_where_the_server_was_first_reached() -> None:
    line = (
        "route to the server: TTL 1 died at 10.0.10.1 (private), TTL 2 died at 198.51.100.1 (public), TTL 3 reached "
        "the server (0.6 ms), TTL 4 reached the server (0.7 ms); opening probes keep TTL 2"
    )
    assert (
        note(line)
        == "route to the server, by TTL: 1: 10.0.10.1, 2: 198.51.100.1, 3: the server<br/>low-TTL probes get TTL 2"
    )
    assert note("socket bound to 0.0.0.0:4000") is None


@pytest.mark.parametrize(
    ("remote", "icmp_type", "code", "what"),
    [
        ("192.0.2.14:5000", 11, 0, "time exceeded"),
        ("192.0.2.14:5000", 3, 3, "port unreachable"),
        ("[2001:db8:11::2]:5000", 3, 0, "time exceeded"),  # ICMPv6 type 3 (RFC 4443 §3.3), not unreachable
        ("[2001:db8:11::2]:5000", 1, 4, "port unreachable"),
    ],
)
def test_an_icmp_error_is_named_by_its_family(remote: str, icmp_type: int, code: int, what: str) -> None:
    assert Icmp(0, 0.0, "[::]:1", remote, icmp_type, code, None).what == what
