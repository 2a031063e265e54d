#!/usr/bin/env bash
# Makes Debian's Chromium available for the browser suites (the web
# checkout's pages, driven by chromedp, checked with axe-core; see
# cloud/internal/browsertest), and poppler-utils, with which the sticker
# sheets' test reads the PDF (cloud/stickers):
#   - chromium (or chromium-browser) and pdftoppm on PATH: use them;
#   - absent and running as root: apt-get install -y what is missing;
#   - otherwise: exit non-zero saying what to do.
# The last line on stdout is VEND_CHROMIUM=<path of the browser>.
set -euo pipefail
log() { printf 'chromium.sh: %s\n' "$*" >&2; }
browser() { command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true; }
missing=()
[ -n "$(browser)" ] || missing+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		log "needed: sudo apt-get install -y ${missing[*]}"
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	log "installing ${missing[*]} with apt-get"
	apt-get update >&2 || { log "apt-get update failed"; exit 1; }
	apt-get install -y --no-install-recommends "${missing[@]}" >&2 || { log "apt-get install ${missing[*]} failed"; exit 1; }
fi
[ -n "$(browser)" ] || { log "chromium still missing after install"; exit 1; }
command -v pdftoppm >/dev/null 2>&1 || { log "pdftoppm still missing after install"; exit 1; }
echo "VEND_CHROMIUM=$(browser)"
