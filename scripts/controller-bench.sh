#!/usr/bin/env bash
# Measures the controller (issue: steady-state RSS and CPU, binary size per
# target, journal commits): runs the real controller process through
# water and vending sessions against an emulated board and a real broker,
# idles it, and cross-builds it for every board target. Prints a table.
#   scripts/controller-bench.sh [SESSIONS]    default 40
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
n=${1:-40}
echo "== controller process: $n sessions, then 10 s idle"
go test -run '^$' -bench SteadyState -benchtime "${n}x" ./controller/cmd/controller/ | grep -E '^Benchmark'
echo
echo "== journal commits during one water session (in-process daemon)"
go test -count=1 -run TestCommitBound -v ./controller/daemon/ | grep -E 'meter commits'
echo
echo "== stripped static binaries"
scripts/cross-build.sh "$(mktemp -d)"
