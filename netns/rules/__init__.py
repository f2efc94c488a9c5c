"""Rule text for the kernel: iptables NAT and firewall rulesets, nftables tables, and the rules and qdisc
parameters that build link impairments. Pure: text and parameters only, loaded by netns/kernel."""
