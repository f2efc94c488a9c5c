# punch: one small image for the rendezvous server, the peers and the NAT routers of compose.yaml.
#
#   DOCKER_BUILDKIT=1 docker build -t punch .
#   DOCKER_BUILDKIT=1 docker build --build-arg BASE=local/debian-py --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t punch .
#
# BASE is any Debian-based image with python3 >= 3.11 and its venv module (ensurepip): python:3.12-slim, or
# local/debian-py (docker/build-base.sh: debootstrap, for machines that cannot reach Docker Hub). The
# optional BuildKit secret `ca` is a CA bundle for pip (a TLS-intercepting proxy); without it pip uses its own.
# The default command is the server, as user `punch`, with a HEALTHCHECK (a STUN Binding request); the NAT
# routers and the peers run docker/nat-router.sh and docker/peer.sh as root with NET_ADMIN (compose.yaml).
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml requirements.txt README.md ./
COPY punch ./punch
COPY netns ./netns
# The wheel of punch and of its dependencies, at the versions pinned in requirements.txt.
RUN --mount=type=secret,id=ca \
    set -eu; \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca REQUESTS_CA_BUNDLE=/run/secrets/ca; fi; \
    python3 -m venv /tmp/pip; \
    /tmp/pip/bin/pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels --constraint requirements.txt .

FROM ${BASE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# iproute2, iptables/nftables and conntrack for the routers; setpriv (util-linux) drops the peers to `punch`.
RUN set -eu; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends iproute2 iptables nftables conntrack util-linux >/dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log; \
    command -v setpriv; \
    useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin punch; \
    install -d -m 0700 -o punch -g punch /var/lib/punch
# A venv (works on Debian's own python3 too), filled from the wheels only: no index, no compiler.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    set -eu; \
    python3 -m venv /opt/punch; \
    /opt/punch/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /wheels punch; \
    /opt/punch/bin/pip uninstall -y -q pip; \
    /opt/punch/bin/punch --version
COPY docker/stun-check.py /usr/local/bin/stun-check
COPY docker/nat-router.sh /usr/local/bin/nat-router
COPY docker/peer.sh /usr/local/bin/peer
RUN chmod 0755 /usr/local/bin/stun-check /usr/local/bin/nat-router /usr/local/bin/peer
# The peer's identity and known peers (punch.identity): made on first use here; mount a volume to keep them.
ENV PATH=/opt/punch/bin:$PATH XDG_CONFIG_HOME=/var/lib/punch
USER punch
EXPOSE 3478/udp
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["stun-check", "127.0.0.1:3478"]
ENTRYPOINT ["punch"]
CMD ["server", "--listen", "0.0.0.0:3478"]
