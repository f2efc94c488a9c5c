"""Port mapping: ask the router in front of us to forward a public port to our socket, so that any remote may reach
us there whatever the router's NAT and filtering do (two symmetric NATs can then talk directly).

Three protocols, tried in this order (:class:`punch.portmap.mapper.Mapper`, after Tailscale's portmapper):
PCP (RFC 6887, :mod:`punch.portmap.pcp`), NAT-PMP (RFC 6886, :mod:`punch.portmap.natpmp`) and UPnP IGD
(:mod:`punch.portmap.upnp`: our own SSDP search, then miniupnpc for the SOAP calls). PCP and NAT-PMP share the
router's port 5351 and one request/response exchange (:mod:`punch.portmap.exchange`), which drops and counts every
datagram that does not answer our request. The mapper owns the mapping's life: it asks, renews before the lifetime
ends, notices a router that lost it, and deletes it on close.

This package knows nothing of punch's peer: it is told which router to ask and which port to map.
"""
