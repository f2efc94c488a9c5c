"""The kernel boundary: namespaces, netlink (the only place pyroute2 is imported), traffic control, processes
and daemons in namespaces, containers and captures. Every error from below becomes a LabError here."""
