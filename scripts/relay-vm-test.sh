#!/usr/bin/env bash
# relay-vm-test.sh: the phone carries the deal to a board with no link, and
# claims a new board, over a real Linux Bluetooth stack.
#
# The host runs a development cloud (`cloud serve`: SQLite, the embedded
# broker, the sandbox card) and provisions a water dispenser whose broker
# URL leads nowhere, so the cloud sees it offline. A qemu VM (Debian's
# kernel, btvirt's three linked virtual LE controllers, as
# scripts/ble-vm-test.sh) runs:
#   1. the real controller program with its GATT relay service on hci0,
#      against hwsim's water board on a pty;
#   2. BlueZ's gatttool on hci1 as the reference central: it lists the
#      service, reads ClaimInfo, and writes malformed values (a short chunk,
#      a chunk out of order, a 1-byte CCCD value): each gets its ATT error,
#      the board neither panics nor hangs;
#   3. the reference phone client on hci2: it resolves the beacon with the
#      cloud (over qemu user networking, 10.0.2.2), starts a session, is
#      given the signed grant to relay, writes it over GATT, follows
#      progress by notifications, reads the signed receipt, uploads it
#      (the cloud settles it) and writes the cloud's acknowledgement back;
#   4. a second, unclaimed board: the controller in registration mode
#      advertises the unclaimed frame; the phone, signed in as the operator,
#      claims it (the cloud seals the bundle to the board's key), writes the
#      bundle over GATT; the board stores it and comes online on the
#      cloud's broker.
# The host then checks the phone's receipt, the cloud's settlement, the
# board's logs and the claimed device's presence.
#
# Exit codes: 0 PASS, 1 FAIL, 2 could not run (qemu, packages, the VM).
#
# Environment:
#   RELAY_VM_TIMEOUT  hard limit for the VM, seconds (default 240)
#   RELAY_VM_LOG      where to keep the logs (default a temp dir, printed)
#   BLE_VM_CACHE, BLE_VM_KVM   as for scripts/ble-vm-test.sh
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${BLE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beaconvend/ble-vm}
TIMEOUT=${RELAY_VM_TIMEOUT:-240}
DEV=relay-vm
NEWDEV=claim-vm
MODULES="ecc ecdh_generic rfkill crc16 af_alg algif_skcipher algif_hash ecb cmac bluetooth hci_vhci e1000"
T0=$(date +%s)

say() { printf 'relay-vm: %s\n' "$*" >&2; }
skip() {
	say "SKIP (exit 2): $*"
	echo "RELAY-VM RESULT: SKIP ($*)"
	exit 2
}
die() {
	echo "RELAY-VM RESULT: FAIL ($*)"
	exit 1
}
fail_count=0
check() { # check NAME OK(0/1) DETAIL
	if [ "$2" = 1 ]; then
		printf '  ok    %-44s %s\n' "$1" "$3"
	else
		printf '  FAIL  %-44s %s\n' "$1" "$3"
		fail_count=$((fail_count + 1))
	fi
}

# ---- 1. the VM's kernel, modules and BlueZ userland (shared cache) --------
BLE_VM_PREPARE_ONLY=1 "$ROOT/scripts/ble-vm-test.sh" >/dev/null
case $? in
0) ;;
2) skip "the BLE VM prerequisites could not be had (scripts/ble-vm-test.sh)" ;;
*) die "BLE_VM_PREPARE_ONLY=1 scripts/ble-vm-test.sh failed" ;;
esac
export PATH=$PATH:/usr/local/go/bin
export GOFLAGS="${GOFLAGS:-} -mod=mod"
base=$CACHE/base

WORK=$(mktemp -d /tmp/relay-vm.XXXXXX)
LOGDIR=${RELAY_VM_LOG:-$(mktemp -d /tmp/relay-vm-log.XXXXXX)}
mkdir -p "$LOGDIR"
CLOUD_PID=
cleanup() {
	[ -n "$CLOUD_PID" ] && kill "$CLOUD_PID" 2>/dev/null && wait "$CLOUD_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

freeport() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo $p; return 0; fi
	done
	return 1
}
HPORT=$(freeport) || skip "no free port"
MPORT=$(freeport) || skip "no free port"
TPORT=$(freeport) || skip "no free port"
[ "$HPORT" != "$MPORT" ] && [ "$TPORT" != "$MPORT" ] && [ "$TPORT" != "$HPORT" ] || skip "port picked twice; run again"
command -v openssl >/dev/null || skip "no openssl"
API=http://10.0.2.2:$HPORT # as the VM reaches the host's loopback

# ---- 2. programs ------------------------------------------------------------
say "building cloud, controller, hwsim, phone, blevm"
for p in cloud/cmd/cloud controller/cmd/controller hw/cmd/hwsim app-protocol/cmd/phone hw/ble/cmd/blevm; do
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$WORK/bin/$(basename $p)" "./$p") ||
		die "$p does not build"
done
tbuilt=$(date +%s)

# ---- 3. the cloud: operator, the offline water dispenser, serve -------------
DATA=$WORK/cloud
OP_EMAIL=op@relay-vm.example OP_PASS=relay-vm-operator-pw
PHONE_EMAIL=payer@relay-vm.example PHONE_PASS=relay-vm-payer-pw
printf '%s\n' "$OP_PASS" | "$WORK/bin/cloud" operator add -data "$DATA" -name relay-vm -email "$OP_EMAIL" -password-stdin \
	>"$LOGDIR/provision.log" 2>&1 || die "cloud operator add failed: $(tail -3 "$LOGDIR/provision.log")"
# The board's broker URL leads nowhere (port 1 on the VM's own loopback): the
# cloud never hears it, so the phone carries the deal.
"$WORK/bin/cloud" device add -data "$DATA" -operator relay-vm -id "$DEV" -kind water -name "Offline tap" -k 5 \
	-mqtt-url tcp://127.0.0.1:1 -out "$WORK/dev" </dev/null >>"$LOGDIR/provision.log" 2>&1 ||
	die "cloud device add failed: $(tail -3 "$LOGDIR/provision.log")"
# The embedded broker's device listener speaks TLS with a certificate from a
# test CA made here (for 10.0.2.2, as the VM reaches the host); claimed
# boards get the CA in their bundle (broker.device_ca_file). Made before
# the VM boots, so that its clock is past the certificates' start.
mkdir -p "$WORK/pki"
(
	cd "$WORK/pki" &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 \
			-subj "/CN=beaconvend relay-vm test CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=relay-vm broker" &&
		printf 'subjectAltName=IP:10.0.2.2,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext &&
		openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt
) >"$LOGDIR/openssl.log" 2>&1 || die "openssl could not make the test certificates (see $LOGDIR/openssl.log)"
chmod 600 "$WORK/pki/server.key"
cat >"$WORK/cloud.yaml" <<EOF
development: true
data_dir: $DATA
http: {listen: "127.0.0.1:$HPORT"}
admin: {listen: "127.0.0.1:0"}
broker:
  listen: "127.0.0.1:$MPORT"
  device_listen: "127.0.0.1:$TPORT"
  tls: {cert_file: $WORK/pki/server.crt, key_file: $WORK/pki/server.key}
  device_url: "ssl://10.0.2.2:$TPORT"   # what a claimed board dials: the host's loopback, from the VM
  device_ca_file: $WORK/pki/ca.crt
payments: {channels: [sandbox_card]}
EOF
"$WORK/bin/cloud" serve -config "$WORK/cloud.yaml" -json >"$LOGDIR/cloud.json" 2>"$LOGDIR/cloud.log" &
CLOUD_PID=$!
for _ in $(seq 1 100); do
	grep -q '"http"' "$LOGDIR/cloud.json" 2>/dev/null && break
	kill -0 $CLOUD_PID 2>/dev/null || die "cloud serve exited: $(tail -5 "$LOGDIR/cloud.log")"
	sleep 0.1
done
grep -q '"http"' "$LOGDIR/cloud.json" || die "cloud serve did not listen: $(tail -5 "$LOGDIR/cloud.log")"
HOSTAPI=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' "$LOGDIR/cloud.json")

# The payer signs up and tops up on the host; the token goes into the VM.
"$WORK/bin/phone" -api "$HOSTAPI" -email "$PHONE_EMAIL" -password "$PHONE_PASS" -token-file "$WORK/phone-token.json" \
	-signup -topup 5.00 -wallet >"$LOGDIR/wallet-before.txt" 2>&1 </dev/null || die "phone sign-up and top-up: $(tail -3 "$LOGDIR/wallet-before.txt")"

# ---- 4. the boards' files -----------------------------------------------------
cat >"$WORK/water.yaml" <<'EOF'
# A tap at 20 L/min, so that a small cap ends within seconds.
profile: pulse-io-4
comm_timeout: 3s
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 20, k_factor: 450}
EOF
cat >"$WORK/wiring.yaml" <<'EOF'
profile: pulse-io-4
port: /dev/ttyBOARD
journal: /var/lib/beaconvend/journal.db
beacon: {hci_device: 0, offline_capable: true, gatt: true, gatt_idle_timeout: 5s}
EOF
"$WORK/bin/controller" import-bundle -bundle "$WORK/dev/bundle.json" -wiring "$WORK/wiring.yaml" -out "$WORK/etc" \
	>"$LOGDIR/import.json" 2>"$LOGDIR/import.log" || die "controller import-bundle failed: $(cat "$LOGDIR/import.log")"
cp "$WORK/etc/controller.yaml" "$LOGDIR/controller.yaml"
# The unclaimed board: only its wiring (an installer's), no bundle.
cat >"$WORK/claim-wiring.yaml" <<'EOF'
profile: pulse-io-4
port: /dev/ttyBOARD
journal: /var/lib/beaconvend-claim/journal.db
beacon: {hci_device: 0, offline_capable: true, gatt: true, gatt_idle_timeout: 5s}
EOF

# ---- 5. the initrd ----------------------------------------------------------
rd=$WORK/rd
cp -a "$base" "$rd"
mkdir -p "$rd/lib/modules" "$rd/etc/beaconvend" "$rd/etc/beaconvend-claim" "$rd/var/lib/beaconvend" "$rd/var/lib/beaconvend-claim" "$rd/etc/claim"
for m in $MODULES; do cp "$CACHE/kernel/modules/$m.ko" "$rd/lib/modules/"; done
cp "$WORK/bin/controller" "$WORK/bin/hwsim" "$WORK/bin/phone" "$WORK/bin/blevm" "$rd/bin/"
cp -a "$WORK/etc/." "$rd/etc/beaconvend/"
cp "$WORK/water.yaml" "$rd/etc/water.yaml"
cp "$WORK/claim-wiring.yaml" "$rd/etc/claim/wiring.yaml"
printf '%s\n' "$PHONE_PASS" >"$rd/etc/phone.pass"
chmod 600 "$rd/etc/phone.pass"
printf '%s\n' "$OP_PASS" >"$rd/etc/op.pass"
chmod 600 "$rd/etc/op.pass"
cat >"$rd/etc/relay-vm.conf" <<EOF
MODULES="$MODULES"
API=$API
DEV=$DEV
NEWDEV=$NEWDEV
OP_EMAIL=$OP_EMAIL
PHONE_EMAIL=$PHONE_EMAIL
EOF
cat >"$rd/init" <<'EOF'
#!/bin/sh
# /init of the relay-vm test: every line the host reads starts with a tag.
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
mkdir -p /dev/pts && mount -t devpts -o ptmxmode=0666 devpts /dev/pts
. /etc/relay-vm.conf
off() { echo "VMDONE $1"; sync; poweroff -f; sleep 5; }
echo; echo "VMSTEP init kernel=$(uname -r) clock=$(date +%s)"
for m in $MODULES; do
	insmod /lib/modules/$m.ko 2>/tmp/insmod.err || { echo "VMFAIL insmod $m: $(cat /tmp/insmod.err)"; off fail; }
done
ip link set lo up; ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 ||
	{ echo "VMFAIL network: $(ip addr 2>&1 | tr '\n' ' ')"; off fail; }
btvirt -L -l3 >/tmp/btvirt.log 2>&1 &
n=0
while [ ! -e /sys/class/bluetooth/hci2 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
[ -e /sys/class/bluetooth/hci2 ] || { echo "VMFAIL btvirt: no hci2: $(cat /tmp/btvirt.log)"; off fail; }
ADDR=$(hciconfig hci0 | sed -n 's/.*BD Address: \([0-9A-F:]*\).*/\1/p')
echo "VMSTEP btvirt hci0=$ADDR"
hwsim -sim /etc/water.yaml -json -control /tmp/emu.sock >/tmp/hwsim.json 2>/tmp/hwsim.log &
n=0
while ! grep -q '"board"' /tmp/hwsim.json 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
pty=$(sed -n 's/.*"board":"\([^"]*\)".*/\1/p' /tmp/hwsim.json)
[ -n "$pty" ] || { echo "VMFAIL hwsim: $(cat /tmp/hwsim.log)"; off fail; }
ln -s "$pty" /dev/ttyBOARD

# -- relay: the board on hci0, gatttool on hci1, the phone on hci2
echo "VMSTEP controller start=$(date +%s)"
controller -config /etc/beaconvend/controller.yaml -log-level debug >/tmp/controller.log 2>&1 &
CTL=$!
n=0
while ! grep -q 'gatt' /tmp/controller.log 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
sleep 2
# The board advertises from a fresh random address each window and state
# change (HCIOpts.RandomAddress): each central takes the current one from
# a short scan on hci1 (the product's scanner) right before it connects.
scanaddr() {
	blevm scan -hci 2 -duration 2500ms >/tmp/scan.txt 2>/dev/null
	grep '^BLEVM FRAME' /tmp/scan.txt | sed 's/^/SCAN| /' >/dev/console
	sed -n 's/^BLEVM FRAME .* addr=\([0-9a-f:]*\) .*/\1/p' /tmp/scan.txt | tail -1
}
# gt OUT gatttool-args...: BlueZ's gatttool on hci1 with the board's current
# address, up to 2 connects. Without bluetoothd the kernel keeps gatttool's
# link up after it exits: the board's idle timeout (5 s here) ends it, so
# each run waits for that before the next central.
gt() {
	out=$1
	shift
	for try in 1 2; do
		A=$(scanaddr)
		timeout -s KILL 10 gatttool -i hci1 -t random -b "$A" "$@" >"$out" 2>&1
		rc=$?
		echo "VMSTEP gatttool $* addr=$A try=$try rc=$rc"
		sleep 7
		if [ $rc != 137 ] && ! grep -q -i 'connect error\|connection refused' "$out"; then break; fi
	done
}
hciconfig hci1 up || echo "VMFAIL hciconfig hci1 up"
# The reference central: the service's characteristics and their handles,
# Progress read by its UUID (idle), a 1-byte CCCD write (refused).
gt /tmp/chars.txt --characteristics
h() { sed -n "s/.*char value handle = \(0x[0-9a-f]*\), uuid = $1.*/\1/p" /tmp/chars.txt | head -1; }
GH=$(h 35c50001) PH=$(h 35c50002)
echo "VMSTEP handles grant=${GH:-?} progress=${PH:-?}"
gt /tmp/progress.txt --char-read --uuid=35c50002-b36f-42b0-b79c-73280a4cc67c
CCCD=0x0001
[ -n "$PH" ] && CCCD=$(printf '0x%04x' $((PH + 1)))
gt /tmp/bad3.txt --char-write-req -a "$CCCD" -n 01
# A hostile central on go-ble (hci2): every malformed PDU of the list.
A=$(scanaddr)
timeout -s KILL 30 blevm hostile -hci 2 -addr "$A" -grant "${GH:-0x0001}" -cccd "$CCCD" -info "${PH:-0x0001}" \
	>/tmp/hostile.txt 2>/tmp/hostile.err
echo "VMSTEP hostile addr=$A rc=$?"
sleep 2
echo "VMSTEP phone start=$(date +%s)"
phone -api "$API" -email "$PHONE_EMAIL" -password "$(cat /etc/phone.pass)" -token-file - -ble hci -hci 2 -scan 6s -device "$DEV" -cap-amount 0.30 \
	-progress lines -timeout 90s -json-receipt >/tmp/receipt.json 2>/tmp/phone.log </dev/null
echo "VMSTEP phone end=$(date +%s) rc=$?"
sleep 2
kill -TERM $CTL
n=0
while kill -0 $CTL 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
wait $CTL
echo "VMSTEP controller end=$(date +%s) rc=$?"

sed 's/^/CTL| /' /tmp/controller.log | grep -v 'level=DEBUG' | tail -150
grep 'level=DEBUG' /tmp/controller.log | grep -i -E 'gatt|link|central|hci' | sed 's/^/CTLD| /' | tail -60

# -- registration: an unclaimed board on hci0, the phone claims it from hci2
echo "VMSTEP claim start=$(date +%s)"
controller -config /etc/beaconvend-claim/controller.yaml -claim-dir /var/lib/beaconvend-claim/claim \
	-wiring /etc/claim/wiring.yaml -log-level debug >/tmp/claim-controller.log 2>&1 &
CTL=$!
sleep 4
phone -api "$API" -email "$OP_EMAIL" -password "$(cat /etc/op.pass)" -token-file - -ble hci -hci 2 -scan 6s \
	-claim -claim-id "$NEWDEV" -claim-kind water >/tmp/claim.txt 2>&1 </dev/null
echo "VMSTEP claim phone rc=$?"
n=0
while ! grep -q 'mqtt connected' /tmp/claim-controller.log 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
sleep 2
# The claimed board, online, serves its ClaimInfo: claimed.
gt /tmp/claiminfo.txt --char-read --uuid=35c50005-b36f-42b0-b79c-73280a4cc67c
kill -TERM $CTL
n=0
while kill -0 $CTL 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
wait $CTL
echo "VMSTEP claim end=$(date +%s) rc=$?"
sed 's/^/CHARS| /' /tmp/chars.txt
sed 's/^/PROGRESS| /' /tmp/progress.txt
sed 's/^/CLAIMINFO| /' /tmp/claiminfo.txt
sed 's/^/BAD3| /' /tmp/bad3.txt 2>/dev/null
sed 's/^/HOSTILE| /' /tmp/hostile.txt
sed 's/^/HOSTILEERR| /' /tmp/hostile.err | tail -5
sed 's/^/RECEIPT| /' /tmp/receipt.json
sed 's/^/PHONE| /' /tmp/phone.log | tail -60
sed 's/^/CLAIM| /' /tmp/claim.txt
sed 's/^/CCTL| /' /tmp/claim-controller.log | grep -v 'level=DEBUG' | tail -80
sed 's/^/HWSIM| /' /tmp/hwsim.log | tail -10
off ok
EOF
chmod +x "$rd/init"
(cd "$rd" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/initrd.gz") || skip "cannot pack the initrd"

# ---- 6. boot --------------------------------------------------------------------
LOG=$LOGDIR/console.log
accel="-accel tcg -cpu max"
[ "${BLE_VM_KVM:-0}" = 1 ] && [ -w /dev/kvm ] && accel="-accel kvm -cpu host"
say "booting $(cat "$CACHE/kernel-pkg") in qemu ($accel), limit ${TIMEOUT}s; logs in $LOGDIR"
tboot=$(date +%s)
# shellcheck disable=SC2086
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 $accel -m 768 -smp 1 -nographic -no-reboot \
	-nic user,model=e1000 \
	-kernel "$CACHE/kernel/vmlinuz" -initrd "$WORK/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1" </dev/null >"$LOG" 2>&1
qrc=$?
sed -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\x1bc//g' "$LOG" >"$LOG.txt" && mv "$LOG.txt" "$LOG"
tend=$(date +%s)
say "qemu exit $qrc after $((tend - tboot))s (build $((tbuilt - T0))s, whole run $((tend - T0))s)"
grep -q 'VMSTEP init' "$LOG" || {
	tail -20 "$LOG" >&2
	[ $qrc = 124 ] && skip "VM did not reach /init within ${TIMEOUT}s" || skip "qemu failed (exit $qrc) before /init"
}
if ! grep -q '^VMDONE ok' "$LOG"; then
	grep -E '^VMFAIL|^VMSTEP' "$LOG" >&2
	tail -40 "$LOG" >&2
	die "VM test aborted$([ $qrc = 124 ] && echo " (timed out after ${TIMEOUT}s)"); log $LOG"
fi

# ---- 7. checks ---------------------------------------------------------------------
echo "relay-vm: results (devices $DEV and $NEWDEV; logs in $LOGDIR)"
crc=$(sed -n 's/^VMSTEP controller end=.* rc=\([0-9]*\).*/\1/p' "$LOG")
prc=$(sed -n 's/^VMSTEP phone end=.* rc=\([0-9]*\).*/\1/p' "$LOG")
nchars=$(grep -c '^CHARS| .*uuid = 35c5000[1-4]-b36f-42b0-b79c-73280a4cc67c' "$LOG")
check "gatttool lists the relay service" "$([ "$nchars" = 4 ] && echo 1 || echo 0)" "$nchars of Grant, Progress, Receipt, Ack"
check "gatttool reads Progress: idle" "$(grep -q '^PROGRESS| handle: 0x[0-9a-f]*[[:space:]]*value: 01 00 00 ' "$LOG" && echo 1 || echo 0)" "$(sed -n 's/^PROGRESS| //p' "$LOG" | head -1 | cut -c1-80)"
hsent=$(sed -n 's/^HOSTILE| BLEVM HOSTILEEND sent=\([0-9]*\).*/\1/p' "$LOG")
hsound=$(sed -n 's/^HOSTILE| BLEVM HOSTILEEND .*sound=\([0-9]*\).*/\1/p' "$LOG")
check "hostile central: every PDU answered soundly" "$([ -n "$hsent" ] && [ "$hsent" = "$hsound" ] && echo 1 || echo 0)" "${hsound:-0} of ${hsent:-?}$(grep '^HOSTILE| .*sound=false' "$LOG" | sed 's/.*name=\([^ ]*\).*rsp=\([^ ]*\).*/; \1 got \2/' | tr -d '\n')"
check "dropped mid-notification, the board serves the next central" "$(grep -q '^HOSTILE| BLEVM HOSTILE name=subscribe-then-drop write=<nil> disconnect=<nil>' "$LOG" && [ "$(sed -n 's/^VMSTEP phone end=.* rc=\([0-9]*\).*/\1/p' "$LOG")" = 0 ] && echo 1 || echo 0)" "$(sed -n 's/^HOSTILE| BLEVM HOSTILE name=subscribe-then-drop //p' "$LOG"); then the phone's relay"
check "gatttool: 1-byte CCCD write refused" "$(grep -q '^BAD3| .*\(length\|Length\|0x0d\|error\)' "$LOG" && echo 1 || echo 0)" "$(sed -n 's/^BAD3| //p' "$LOG" | head -1)"
check "phone relayed the session and got a receipt" "$([ "$prc" = 0 ] && grep -q '^RECEIPT| {' "$LOG" && echo 1 || echo 0)" "exit ${prc:-?}: $(sed -n 's/^RECEIPT| //p' "$LOG" | head -1 | cut -c1-160)"
check "board ran the relayed grant" "$(grep -q '^CTL| .*relay' "$LOG" && echo 1 || echo 0)" "$(grep '^CTL| .*relay' "$LOG" | head -2 | cut -c1-160 | tr '\n' ' ')"
rsess=$(sed -n 's/^RECEIPT| {"number":"[^"]*","session":"\([^"]*\)".*/\1/p' "$LOG")
runits=$(sed -n 's/^RECEIPT| .*"units":\([0-9]*\).*/\1/p' "$LOG")
rcap=$(sed -n 's/^RECEIPT| .*"captured":{"minor":\([0-9]*\).*/\1/p' "$LOG")
pminor=$(sed -n 's/^RECEIPT| .*"price":{"minor":\([0-9]*\),"per":\([0-9]*\)}.*/\1/p' "$LOG")
pper=$(sed -n 's/^RECEIPT| .*"price":{"minor":\([0-9]*\),"per":\([0-9]*\)}.*/\2/p' "$LOG")
rwant=$(( ${runits:-0} * ${pminor:-0} / ${pper:-1} )) # vend.Price.Cost rounds down
check "cloud settled what the board metered" "$([ -n "$runits" ] && [ "$runits" -gt 0 ] && [ "$rcap" = "$rwant" ] && grep -q '^RECEIPT| .*"settled_at"' "$LOG" && echo 1 || echo 0)" "${runits:-?} ml, captured ${rcap:-?} (want $rwant) minor units"
check "the cloud's ack reached the board over GATT" "$(grep -q "^CTL| .*usage acknowledged by the cloud through the phone.*session=$rsess" "$LOG" && [ -n "$rsess" ] && echo 1 || echo 0)" "session ${rsess:-?}"
check "controller stopped cleanly, no panic" "$([ "$crc" = 0 ] && ! grep -q 'panic' "$LOG" && echo 1 || echo 0)" "exit ${crc:-?}"
check "gatttool reads the claimed board's ClaimInfo" "$(grep -q '^CLAIMINFO| handle: 0x[0-9a-f]*[[:space:]]*value: 01 01 ' "$LOG" && echo 1 || echo 0)" "$(sed -n 's/^CLAIMINFO| //p' "$LOG" | head -1 | cut -c1-80)"
check "claim: board stored the bundle and came online" "$(grep -q '^CCTL| .*mqtt connected' "$LOG" && echo 1 || echo 0)" "$(grep -E '^CLAIM\| ' "$LOG" | tail -2 | tr '\n' ' ' | cut -c1-200)"

if [ "$fail_count" = 0 ]; then
	echo "RELAY-VM RESULT: PASS ($((tend - T0))s; qemu $((tend - tboot))s; logs $LOGDIR)"
	exit 0
fi
echo "RELAY-VM RESULT: FAIL ($fail_count checks failed; logs $LOGDIR)"
exit 1
