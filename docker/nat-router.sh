#!/bin/sh
# nat-router: turn this container into a home router between two Docker networks, then wait.
#
#   PUNCH_WAN_SUBNET  the public side, e.g. 198.51.100.0/24   PUNCH_LAN_SUBNET  the LAN, e.g. 10.0.10.0/24
#   PUNCH_FIREWALL    home (default) or none, as in the netns lab (netns/rules/nat.py)
#
# Interfaces are found by subnet (Docker names them in attach order, which is not the compose order).
# Needs NET_ADMIN and net.ipv4.ip_forward=1 (compose sysctls). Rules are appended, never flushed: Docker's
# embedded DNS keeps its own nat rules in this namespace.
#   MASQUERADE out of the WAN: the peers' packets meet this NAT, not Docker's (the networks are internal).
#   home: FORWARD only LAN->WAN and ESTABLISHED,RELATED back; on the WAN, INPUT takes ESTABLISHED,RELATED and
#         drops the rest. An unsolicited packet to the WAN address is dropped before conntrack confirms it,
#         so it leaves no entry (this is what keeps punch's simultaneous open free of the conntrack race).
set -eu
log() { echo "nat-router: $*" >&2; }

iface_in() {  # the interface holding an address in subnet $1, waiting up to 10 s for Docker to attach it
    tries=0
    while :; do
        name=$(ip -o -4 addr show to "$1" | awk '{print $2; exit}')
        [ -n "$name" ] && { echo "$name"; return 0; }
        tries=$((tries + 1))
        [ "$tries" -ge 100 ] && { log "no interface in $1 after 10 s"; return 1; }
        sleep 0.1
    done
}

wan=$(iface_in "${PUNCH_WAN_SUBNET:?set PUNCH_WAN_SUBNET, e.g. 198.51.100.0/24}")
lan=$(iface_in "${PUNCH_LAN_SUBNET:?set PUNCH_LAN_SUBNET, e.g. 10.0.10.0/24}")
firewall=${PUNCH_FIREWALL:-home}
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || { log "net.ipv4.ip_forward is 0; set it with sysctls"; exit 1; }

# A router on this "internet" reaches only its two connected subnets: drop the default route Docker gave it
# (via the host's address on the LAN bridge), so nothing it forwards can leave through the host.
ip route del default 2>/dev/null || true
iptables -t nat -A POSTROUTING -o "$wan" -j MASQUERADE
case "$firewall" in
    home)
        iptables -P FORWARD DROP
        iptables -A FORWARD -i "$lan" -o "$wan" -j ACCEPT
        iptables -A FORWARD -i "$wan" -o "$lan" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        iptables -A INPUT -i "$wan" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        iptables -A INPUT -i "$wan" -j DROP
        ;;
    none) ;;
    *) log "PUNCH_FIREWALL must be home or none, got '$firewall'"; exit 2 ;;
esac
touch /run/nat-router.ready  # the compose healthcheck: peers start only once the NAT is in place
log "routing $lan ($PUNCH_LAN_SUBNET) -> $wan ($PUNCH_WAN_SUBNET) with MASQUERADE, firewall $firewall"

trap 'exit 0' TERM INT
sleep infinity &
wait $!
