"""What applications put through a punched path: each QUIC stream starts with a header naming its service
(header), and the services that use them: forwarded TCP connections and UDP flows (forward), files (files),
texts (texts), with the copying both ways that they share (pipe). Knows streams and datagrams, not paths."""
