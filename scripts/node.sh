#!/usr/bin/env bash
# Makes Node.js and npm available for the Modbus interoperability test
# (hw/modbus runs the independent modbus-serial RTU server under node).
#   - node and npm on PATH: use them;
#   - absent and running as root: apt-get install -y nodejs npm;
#   - otherwise: exit non-zero saying what to do.
# The last line on stdout is VEND_NODE=<path of node>.
set -euo pipefail
log() { printf 'node.sh: %s\n' "$*" >&2; }
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
	echo "VEND_NODE=$(command -v node)"
	exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	log "node and npm are needed: install them with sudo apt-get install -y nodejs npm"
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
log "installing nodejs and npm with apt-get"
apt-get update >&2 || { log "apt-get update failed"; exit 1; }
apt-get install -y --no-install-recommends nodejs npm >&2 || { log "apt-get install nodejs npm failed"; exit 1; }
command -v node >/dev/null 2>&1 || { log "node still missing after install"; exit 1; }
echo "VEND_NODE=$(command -v node)"
