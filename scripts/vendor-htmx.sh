#!/usr/bin/env bash
# vendor-htmx.sh: fetch the operator console's scripts from npm and check
# them in under cloud/console/static/, with their SHA-256 in SHA256SUMS
# (a Go test in cloud/console checks the embedded files against it, so the
# console never serves a file that differs from what was vendored).
#
# htmx.org 2.0.x (not 4.x, a new major) and htmx-ext-sse 2.2.4 are
# fetched with `npm pack`, which checks each tarball against the
# registry's integrity; this script then checks it against the sha512
# pinned below, so a changed registry entry fails here. To move to a new
# 2.0.x, change HTMX_VERSION and HTMX_INTEGRITY (npm view
# htmx.org@VERSION dist.integrity) and run it again.
set -euo pipefail

HTMX_VERSION=2.0.11
HTMX_INTEGRITY='sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA=='
SSE_VERSION=2.2.4
SSE_INTEGRITY='sha512-LJmxVhykyflBWgh5PvbRidcyuqMHlgfajmmzumvKctv9puvsufeH6OaejSMZTNTnEI8O2wXXn4ZZtBdpEMqmEQ=='

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/cloud/console/static"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

command -v npm >/dev/null || { echo "vendor-htmx: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }

# integrity FILE: the npm-style sha512 of FILE.
integrity() { printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"; }

fetch() { # name version want-integrity
	local name=$1 version=$2 want=$3 file
	file=$(cd "$tmp" && npm pack --silent "$name@$version" | tail -n1)
	local got
	got=$(integrity "$tmp/$file")
	if [ "$got" != "$want" ]; then
		echo "vendor-htmx: $name@$version: integrity $got, want $want" >&2
		exit 1
	fi
	mkdir -p "$tmp/$name"
	tar -xzf "$tmp/$file" -C "$tmp/$name"
	echo "vendor-htmx: $name@$version verified ($want)" >&2
}

fetch htmx.org "$HTMX_VERSION" "$HTMX_INTEGRITY"
fetch htmx-ext-sse "$SSE_VERSION" "$SSE_INTEGRITY"

install -m 0644 "$tmp/htmx.org/package/dist/htmx.min.js" "$out/htmx.min.js"
install -m 0644 "$tmp/htmx.org/package/LICENSE" "$out/htmx.LICENSE.txt"
install -m 0644 "$tmp/htmx-ext-sse/package/dist/sse.min.js" "$out/sse.js"
install -m 0644 "$tmp/htmx-ext-sse/package/LICENSE" "$out/sse.LICENSE.txt"
cat >"$out/VERSIONS" <<VERSIONS
htmx.org@$HTMX_VERSION $HTMX_INTEGRITY dist/htmx.min.js -> htmx.min.js
htmx-ext-sse@$SSE_VERSION $SSE_INTEGRITY dist/sse.min.js -> sse.js
VERSIONS
(cd "$out" && sha256sum htmx.min.js htmx.LICENSE.txt sse.js sse.LICENSE.txt VERSIONS >SHA256SUMS)
cat "$out/SHA256SUMS"
