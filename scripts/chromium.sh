#!/usr/bin/env bash
# Makes Debian's Chromium available for the browser suites (the web
# checkout's pages, driven by chromedp, checked with axe-core; see
# cloud/internal/browsertest):
#   - chromium (or chromium-browser) on PATH: use it;
#   - absent and running as root: apt-get install -y chromium;
#   - otherwise: exit non-zero saying what to do.
# The last line on stdout is VEND_CHROMIUM=<path of the browser>.
set -euo pipefail
log() { printf 'chromium.sh: %s\n' "$*" >&2; }
for b in chromium chromium-browser; do
	if command -v "$b" >/dev/null 2>&1; then
		echo "VEND_CHROMIUM=$(command -v "$b")"
		exit 0
	fi
done
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	log "chromium is needed: install it with sudo apt-get install -y chromium"
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
log "installing chromium with apt-get"
apt-get update >&2 || { log "apt-get update failed"; exit 1; }
apt-get install -y --no-install-recommends chromium >&2 || { log "apt-get install chromium failed"; exit 1; }
command -v chromium >/dev/null 2>&1 || { log "chromium still missing after install"; exit 1; }
echo "VEND_CHROMIUM=$(command -v chromium)"
