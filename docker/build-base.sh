#!/usr/bin/env bash
# build-base.sh [IMAGE]: a Debian base image with python3 and its venv module, made with debootstrap and
# `docker import`, for machines that cannot pull python:3.12-slim (build with PUNCH_BASE=IMAGE).
#
#   IMAGE                   default local/debian-py; kept if it exists already (PUNCH_BASE_REBUILD=1 remakes it)
#   PUNCH_DEBIAN_SUITE      default bookworm
#   PUNCH_DEBIAN_MIRROR     default: the first Debian mirror in /etc/apt/sources.list*, else deb.debian.org
#
# Needs root, debootstrap and a running Docker engine. Takes about a minute.
set -euo pipefail
image=${1:-local/debian-py}
suite=${PUNCH_DEBIAN_SUITE:-bookworm}

if [ "${PUNCH_BASE_REBUILD:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "build-base: $image exists (PUNCH_BASE_REBUILD=1 remakes it)"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "build-base: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }

mirror=${PUNCH_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -oE '(https?|file)://[^ ]*/debian/?( |$)' | head -n 1 | tr -d ' ' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
fi

root=$(mktemp -d /tmp/punch-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-base: debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv "$suite" "$root/rootfs" "$mirror" > "$root/debootstrap.log" 2>&1 ||
    { tail -n 20 "$root/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/rootfs/var/cache/apt/archives/*.deb "$root"/rootfs/var/cache/apt/*.bin "$root"/rootfs/var/lib/apt/lists/*
tar -C "$root/rootfs" -c . |
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        --message "debootstrap --variant=minbase $suite + python3, python3-venv" - "$image" >/dev/null
echo "build-base: $image: $(docker run --rm "$image" python3 --version)"
