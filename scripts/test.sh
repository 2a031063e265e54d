#!/usr/bin/env bash
# The project's one test command (README: "Test"). It checks formatting and
# vet, then runs every Go test with the race detector and ends with go test's
# own summary line. CI (.ci/run) calls this and nothing else.
#
# Environment:
#   VEND_REQUIRE_SERVICES=1  suites that need a real service fail instead of
#                            skipping when the service cannot be had (CI sets it)
#   VEND_TEST_TIMEOUT        per-package go test timeout (default 20m)
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="/usr/local/go/bin:$PATH"
export GOFLAGS="${GOFLAGS:-} -mod=mod"

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*') 2>/dev/null || true)
if [ -n "$unformatted" ]; then
	echo "gofmt: these files need formatting:"; echo "$unformatted"; exit 1
fi
echo "ok"

step "go vet"
go vet ./...
echo "ok"

step "go test -race ./..."
# Last, so that the run ends with go test's own summary lines.
exec go test -race -count=1 -timeout "${VEND_TEST_TIMEOUT:-20m}" ./...
