"""netns: a network-namespace lab built from a YAML topology, with the kernel's own NAT in its routers.

A general instrument: it knows nothing of punch and never imports it; it runs any program in its nodes.
Lifecycle: validate (model) -> plan -> apply; ``down`` deletes only what the lab owns (see lifecycle).
"""
