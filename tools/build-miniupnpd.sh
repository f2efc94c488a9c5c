#!/usr/bin/env bash
# build-miniupnpd.sh: miniupnpd 2.3.9 for the lab's port-mapping routers (`port-mapping: true`), built from Debian
# 13's (trixie's) source package on this machine, the nftables flavour, as Debian builds it.
#
#   PUNCH_MINIUPNPD_DIR     default /var/cache/punch/miniupnpd; the binary goes to sbin/miniupnpd there, with
#                           SOURCE naming the source package it came from. Kept if it exists (PUNCH_MINIUPNPD_REBUILD=1
#                           builds it again).
#   PUNCH_DEBIAN_MIRROR     default: the first Debian mirror in /etc/apt/sources.list*, else deb.debian.org
#
# Why not Debian 12's package: its miniupnpd 2.3.1 refuses every mapping when the WAN address is reserved (the
# lab's are documentation ranges) and has no option against it; 2.3.9 has ext_allow_private_ipv4. Trixie's binary
# package needs glibc 2.38, so it is built here against this system's libraries instead (a native binary: no
# chroot, nothing mounted). The source comes through apt (signed Release, checked .dsc) with a private state
# directory: the system's apt sources are not touched.
#
# Needs root (apt-get install of the build tools). Takes about half a minute; nothing when it is already built.
set -euo pipefail
dir=${PUNCH_MINIUPNPD_DIR:-/var/cache/punch/miniupnpd}
suite=trixie
want=2.3.9

if [ "${PUNCH_MINIUPNPD_REBUILD:-0}" != 1 ] && [ -x "$dir/sbin/miniupnpd" ] && [ -f "$dir/SOURCE" ]; then
    echo "build-miniupnpd: $dir/sbin/miniupnpd is there ($(cat "$dir/SOURCE")); PUNCH_MINIUPNPD_REBUILD=1 builds it again"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
missing=""
for pkg in gcc make dpkg-dev pkgconf libnftnl-dev libmnl-dev uuid-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "build-miniupnpd: installing$missing"
    apt-get install -y -qq $missing >/dev/null
fi

mirror=${PUNCH_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -oE '(https?|file)://[^ ]*/debian/?( |$)' | head -n 1 | tr -d ' ' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
fi

work=$(mktemp -d /tmp/punch-miniupnpd.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's download user must be able to write there
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
echo "deb-src $mirror $suite main" > "$work/sources.list"
apt_private=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
echo "build-miniupnpd: source package miniupnpd from $mirror $suite"
apt-get "${apt_private[@]}" -qq update
(cd "$work/src" && apt-get "${apt_private[@]}" -qq source miniupnpd >/dev/null 2>"$work/source.log") ||
    { cat "$work/source.log" >&2; exit 1; }
tree=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'miniupnpd-*' | head -n 1)
dsc=$(basename "$(find "$work/src" -maxdepth 1 -name 'miniupnpd_*.dsc' | head -n 1)" .dsc)
case "$tree" in
    */miniupnpd-$want) ;;
    *) echo "build-miniupnpd: $suite has ${tree##*/}, this script builds $want; update it" >&2; exit 1 ;;
esac

# debian/rules' configure arguments, nftables flavour (miniupnpd-nftables)
echo "build-miniupnpd: building $dsc"
(cd "$tree" && ./configure --ipv6 --igd2 --leasefile --vendorcfg --pcp-peer --portinuse --regex --firewall=nftables &&
    make -f Makefile.linux_nft miniupnpd) > "$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; exit 1; }
mkdir -p "$dir/sbin"
install -m 755 "$tree/miniupnpd" "$dir/sbin/miniupnpd.new"
mv "$dir/sbin/miniupnpd.new" "$dir/sbin/miniupnpd"
echo "$dsc (nftables), built $(date -u +%Y-%m-%d) against $(. /etc/os-release && echo "$PRETTY_NAME")" > "$dir/SOURCE"
echo "build-miniupnpd: $dir/sbin/miniupnpd ($(cat "$dir/SOURCE"))"
