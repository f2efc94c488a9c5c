"""Who a peer is: its long-term key pair (keyfile), the fingerprint people compare (fingerprint), the peers it
trusts (known_peers), and the session keys only two peers can derive (agreement). The rendezvous server stores and
passes on public keys only."""
