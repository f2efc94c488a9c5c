"""The connectivity matrix: cells (NAT preset pairs, same NAT, CGNAT per firewall kind, the networks that fail in
the wild), the runner that brings up a lab per cell and runs the caller's trials in it, the report (matrix.md,
matrix.json, matrix.html), and shards: a run split over machines (``--shard K/N``) and merged into one report."""
