#!/usr/bin/env bash
# Static cross-builds of the controller for the boards it runs on:
# linux/arm GOARM=6 (Pi Zero/1) and 7 (Pi 2/3, most ARM SBCs), arm64 (Pi
# 3/4/5 64-bit) and mipsle soft-float (OpenWrt-class routers). Stripped
# (-s -w), CGO off, so each is one file with no shared libraries.
#
#   scripts/cross-build.sh [OUTDIR]     default OUTDIR: bin/
# Prints a table of target, file and size.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
out=${1:-bin}
mkdir -p "$out"
printf '%-24s %-44s %10s\n' target file bytes
build() { # name goos goarch extra-env...
	local name=$1; shift
	local f="$out/beaconvend-controller-$name"
	env CGO_ENABLED=0 "$@" go build -trimpath -ldflags='-s -w' -o "$f" ./controller/cmd/controller
	printf '%-24s %-44s %10d\n' "$name" "$f" "$(stat -c %s "$f")"
}
build linux-armv6 GOOS=linux GOARCH=arm GOARM=6
build linux-armv7 GOOS=linux GOARCH=arm GOARM=7
build linux-arm64 GOOS=linux GOARCH=arm64
build linux-mipsle-softfloat GOOS=linux GOARCH=mipsle GOMIPS=softfloat
build linux-amd64 GOOS=linux GOARCH=amd64
