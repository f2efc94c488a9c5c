"""UPnP IGD: find the router's Internet Gateway Device with an SSDP search, then map a port with miniupnpc.

The search (UPnP Device Architecture 1.1 §1.3.2) is ours: an M-SEARCH sent to the router itself, unicast to its port
1900, over the same exchange as PCP's (punch.portmap.exchange), answered with the device's description URL
(LOCATION). An answer that is not HTTP 200 with a LOCATION is dropped as malformed; a LOCATION on another host than
the router we asked is dropped as not ours (we talk only to that router). Nothing goes to the multicast group.

The SOAP calls (AddPortMapping, GetExternalIPAddress, DeletePortMapping over HTTP) are miniupnpc's (PyPI
``miniupnpc``, the reference client, in C). They block, so each runs in a daemon thread of its own and is waited
for at most ``timeout`` seconds: a device that answers slowly costs that long, then the mapper moves on; the thread
ends on miniupnpc's own timeouts (or with the process, being a daemon). A client whose call timed out is not used
again (its miniupnpc object may still be busy).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import miniupnpc

from punch.portmap.errors import Mismatch, NotSpoken, PortmapDecodeError, PortmapError
from punch.portmap.exchange import ask_router
from punch.portmap.grant import Grant
from punch.stun.transaction import RetransmitPolicy

T = TypeVar("T")

SSDP_PORT = 1900
IGD = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"  # an IGD:2 answers a search for version 1 too
DESCRIPTION = "punch"  # the mapping's description, as the router lists it
ONLY_PERMANENT = "OnlyPermanentLeasesSupported"  # UPnP error 725: an IGD:1 that takes only lease 0


def encode_search() -> bytes:
    """An M-SEARCH for an Internet Gateway Device (UDA 1.1 §1.3.2), sent unicast to the router."""
    return (
        f'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: {IGD}\r\n\r\n'
    ).encode("ascii")


def read_location(router_ip: str, data: bytes) -> str:
    """The description URL in a search's answer from ``router_ip``; PortmapDecodeError for an answer that is not
    HTTP 200 with a LOCATION, Mismatch for a LOCATION that is not an http URL on ``router_ip``."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise PortmapDecodeError("SSDP answer", "not ASCII text") from None
    status, *lines = text.split("\r\n")
    parts = status.split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or parts[1] != "200":
        raise PortmapDecodeError("SSDP status line", f"expected HTTP/1.1 200, got {status[:40]!r}")
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    location = headers.get("location")
    if not location:
        raise PortmapDecodeError("SSDP LOCATION", "missing")
    try:
        url = urllib.parse.urlsplit(location)
        scheme, host = url.scheme, url.hostname
    except ValueError:  # an unbalanced IPv6 bracket, a bad port
        scheme, host = "", None
    if scheme != "http" or host != router_ip:
        raise Mismatch(f"SSDP LOCATION {location[:80]!r} is not an http URL on router {router_ip}")
    return location


def _in_thread(call: Callable[[], T], future: asyncio.Future[T]) -> None:
    """Run ``call`` in this (daemon) thread and hand its outcome to ``future`` on its loop, if that still waits."""
    loop = future.get_loop()

    def settle(outcome: Any, failed: bool) -> None:
        if not future.done():
            (future.set_exception if failed else future.set_result)(outcome)

    try:
        result: Any = call()
        failed = False
    except Exception as error:  # miniupnpc raises Exception itself, with its message
        result, failed = error, True
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
        loop.call_soon_threadsafe(settle, result, failed)


class UpnpClient:
    """Asks one router in UPnP IGD (module docstring)."""

    name = "UPnP IGD"

    def __init__(
        self, router: str, ssdp_port: int, policy: RetransmitPolicy, timeout: float, counters: Counter[str]
    ) -> None:
        self._router = router
        self._ssdp = (router, ssdp_port)
        self._policy = policy
        self._timeout = timeout
        self._counters = counters
        self._igd: Any = None  # the miniupnpc.UPnP object, once the description was read
        self._stuck = False  # a call timed out: its object may still be busy in its thread

    async def _call(self, what: str, call: Callable[[], T]) -> T:
        if self._stuck:
            raise NotSpoken(f"its IGD did not answer an earlier call within {self._timeout:g} s")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        threading.Thread(target=_in_thread, args=(call, future), name="upnp", daemon=True).start()
        try:
            async with asyncio.timeout(self._timeout):
                return await future
        except TimeoutError:
            self._stuck = True
            raise NotSpoken(f"its IGD did not answer {what} within {self._timeout:g} s") from None
        except PortmapError:
            raise
        except Exception as error:
            raise PortmapError(f"its IGD refused {what}: {error}") from None

    async def probe(self) -> None:
        """Search for the router's IGD and read its description: NotSpoken if no IGD answers, or too slowly."""
        router = self._router
        search, read = encode_search(), lambda data: read_location(router, data)
        location = await ask_router("SSDP", self._ssdp, self._counters, self._policy, lambda _: search, read)
        igd = miniupnpc.UPnP()
        await self._call("its description", lambda: igd.selectigd(location))
        self._igd = igd

    async def map(self, internal_port: int, suggested_port: int, lifetime: int) -> Grant:
        """AddPortMapping of our UDP ``internal_port`` on ``suggested_port`` for ``lifetime`` seconds (again: a
        renewal); an IGD:1 that takes only permanent leases gets lease 0 (lifetime 0: deleted on close)."""
        igd = self._igd
        if igd is None:
            raise NotSpoken("no IGD found (search first)")
        lanaddr = igd.lanaddr

        def add(lease: int) -> Callable[[], object]:
            return lambda: igd.addportmapping(suggested_port, "UDP", lanaddr, internal_port, DESCRIPTION, "", lease)

        try:
            await self._call("AddPortMapping", add(lifetime))
        except PortmapError as error:
            if ONLY_PERMANENT not in str(error):
                raise
            lifetime = 0
            await self._call("AddPortMapping", add(0))
        external = await self._call("GetExternalIPAddress", igd.externalipaddress)
        return Grant(str(external) if external else None, suggested_port, lifetime)

    async def unmap(self, internal_port: int, external_port: int) -> None:
        """DeletePortMapping of our mapping on ``external_port``."""
        igd = self._igd
        if igd is None:
            raise NotSpoken("no IGD found")
        await self._call("DeletePortMapping", lambda: igd.deleteportmapping(external_port, "UDP"))
