#!/bin/sh
# peer: route this container's traffic through its NAT router, drop root, then run punch peer.
#
#   PUNCH_GATEWAY  the router's LAN address (the default route)
#   PUNCH_SERVER, PUNCH_ID, PUNCH_TO  defaults for `punch peer --server --id --to`
#
# `peer [ARGS...]`: with no arguments or arguments starting with '-', runs
#     punch peer --server $PUNCH_SERVER --id $PUNCH_ID --to $PUNCH_TO ARGS...
# (a later --id/--to/--server in ARGS wins); anything else is run as a command (`peer ip route`).
# Needs NET_ADMIN for the route only: the command runs as user punch with no capabilities.
set -eu
ip route replace default via "${PUNCH_GATEWAY:?set PUNCH_GATEWAY to the LAN address of the NAT router}"
case "${1:-}" in
    "" | -*) set -- punch peer --server "${PUNCH_SERVER:?}" --id "${PUNCH_ID:?}" --to "${PUNCH_TO:?}" "$@" ;;
esac
exec setpriv --reuid=punch --regid=punch --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
