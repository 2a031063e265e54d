#!/usr/bin/env bash
# Installs the controller on a Raspberry Pi-class board (run on the board,
# as root, from a directory holding the cross-built binary and the files
# "controller import-bundle" wrote for this device):
#
#   sudo scripts/install-controller.sh BINARY DEVICE_DIR
#
# It creates the beaconvend user (in group dialout for the serial ports),
# installs the binary to /usr/local/bin, the config and key files to
# /etc/beaconvend (keys 0600, owned by beaconvend), the systemd unit, turns
# on the hardware watchdog (RuntimeWatchdogSec) and stops bluetoothd (the
# go-ble beacon takes the adapter through the HCI user channel).
set -euo pipefail
bin=${1:?usage: install-controller.sh BINARY DEVICE_DIR}
src=${2:?usage: install-controller.sh BINARY DEVICE_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "install-controller.sh: run as root" >&2; exit 1; }
[ -f "$src/controller.yaml" ] || { echo "install-controller.sh: $src/controller.yaml missing (see: controller import-bundle)" >&2; exit 1; }

id beaconvend >/dev/null 2>&1 || useradd --system --home /var/lib/beaconvend --shell /usr/sbin/nologin --groups dialout beaconvend
install -m 0755 "$bin" /usr/local/bin/beaconvend-controller
install -d -m 0750 -o beaconvend -g beaconvend /etc/beaconvend /var/lib/beaconvend
for f in "$src"/*; do
	case "$f" in
	*/bundle.json) continue ;; # the provisioning bundle: imported, never installed
	*.key | *.pass) install -m 0600 -o beaconvend -g beaconvend "$f" /etc/beaconvend/ ;;
	*) install -m 0644 -o beaconvend -g beaconvend "$f" /etc/beaconvend/ ;;
	esac
done
install -m 0644 "$here/controller/deploy/beaconvend-controller.service" /etc/systemd/system/
if ! grep -q '^RuntimeWatchdogSec=' /etc/systemd/system.conf; then
	echo 'RuntimeWatchdogSec=15' >>/etc/systemd/system.conf
	systemctl daemon-reexec
fi
systemctl disable --now bluetooth.service 2>/dev/null || true
systemctl daemon-reload
systemctl enable --now beaconvend-controller.service
systemctl --no-pager status beaconvend-controller.service || true
