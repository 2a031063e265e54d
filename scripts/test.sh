#!/usr/bin/env bash
# The project's one test command (README: "Test"). It checks formatting and
# vet, then runs every Go test with the race detector and ends with go test's
# own summary line. CI (.ci/run) calls this and nothing else.
#
# Environment:
#   VEND_REQUIRE_SERVICES=1  suites that need a real service fail instead of
#                            skipping when the service cannot be had (CI sets it)
#   VEND_TEST_TIMEOUT        per-package go test timeout (default 20m)
#
# It makes the real services available first (PostgreSQL, Mosquitto, Node
# for the independent Modbus peer and the WeChat Pay and Alipay peers, whose
# npm packages the tests install with npm ci from their lockfiles into the
# user's cache, and for axe-core in the browser suites; Chromium for those
# suites; poppler-utils for the sticker sheet's PDF), installing them with
# apt-get when absent and running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="/usr/local/go/bin:$PATH"
export GOFLAGS="${GOFLAGS:-} -mod=mod"

step() { printf '\n== %s\n' "$*"; }

# Real services the integration suites use. Each helper script installs
# (apt-get, as root) or starts what is missing and prints VAR=value last.
need() { # name script
	local out
	if out=$("$2" 2>/tmp/vend-$1.err); then
		export "$(printf '%s\n' "$out" | tail -n1)"
		echo "$1: $(printf '%s\n' "$out" | tail -n1)"
	else
		cat /tmp/vend-$1.err >&2
		if [ "${VEND_REQUIRE_SERVICES:-}" = 1 ]; then
			echo "FAIL: $1 is required (VEND_REQUIRE_SERVICES=1) and could not be made available" >&2
			exit 1
		fi
		echo "!!! WARNING: $1 unavailable: its integration suites will be SKIPPED !!!" >&2
	fi
}

step "services"
need postgresql scripts/pg.sh
need mosquitto scripts/mosquitto.sh
need node scripts/node.sh
need chromium scripts/chromium.sh

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*') 2>/dev/null || true)
if [ -n "$unformatted" ]; then
	echo "gofmt: these files need formatting:"; echo "$unformatted"; exit 1
fi
echo "ok"

step "go vet"
go vet ./...
echo "ok"

# vm_test NAME SCRIPT: a VM test script's exit 2 means qemu or its
# packages could not be had: a failure under VEND_REQUIRE_SERVICES=1, a
# loud skip otherwise; any other non-zero exit fails the run.
vm_test() {
	local rc=0
	"$2" || rc=$?
	if [ "$rc" -eq 2 ]; then
		if [ "${VEND_REQUIRE_SERVICES:-}" = 1 ]; then
			echo "FAIL: the $1 VM test could not run and VEND_REQUIRE_SERVICES=1" >&2
			exit 1
		fi
		echo "!!! WARNING: the $1 VM test could not run here: SKIPPED !!!" >&2
	elif [ "$rc" -ne 0 ]; then
		echo "FAIL: $1 VM test" >&2
		exit 1
	fi
}

step "BLE on a real Linux Bluetooth stack (qemu + btvirt)"
# The controller's go-ble beacon, heard by BlueZ's btmon/hcitool and by the
# product's own scanner in a VM (about 35 s; see hw/ble/VM.md).
vm_test BLE scripts/ble-vm-test.sh

step "a provisioned board on a real Linux Bluetooth stack and a TLS Mosquitto (qemu)"
# cloud device add + controller import-bundle; the controller advertises
# over HCI in a VM and connects over TLS to a Mosquitto running as its own
# user from the generated files (about 35 s warm; see hw/ble/VM.md).
vm_test board scripts/board-vm-test.sh

step "the phone as relay and a board claimed, on a real Linux Bluetooth stack (qemu)"
# The real controller's GATT relay service on one virtual controller,
# BlueZ's gatttool and a hostile go-ble central on the others, the phone
# relaying a session to a board the cloud cannot reach (the cloud settles
# it), then claiming an unclaimed board, which comes online (about 95 s;
# see hw/ble/VM.md).
vm_test relay scripts/relay-vm-test.sh

step "PostgreSQL failover (pg_auto_failover: a primary killed mid-traffic)"
# scripts/pgaf.sh starts or reuses a monitor and two nodes on loopback
# (about 8 s the first time, plus apt-get when absent); the test kills the
# primary with SIGKILL while workers move money and checks every
# acknowledged operation is in the ledger exactly once (about 25 s).
if out=$(scripts/pgaf.sh 2>/tmp/vend-pgaf.err); then
	export "$(printf '%s\n' "$out" | tail -n1)"
	go test -race -count=1 -run '^TestFailoverMidTraffic$' -v ./cloud/store
else
	cat /tmp/vend-pgaf.err >&2
	if [ "${VEND_REQUIRE_SERVICES:-}" = 1 ]; then
		echo "FAIL: pg_auto_failover is required (VEND_REQUIRE_SERVICES=1) and could not be made available" >&2
		exit 1
	fi
	echo "!!! WARNING: pg_auto_failover unavailable: the failover test is SKIPPED !!!" >&2
fi

step "cluster fault test (three NATS nodes, PostgreSQL failover, short form)"
# scripts/cluster-fault.sh -short: two cloud instances, 60 simulated devices,
# two real controllers and phones on loopback; one NATS node, the PostgreSQL
# primary and one cloud instance SIGKILLed mid-traffic, then every session
# and the ledger audited (about a minute and a half). Exit 2 means a part
# (pg_auto_failover, the nats-server build) could not be had.
set +e
scripts/cluster-fault.sh -short
cf=$?
set -e
if [ "$cf" -eq 2 ]; then
	if [ "${VEND_REQUIRE_SERVICES:-}" = 1 ]; then
		echo "FAIL: the cluster fault test could not run and VEND_REQUIRE_SERVICES=1" >&2
		exit 1
	fi
	echo "!!! WARNING: the cluster fault test could not run here: SKIPPED !!!" >&2
elif [ "$cf" -ne 0 ]; then
	echo "FAIL: cluster fault test" >&2
	exit 1
fi

step "go test -race ./..."
# Last, so that the run ends with go test's own summary lines. The
# failover test ran in its own step above.
exec go test -race -count=1 -timeout "${VEND_TEST_TIMEOUT:-20m}" -skip '^TestFailoverMidTraffic$' ./...
