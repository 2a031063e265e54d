#!/usr/bin/env bash
# The fleet load baseline (cloud/LOAD.md): 10,000 simulated devices with
# telemetry every 10 s, 4 real controllers on emulated boards for
# tap-to-relay, phones at 100 and 200 sessions/s, an ingest flood against
# the bare broker, on the three deployments: embedded broker + SQLite,
# Mosquitto + PostgreSQL, and two cloud instances on Mosquitto +
# PostgreSQL. Starts PostgreSQL and Mosquitto (installing them when absent,
# as root), builds the programs, runs cloudbench and prints its table.
# About 8 minutes on 2 cores. Extra arguments go to cloudbench, e.g.
#   scripts/fleet-bench.sh -deploy embedded-sqlite -rate 100 -find-max
#   scripts/fleet-bench.sh -cloud /path/to/an/older/cloud    (before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
export "$(scripts/pg.sh | tail -n1)"
export "$(scripts/mosquitto.sh | tail -n1)"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cloud/cmd/cloud ./controller/cmd/controller ./cloud/cmd/cloudbench
# 10,000 devices are 10,000 sockets in the bench and as many in the broker.
ulimit -n "$(ulimit -Hn)"
"$bin/cloudbench" -cloud "$bin/cloud" -controller "$bin/controller" \
	-deploy embedded-sqlite,mosquitto-postgres,mosquitto-postgres-x2 \
	-devices 10000 -connect-rate 500 -telemetry 10s -rate 100,200 -duration 15s -drain 20s \
	-relay 4 -flood 20 -flood-duration 5s "$@"
