"""The steps of a diagram, in time order: an arrow per datagram (and per ICMP error a socket read), a note per step
a peer logged that no arrow shows (punch.diagram.notes). Runs of alike arrows (port prediction's hundreds of
probes, retransmissions) become one arrow that counts them.

QUIC, once the checks chose a path, is drawn by its packets' types (punch.diagram.labels). The handshake's
datagrams (Initial, Handshake, and the 1-RTT packets coalesced with them) get an arrow each, as any other datagram.
The 1-RTT packets after it are mostly acknowledgements and stream bytes nobody logged, and a text exchange makes
dozens; so a burst of them, the arrows in a row that are each a datagram of one 1-RTT packet and name nothing it
carries, is folded into one arrow per sender, receiver, destination and outcome, in the order each first appears in
the burst, counting its packets and spanning their times ("12.0-15.3 ms QUIC 1-RTT x5", typeset with an en dash and
a multiplication sign): who sent how many packets to whom, not their order within the burst. Any other arrow (a STUN
message, a text's packet) ends the burst. On the relay a burst holds both legs: the peers' Relay indications to the
server and its forwards.

A text shows where it went: a peer's log line "message N sent to X (encrypted): 'text'" (punch.tunnel.texts) names
the first datagram with a 1-RTT packet that peer sent after it, the one QUIC sent the text in as a rule ("QUIC
1-RTT: message 0 'hello'"), and "telling X we are done sending" the one that ends its stream; on the relay, the
server's forward of that datagram too (the same Relay indication). Such an arrow ends a burst, so that every text
keeps an arrow of its own.

An arrow ends at its receiver's column when somebody received it. Otherwise it ends in a cross: where an ICMP error
its socket read came from (the NAT whose Port Unreachable refused it, a router that had no route), at the router
where a low-TTL probe died, or, lost, at the traced process it was for (a datagram for a process without a trace
is drawn as delivered: nothing says it was not).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from punch.diagram import labels
from punch.diagram.cast import Cast, host_of
from punch.diagram.flights import Flight, flights
from punch.diagram.notes import note
from punch.diagram.traces import Datagram, Icmp, LogLine, Trace

# punch.tunnel.texts' lines for what a peer's next QUIC 1-RTT packet carries: a text, the end of its texts
CARRIED: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"^message (\d+) sent to \S+ \(encrypted\): (.*)$"), lambda m: f"message {m[1]} {m[2]}"),
    (re.compile(r"^telling \S+ we are done sending$"), lambda m: "done sending"),
)
# Arrows: a request or indication delivered, an answer delivered, one that never arrived, an ICMP error
REQUEST, ANSWER, CROSS, ANSWER_CROSS, ICMP = "->>", "-->>", "-x", "--x", "--)"
# What a datagram that a peer's socket sends to another peer is (the arrow names the address it went to): a check,
# or QUIC (no method: not STUN)
_ADDRESSED = ("Binding", None)


@dataclass(slots=True)
class Arrow:
    """One datagram (or ``count`` alike ones, from ``t`` to ``until``) from column ``frm`` to ``to``."""

    t: float
    frm: str
    to: str
    line: str
    words: str
    outcome: str = ""  # "lost", "dies here", "refused", or the ICMP error that ended it
    remotes: list[str] = field(default_factory=list)  # where the sender aimed, where that tells something
    count: int = 1
    until: float = 0.0
    plain: bool = False  # a datagram of one QUIC 1-RTT packet that names nothing it carries: part of a burst

    def joins(self, other: Arrow) -> bool:
        """Whether ``other``, right after this one, is one more of the same (same ends, words and outcome, and the
        same destination, or more of the lost ones to one IP)."""
        if (self.frm, self.to, self.line, self.words, self.outcome) != (
            other.frm,
            other.to,
            other.line,
            other.words,
            other.outcome,
        ):
            return False
        if self.remotes == other.remotes[:1] * len(self.remotes) or not (self.remotes or other.remotes):
            return True
        same_ip = {host_of(r) for r in (*self.remotes, *other.remotes)}
        return self.outcome == "lost" and len(same_ip) == 1


@dataclass(frozen=True, slots=True)
class Note:
    t: float
    over: str
    words: str


Step = Arrow | Note


@dataclass(slots=True)
class Story:
    """A run's steps (:func:`story`) and its cast (who the columns are)."""

    cast: Cast
    steps: list[Step]
    start: float  # the first datagram's time: arrows count milliseconds from it

    def used(self) -> list[str]:
        """The participants some step needs."""
        keys: dict[str, None] = {}
        for step in self.steps:
            for key in (step.frm, step.to) if isinstance(step, Arrow) else (step.over,):
                keys[key] = None
        return list(keys)

    def messages(self) -> int:
        """How many datagrams and ICMP errors the arrows stand for."""
        return sum(step.count for step in self.steps if isinstance(step, Arrow))


def story(traces: Sequence[Trace]) -> Story:
    """The steps of the run the traces record."""
    trips = flights(traces)
    cast = Cast(traces, trips)
    teller = _Teller(traces, trips, cast)
    arrows = [teller.arrow(trip) for trip in trips]
    arrows += [teller.icmp(icmp) for trace in traces for icmp in trace.icmps]
    notes = [
        Note(line.t, trace.participant, words)
        for trace in traces
        if trace.role == "peer"
        for line in trace.logs
        if (words := note(line.message)) is not None
    ]
    times = [trip.t for trip in trips] or [note.t for note in notes] or [0.0]
    return Story(cast, _interleave(collapse(bursts(sorted(arrows, key=lambda a: a.t))), notes), min(times))


def _interleave(arrows: list[Arrow], notes: list[Note]) -> list[Step]:
    """The notes among the arrows by time; a note logged during a run of arrows comes after the run."""
    steps: list[Step] = []
    waiting = sorted(notes, key=lambda n: n.t)
    for arrow in arrows:
        while waiting and waiting[0].t < arrow.t:
            steps.append(waiting.pop(0))
        steps.append(arrow)
    return steps + waiting


def bursts(arrows: list[Arrow]) -> list[Arrow]:
    """Each burst of plain QUIC packets (:attr:`Arrow.plain`, in a row) made one arrow per kind that joins
    (:meth:`Arrow.joins`: same ends, words, outcome and destination), in the order each kind first appears."""
    out: list[Arrow] = []
    burst: list[Arrow] = []
    for arrow in arrows:
        if not arrow.plain:
            out += burst
            out.append(arrow)
            burst = []
        elif (kind := next((k for k in burst if k.joins(arrow)), None)) is not None:
            _add(kind, arrow)
        else:
            burst.append(arrow)
    return out + burst


def collapse(arrows: list[Arrow]) -> list[Arrow]:
    """Runs of arrows that join (:meth:`Arrow.joins`) made one arrow each, which counts them; and so a run of one
    exchange repeated (a request and its answer, again and again): two arrows, each counting its own."""
    out: list[Arrow] = []
    index = 0
    while index < len(arrows):
        arrow = arrows[index]
        after = arrows[index + 1] if index + 1 < len(arrows) else None
        if out and out[-1].joins(arrow):
            _add(out[-1], arrow)
        elif (
            len(out) > 1
            and after is not None
            and out[-2].count == out[-1].count
            and out[-2].joins(arrow)
            and (out[-1].joins(after))
        ):
            _add(out[-2], arrow)
            _add(out[-1], after)
            index += 1
        else:
            out.append(arrow)
        index += 1
    return out


def _add(run: Arrow, more: Arrow) -> None:
    run.count += more.count
    run.until = more.until or more.t
    run.remotes += more.remotes


class _Teller:
    """Turns the trips and ICMP errors of the traces into arrows."""

    def __init__(self, traces: Sequence[Trace], trips: list[Flight], cast: Cast) -> None:
        self._traces = traces
        self._cast = cast
        self._requests = {
            str(trip.facts["txid"]): trip.facts
            for trip in trips
            if trip.facts.get("class") == "request" and "txid" in trip.facts
        }
        self._said, self._said_relayed = _carried(traces)
        self._failed = _failures(traces, trips)
        # Where sockets no trace announced were seen (a peer's route probes, punch.peer.hops): what goes there is
        # not lost for want of a receipt, and what comes from there is theirs.
        self._untraced = {
            trip.recv.remote
            for trip in trips
            if trip.send is None and trip.recv is not None and not cast.knows(trip.recv.remote)
        }

    def arrow(self, trip: Flight) -> Arrow:
        cast, facts = self._cast, trip.facts
        answer = facts.get("class") in ("success", "error")
        far = _end(trip).remote  # the other end's address, as this end saw it
        frm = cast.socket(trip.send) if trip.send is not None else cast.lookup(far)
        request = self._requests.get(str(facts.get("txid"))) if answer else None
        ttl = trip.send.ttl if trip.send is not None else None
        # a socket without a trace at a peer that traced its route: that route's probes (punch.peer.hops)
        route = far in self._untraced and cast.traced_route(cast.lookup(far))
        from_server = cast.kind(frm) == "server"
        said = self._said.get(id(trip.send)) or self._said_relayed.get(str(facts.get("txid")))
        words = labels.text(facts, request, from_server=from_server, ttl=ttl, said=said, route=route)
        line, outcome = ANSWER if answer else REQUEST, ""
        if trip.recv is not None:
            to = cast.socket(trip.recv)
        else:
            send = _end(trip)
            error = self._failed.get(id(send))
            if error is not None:
                to = self._offender(error)
                outcome = "refused" if error.what == "port unreachable" else error.what
            elif send.ttl is not None:
                to, outcome = cast.router(send), "dies here"
            else:
                to = cast.lookup(send.remote)
                traced = cast.is_traced(to) and send.remote not in self._untraced
                outcome = "lost" if traced else ""
            if outcome:
                line = ANSWER_CROSS if answer else CROSS
        remotes = [trip.send.remote] if trip.send is not None and self._addressed(trip.send, trip, answer) else []
        plain = facts.get("quic") == ["1-RTT"] and not said
        return Arrow(trip.t, frm, to, line, words, outcome, remotes, until=trip.t, plain=plain)

    def _addressed(self, send: Datagram, trip: Flight, answer: bool) -> bool:
        """Whether the arrow names where its datagram went: a peer's check or QUIC packet to another peer (or a
        Binding to the server's other address), not the answers, nor what goes to the server's own address."""
        if answer or trip.facts.get("method") not in _ADDRESSED:
            return False
        return self._traces[send.trace].role == "peer" and send.remote != self._traces[send.trace].facts.get("server")

    def _offender(self, icmp: Icmp) -> str:
        """The column of whoever sent the ICMP error: the destination itself (a NAT without the mapping), or a
        router on the way."""
        if icmp.offender is not None and icmp.offender == host_of(icmp.remote):
            return self._cast.nat(icmp.offender)
        return self._cast.router_at(icmp.offender, self._cast.main(icmp.trace))

    def icmp(self, icmp: Icmp) -> Arrow:
        to = self._cast.socket_at(icmp.trace, icmp.local)
        return Arrow(icmp.t, self._offender(icmp), to, ICMP, f"ICMP {icmp.what}", until=icmp.t)


def _carried(traces: Sequence[Trace]) -> tuple[dict[int, str], dict[str, str]]:
    """What the peers' log lines say their QUIC packets carry (:data:`CARRIED`): by the id of the datagram that
    carried it, the first with a 1-RTT packet its peer sent after the line; and by the transaction ID of a Relay
    indication, which the server's forward keeps."""
    sent: dict[int, str] = {}
    relayed: dict[str, str] = {}
    for trace in traces:
        waiting: list[str] = []
        events: list[LogLine | Datagram] = [*trace.logs, *(d for d in trace.datagrams if d.sent)]
        for event in sorted(events, key=lambda e: e.t):
            if isinstance(event, LogLine):
                waiting += [words(m) for pattern, words in CARRIED if (m := pattern.match(event.message))]
            elif waiting and "1-RTT" in event.facts.get("quic", ()):
                sent[id(event)] = ", ".join(waiting)
                if "txid" in event.facts:
                    relayed[str(event.facts["txid"])] = sent[id(event)]
                waiting = []
    return sent, relayed


def _end(trip: Flight) -> Datagram:
    end = trip.send or trip.recv
    assert end is not None
    return end


def _failures(traces: Sequence[Trace], trips: list[Flight]) -> dict[int, Icmp]:
    """Each ICMP error a socket read, by the datagram it was about: the latest one nobody received that the socket
    sent to that destination before the error came."""
    unreceived: dict[tuple[int, str, str], list[Datagram]] = defaultdict(list)
    for trip in trips:
        if trip.send is not None and trip.recv is None:
            unreceived[(trip.send.trace, trip.send.local, trip.send.remote)].append(trip.send)
    failed: dict[int, Icmp] = {}
    for trace in traces:
        for icmp in trace.icmps:
            sent = [d for d in unreceived[(icmp.trace, icmp.local, icmp.remote)] if d.t <= icmp.t]
            sent = [d for d in sent if id(d) not in failed]
            if sent:
                failed[id(sent[-1])] = icmp
    return failed
