#!/usr/bin/env bash
# The chaos soak (cloud/internal/chaos): the real cloud, Mosquitto, SQLite
# (or PostgreSQL with -db postgres), real controllers on emulated boards
# and phones on loopback, with random link cuts, broker restarts,
# controller and cloud SIGKILLs, Stops at random moments, price changes
# racing starts and skewed device clocks; then every session, the ledger
# and every machine are audited. Prints a table and exits 1 on any
# violation. Starts Mosquitto and PostgreSQL as the tests do (installing
# them when absent, as root) and builds the programs. Arguments go to
# chaossoak, e.g.
#   scripts/chaos-soak.sh -duration 10m
#   scripts/chaos-soak.sh -duration 10m -db postgres -seed 7 -keep
#   scripts/chaos-soak.sh -duration 2m -link-cuts 20 -cloud-kills 0
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
export "$(scripts/mosquitto.sh | tail -n1)"
for a in "$@"; do
	if [ "$a" = postgres ]; then export "$(scripts/pg.sh | tail -n1)"; fi
done
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cloud/cmd/cloud ./controller/cmd/controller ./cloud/cmd/chaossoak
"$bin/chaossoak" -cloud-bin "$bin/cloud" -controller-bin "$bin/controller" "$@"
