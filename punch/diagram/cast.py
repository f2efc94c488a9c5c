"""Who is in the diagram, and which column each datagram's ends belong to.

A participant per traced process ("peer 10", "server"); a peer's fresh socket after a move, and port prediction's
many sockets, get columns of their own beside it. The other ends of datagrams are found from what the traces say
of addresses: where a receiver saw a sender, where a sender aimed at a receiver, the candidates a peer registered
and was introduced to, the endpoint the server saw (XOR-MAPPED-ADDRESS). A low-TTL probe that nobody received died
at the router its TTL reached: the one the sender's own route trace found at that TTL ("route to the server: ...",
punch.peer.hops), or the one whose ICMP Time Exceeded its socket read. A datagram refused with ICMP Port Unreachable
ends at the NAT that refused it. An address nothing explains is a participant of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from punch.diagram.flights import Flight
from punch.diagram.traces import Datagram, Trace

WILDCARDS = ("0.0.0.0", "::")
# Log lines of a peer (punch.peer.session, punch.peer.moving) that say where its probes die and which socket is new
ROUTE = re.compile(r"^route to the server: ")
DIED = re.compile(r"TTL (\d+) died at ([0-9A-Fa-f.:]+)")
FRESH = re.compile(r"moving to a fresh socket \(port (\d+)\)")

Column = tuple[str, list[str]]  # a column's id and its label's lines


def host_of(address: str) -> str:
    """``1.2.3.4:5`` -> ``1.2.3.4``; ``[2001:db8::1]:5`` -> ``2001:db8::1``; a bare IP stays as it is."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    return address.rpartition(":")[0] if address.count(":") == 1 else address


def port_of(address: str) -> int | None:
    tail = address.rpartition(":")[2]
    return int(tail) if tail.isdigit() and (address.count(":") == 1 or address.startswith("[")) else None


@dataclass(slots=True)
class Participant:
    """A column: ``key`` is its name unless renamed; ``owner`` the peer a socket or NAT belongs to, or whose probes
    died at a router (where it is placed)."""

    key: str
    kind: str  # "peer", "server", "socket" (a fresh one), "sockets" (port prediction's), "router", "nat", "host"
    traced: bool = False
    owner: str | None = None
    addresses: set[str] = field(default_factory=set)
    seen_as: str | None = None  # where the others see it (the server's XOR-MAPPED-ADDRESS, else a receiver's view)
    hosts: tuple[str, ...] = ()  # a peer's host candidates, as it registered them
    sockets: int = 0  # port prediction's sockets in the column

    def label(self) -> list[str]:
        """Its name, then what identifies it (lines)."""
        if self.kind == "sockets":
            return [f"{self.owner}'s {self.sockets} other sockets"]
        if self.kind == "nat":
            return [self.key, f"in front of {self.owner}"] if self.owner else [self.key]
        lines = [self.key, *self.hosts]
        if self.seen_as is not None and self.seen_as not in self.hosts and self.kind != "server":
            lines.append(f"seen as {self.seen_as}")
        return lines


class Cast:
    """The participants of the traces' run and the column of each datagram's sender and receiver."""

    def __init__(self, traces: Sequence[Trace], flights: Iterable[Flight]) -> None:
        self.participants: dict[str, Participant] = {}
        self._traces = list(traces)
        self._sockets: dict[tuple[int, str], str] = {}
        self._book: dict[str, str] = {}  # address -> participant key
        self._routes: dict[int, dict[int, str]] = {}  # trace -> TTL -> the router a probe with it dies at
        self._routed: set[str] = set()  # the processes that logged a route trace
        for trace in self._traces:
            self._enrol(trace)
        trips = list(flights)
        self._learn_from_trips(trips)
        self._learn_from_attributes(trips)

    def _add(self, key: str, kind: str, *, traced: bool = False, owner: str | None = None) -> Participant:
        known = self.participants.get(key)
        if known is None:
            known = self.participants[key] = Participant(key, kind, owner=owner)
        known.traced = known.traced or traced
        return known

    def _note(self, address: str, key: str) -> None:
        self._book.setdefault(address, key)
        self.participants[key].addresses.add(address)

    def _enrol(self, trace: Trace) -> None:
        main = self._add(trace.participant, "server" if trace.role == "server" else "peer", traced=True).key
        fresh = {int(m[1]) for line in trace.logs if (m := FRESH.search(line.message))}
        for number, local in enumerate(trace.sockets):
            if number == 0 or trace.role == "server":  # a server's sockets (RFC 5780's four) are one column
                key = main
            elif port_of(local) in fresh:
                key = self._add(f"{main}'s fresh socket", "socket", traced=True, owner=main).key
            else:
                other = self._add(f"{main}'s other sockets", "sockets", traced=True, owner=main)
                other.sockets += 1
                key = other.key
            self._sockets[(trace.index, local)] = key
            if host_of(local) not in WILDCARDS:
                self._note(local, key)
                if trace.role == "server" and number == 0:
                    self.participants[key].hosts = (local,)
        server = trace.facts.get("server")
        if trace.role == "peer" and isinstance(server, str):
            known = self._add("server", "server")
            known.hosts = known.hosts or (server,)
            self._note(server, known.key)
        routes = [line.message for line in trace.logs if ROUTE.match(line.message)]
        if routes:
            self._routed.add(main)
        self._routes[trace.index] = {int(ttl): router for route in routes for ttl, router in DIED.findall(route)}

    def _learn_from_trips(self, trips: list[Flight]) -> None:
        for trip in trips:
            if trip.send is not None and trip.recv is not None:
                sender, receiver = self.socket(trip.send), self.socket(trip.recv)
                self._note(trip.recv.remote, sender)  # where the receiver saw the sender
                self._note(trip.send.remote, receiver)  # where the sender aimed at the receiver
                if self.participants[sender].seen_as is None and host_of(trip.recv.remote) not in WILDCARDS:
                    self.participants[sender].seen_as = trip.recv.remote

    def _learn_from_attributes(self, trips: list[Flight]) -> None:
        for trip in trips:
            facts = trip.facts
            method, kind = facts.get("method"), facts.get("class")
            candidates = [c for c in facts.get("candidates", ()) if isinstance(c, str)]
            mapped = facts.get("mapped")
            if method == "Register" and kind == "request" and trip.send is not None:
                sender = self.participants[self.socket(trip.send)]
                sender.hosts = sender.hosts or tuple(candidates)
                for candidate in candidates:
                    self._note(candidate, sender.key)
            elif kind == "success" and isinstance(mapped, str) and trip.recv is not None:
                receiver = self.socket(trip.recv)
                self._note(mapped, receiver)
                if method == "Register":  # the server's view is the one a peer is known by
                    self.participants[receiver].seen_as = mapped
            elif method == "Introduce" and kind == "request" and isinstance(peer := facts.get("peer"), str):
                other = self._add(f"peer {peer}", "peer").key
                for candidate in candidates:
                    self._note(candidate, other)
            elif method == "Go" and candidates and isinstance(peer := facts.get("peer"), str):
                mover = self._add(f"peer {peer}", "peer").key
                fresh = self._add(f"{mover}'s fresh socket", "socket", owner=mover)
                fresh.seen_as = fresh.seen_as or candidates[0]
                self._note(candidates[0], fresh.key)

    # -- lookups ------------------------------------------------------------------------------------------------

    def socket(self, datagram: Datagram) -> str:
        """The column of the traced socket that sent or received ``datagram``."""
        return self.socket_at(datagram.trace, datagram.local)

    def socket_at(self, trace: int, local: str) -> str:
        """The column of trace ``trace``'s socket at ``local`` (its process's, for one the trace did not announce)."""
        return self._sockets.get((trace, local), self._traces[trace].participant)

    def knows(self, address: str) -> bool:
        """Whether the traces say whose ``address`` is (not only whose IP)."""
        return address in self._book

    def traced_route(self, key: str) -> bool:
        """Whether the process of column ``key`` logged a route trace (punch.peer.hops: one socket per TTL)."""
        return key in self._routed

    def lookup(self, address: str) -> str:
        """The column of whoever uses ``address``: as known, else the one participant known at its IP (a NAT maps
        many ports of one IP to the peer behind it), else a participant of its own for that IP."""
        key = self._book.get(address)
        if key is not None:
            return key
        ip = host_of(address)
        owners = {self.owner(k) for a, k in self._book.items() if host_of(a) == ip}
        if len(owners) == 1:
            return owners.pop()
        host = self._add(ip, "host")
        host.addresses.update((ip, address))
        return host.key

    def owner(self, key: str) -> str:
        """The peer a socket column belongs to (the participant itself otherwise)."""
        participant = self.participants[key]
        return participant.owner if participant.kind in ("socket", "sockets") and participant.owner else key

    def main(self, trace: int) -> str:
        return self._traces[trace].participant

    def router(self, probe: Datagram) -> str:
        """Where a low-TTL probe that nobody received died: the router whose ICMP Time Exceeded its socket read, or
        the one at its TTL on the sender's route to the server."""
        trace = self._traces[probe.trace]
        exceeded = [
            icmp.offender
            for icmp in trace.icmps
            if icmp.time_exceeded and icmp.remote == probe.remote and icmp.local == probe.local and icmp.t >= probe.t
        ]
        ip = exceeded[0] if exceeded and exceeded[0] else self._routes[probe.trace].get(probe.ttl or 0)
        return self.router_at(ip, trace.participant, probe.ttl)

    def router_at(self, ip: str | None, owner: str, ttl: int | None = None) -> str:
        """The router at ``ip`` (where ``owner``'s datagrams died), or, unknown, the one ``ttl`` hops from it."""
        router = self._add(f"router {ip}" if ip else f"router {ttl} hops from {owner}", "router", owner=owner)
        if ip:
            router.addresses.add(ip)
        return router.key

    def nat(self, ip: str) -> str:
        """The NAT at ``ip`` (it refused a datagram to itself: no mapping there), in front of the one peer at ``ip``."""
        owners = {self.owner(k) for a, k in self._book.items() if host_of(a) == ip}
        nat = self._add(f"NAT {ip}", "nat", owner=owners.pop() if len(owners) == 1 else None)
        nat.addresses.add(ip)
        return nat.key

    def is_traced(self, key: str) -> bool:
        return self.participants[key].traced

    def kind(self, key: str) -> str:
        return self.participants[key].kind

    # -- columns ------------------------------------------------------------------------------------------------

    def columns(self, used: Iterable[str], names: Mapping[str, str]) -> tuple[list[Column], dict[str, str]]:
        """The columns, left to right, as (id, label lines), and each used participant's column id. The first peer
        stands left with its sockets, its NAT and the routers its probes died at, toward the server; the other
        peers mirror that to the right. ``names`` renames a participant by its name or by one of its addresses
        (an IP:PORT it used, a router's or NAT's IP); participants renamed alike share a column."""
        wanted = set(used)
        ordered = self._order(wanted)
        columns: list[Column] = []
        column_of_label: dict[str, str] = {}
        column: dict[str, str] = {}
        for participant in ordered:
            label = self._renamed(participant, names) or participant.label()
            text = "\n".join(label)
            if text not in column_of_label:
                column_of_label[text] = f"P{len(columns) + 1}"
                columns.append((column_of_label[text], label))
            column[participant.key] = column_of_label[text]
        return columns, column

    @staticmethod
    def _renamed(participant: Participant, names: Mapping[str, str]) -> list[str] | None:
        for who, label in names.items():
            if who == participant.key or who in participant.addresses:
                return [label]
        return None

    def _order(self, wanted: set[str]) -> list[Participant]:
        everyone = [p for p in self.participants.values() if p.key in wanted]
        peers = [p for p in everyone if p.kind == "peer"]

        def side(peer: Participant) -> list[Participant]:
            own = [p for p in everyone if p.owner == peer.key]
            kinds = ("socket", "sockets", "nat", "router")
            return [peer, *(p for kind in kinds for p in own if p.kind == kind)]

        order = side(peers[0]) if peers else []
        order += [p for p in everyone if p.kind == "server"]
        for peer in peers[1:]:
            order += reversed(side(peer))
        placed = {p.key for p in order}
        return order + [p for p in everyone if p.key not in placed]
