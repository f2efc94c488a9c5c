"""The connectivity matrix: cells (NAT preset pairs, same NAT, CGNAT per firewall kind), the runner that
brings up a lab per cell and runs the caller's trials in it, and the report (matrix.md and matrix.json)."""
