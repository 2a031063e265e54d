#!/usr/bin/env bash
# Makes Mosquitto 2 available for the test suites that run against a real
# broker (cloud/broker, cloud/ingest). It does not start or rely on the
# system service: the tests start their own mosquitto process with a
# generated configuration on a free loopback port.
#
#   - mosquitto on PATH (or at $VEND_MOSQUITTO, or /usr/sbin/mosquitto): use it;
#   - absent and running as root: apt-get update (once) and
#     apt-get install -y mosquitto mosquitto-clients, then stop and disable
#     the service the package starts, so it does not hold port 1883;
#   - otherwise: exit non-zero with a message saying what to do.
#
# The last line on stdout is VEND_MOSQUITTO=<path of the binary>, so a caller
# can do: export "$(scripts/mosquitto.sh | tail -n1)"
set -euo pipefail

log() { printf 'mosquitto.sh: %s\n' "$*" >&2; }

find_bin() {
	if [ -n "${VEND_MOSQUITTO:-}" ] && [ -x "${VEND_MOSQUITTO}" ]; then
		printf '%s\n' "$VEND_MOSQUITTO"; return 0
	fi
	local p
	p=$(command -v mosquitto 2>/dev/null || true)
	if [ -n "$p" ]; then printf '%s\n' "$p"; return 0; fi
	for p in /usr/sbin/mosquitto /usr/local/sbin/mosquitto /usr/bin/mosquitto; do
		if [ -x "$p" ]; then printf '%s\n' "$p"; return 0; fi
	done
	return 1
}

if bin=$(find_bin); then
	echo "VEND_MOSQUITTO=$bin"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	log "mosquitto is not installed and this is not root: install it with"
	log "  sudo apt-get install -y mosquitto mosquitto-clients"
	log "or set VEND_MOSQUITTO to the path of a mosquitto 2 binary"
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	log "mosquitto is not installed and apt-get is not available; set VEND_MOSQUITTO to a mosquitto 2 binary"
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "installing mosquitto with apt-get"
# Do not let the package start the system service: tests run their own.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

if ! apt-get update >&2; then
	log "apt-get update failed"
	exit 1
fi
if ! apt-get install -y --no-install-recommends mosquitto mosquitto-clients >&2; then
	log "apt-get install mosquitto mosquitto-clients failed"
	exit 1
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

if bin=$(find_bin); then
	log "installed: $("$bin" -h 2>&1 | head -n1 || true)"
	echo "VEND_MOSQUITTO=$bin"
	exit 0
fi
log "apt-get installed mosquitto but no mosquitto binary was found"
exit 1
