#!/usr/bin/env bash
# The cluster fault test (cloud/internal/clusterfault, cloud/cmd/clusterfault):
# three NATS nodes as processes (nats-server built from the Go module) whose
# auth callout the cloud instances answer (two responders each), a PostgreSQL failover formation
# (pg_auto_failover: a monitor and two nodes, scripts/pgaf.sh installs it),
# two `cloud serve` instances, simulated devices, real controllers on
# emulated boards and phones, all on loopback. Mid-traffic it SIGKILLs one
# NATS node, then the PostgreSQL primary, then a cloud instance; then it
# checks every usage report a device (or a controller's journal) saw
# acknowledged is settled exactly once with its units, no session
# doubled, the ledger balances and every device reconnected (in the store
# and by its own account), and prints how long each kill stopped session
# starts for. -plant duplicate-capture,unsettle-acked corrupts the
# database before the audit, which must then fail naming each defect.
#
#   scripts/cluster-fault.sh            # long form: 300 devices, 4 controllers, 3 min
#   scripts/cluster-fault.sh -short     # CI form: 60 devices, 2 controllers, 45 s
#   scripts/cluster-fault.sh -devices 500 -duration 5m -keep
#
# Exit status: 0 passed, 1 a violation, 2 the deployment could not be set
# up (a part could not be had: scripts/test.sh skips loudly on 2 unless
# VEND_REQUIRE_SERVICES=1).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
export GOFLAGS="${GOFLAGS:-} -mod=mod"

# The test's own formation (its primary is killed): installed when absent,
# started or reused; it stays up between runs, as scripts/pg.sh's server does.
export VEND_PGAF_DIR="${VEND_PGAF_DIR:-/var/tmp/vend-pgaf-clusterfault}"
# (A formation whose keepers were stopped may need a second call: the
# first starts them and can query a node before it accepts connections.)
ok=0
for try in 1 2 3; do
	if scripts/pgaf.sh >/tmp/vend-pgaf-clusterfault.out 2>/tmp/vend-pgaf-clusterfault.err; then
		ok=1
		break
	fi
	sleep 3
done
if [ "$ok" != 1 ]; then
	cat /tmp/vend-pgaf-clusterfault.err >&2
	echo "cluster-fault.sh: pg_auto_failover could not be had" >&2
	exit 2
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
if ! go build -o "$bin/" ./cloud/cmd/cloud ./controller/cmd/controller ./cloud/cmd/clusterfault; then
	exit 2
fi
"$bin/clusterfault" -cloud-bin "$bin/cloud" -controller-bin "$bin/controller" "$@"
