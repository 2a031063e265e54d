#!/usr/bin/env bash
# board-vm-test.sh: a board set up the way the README says, end to end.
# The host provisions a device with `cloud device add` (SQLite in a temp
# data dir): a provisioning bundle and the Mosquitto files; starts
# Mosquitto from the generated mosquitto.conf as its own user, with a test
# CA and broker certificate made here by openssl; and turns the bundle
# plus a minimal wiring into the controller's config with `controller
# import-bundle`. A qemu VM (Debian's kernel, btvirt's virtual LE
# controllers, as scripts/ble-vm-test.sh) runs the real controller with
# that config on hci0, against the board emulator (hwsim's built-in
# washers board on a pty inside the VM), reaching the host's Mosquitto
# over TLS through qemu user networking (10.0.2.2). BlueZ on hci1 (btmon)
# checks the advertisement carries the rotating IDs of the bundle's
# identity key; the host checks the device's state arrived over TLS
# (mosquitto_sub with the cloud's broker account) and the broker's log.
# See hw/ble/VM.md.
#
# Exit codes: 0 PASS, 1 FAIL, 2 could not run (qemu, packages, the VM,
# Mosquitto or openssl could not be had).
#
# Environment:
#   BOARD_VM_TIMEOUT   hard limit for the VM, seconds (default 90)
#   BOARD_VM_RUN       how long the controller runs in the VM, seconds (default 14)
#   BOARD_VM_LOG       where to keep the logs (default a temp dir, printed)
#   BOARD_VM_DEVICE_ADD  a command run instead of `cloud device add`, with the
#                      same flags (-data -id -operator -kind -machines -k
#                      -mqtt-url -mqtt-ca -out -mosquitto-dir): it must write
#                      OUT/bundle.json, the Mosquitto files and the cloud's
#                      broker password DATA/mqtt-cloud.secret
#   BLE_VM_CACHE, BLE_VM_KVM   as for scripts/ble-vm-test.sh
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${BLE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beaconvend/ble-vm}
TIMEOUT=${BOARD_VM_TIMEOUT:-90}
RUN=${BOARD_VM_RUN:-14}
DEV=board-vm
MODULES="ecc ecdh_generic rfkill crc16 af_alg algif_skcipher algif_hash ecb cmac bluetooth hci_vhci e1000"
T0=$(date +%s)

say() { printf 'board-vm: %s\n' "$*" >&2; }
skip() {
	say "SKIP (exit 2): $*"
	echo "BOARD-VM RESULT: SKIP ($*)"
	exit 2
}
die() {
	echo "BOARD-VM RESULT: FAIL ($*)"
	exit 1
}
fail_count=0
check() { # check NAME OK(0/1) DETAIL
	if [ "$2" = 1 ]; then
		printf '  ok    %-40s %s\n' "$1" "$3"
	else
		printf '  FAIL  %-40s %s\n' "$1" "$3"
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

# ---- 2. host: Mosquitto and its clients, openssl ------------------------
MOSQ=$("$ROOT/scripts/mosquitto.sh" 2>/dev/null | tail -n1 | sed -n 's/^VEND_MOSQUITTO=//p')
[ -x "$MOSQ" ] || skip "no mosquitto (scripts/mosquitto.sh)"
command -v mosquitto_sub >/dev/null || skip "no mosquitto_sub (mosquitto-clients)"
command -v openssl >/dev/null || skip "no openssl"
getent passwd mosquitto >/dev/null || skip "no mosquitto user (Debian's mosquitto package makes it)"
[ "$(id -u)" = 0 ] || skip "not root: Mosquitto must start as root to drop to its own user"

WORK=$(mktemp -d /tmp/board-vm.XXXXXX)
chmod 711 "$WORK" # the broker's user reaches its directory below
LOGDIR=${BOARD_VM_LOG:-$(mktemp -d /tmp/board-vm-log.XXXXXX)}
mkdir -p "$LOGDIR"
MOSQ_PID= SUB_PID=
cleanup() {
	[ -n "$SUB_PID" ] && kill "$SUB_PID" 2>/dev/null
	[ -n "$MOSQ_PID" ] && kill "$MOSQ_PID" 2>/dev/null && wait "$MOSQ_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

port=
for _ in $(seq 1 20); do
	p=$((20000 + RANDOM % 30000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || skip "no free port"
URL=ssl://10.0.2.2:$port

# ---- 3. a test CA and the broker's certificate (10.0.2.2 from the VM) ----
# Made before anything else, so that the VM's clock (read from the RTC at
# boot, whole seconds) is past the certificates' start.
MD=$WORK/mosquitto
mkdir -p "$WORK/pki" "$MD"
chgrp mosquitto "$MD" && chmod 750 "$MD"
(
	cd "$WORK/pki" &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 \
			-subj "/CN=beaconvend board-vm test CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=board-vm broker" &&
		printf 'subjectAltName=IP:10.0.2.2,IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >ext &&
		openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt
) >"$LOGDIR/openssl.log" 2>&1 || die "openssl could not make the test certificates (see $LOGDIR/openssl.log)"
# The operator's part: the broker's certificate and key, readable by its
# group, where device add's mosquitto.conf expects them.
install -m 0640 -g mosquitto "$WORK/pki/server.crt" "$WORK/pki/server.key" "$WORK/pki/ca.crt" "$MD/"

# ---- 4. programs ------------------------------------------------------------
say "building cloud, controller, hwsim, blevm"
for p in cloud/cmd/cloud controller/cmd/controller hw/cmd/hwsim hw/ble/cmd/blevm; do
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$WORK/bin/$(basename $p)" "./$p") ||
		die "$p does not build"
done
tbuilt=$(date +%s)

# ---- 5. provision: cloud device add -----------------------------------------
OUT=$WORK/device
DATA=$WORK/cloud
printf 'board-vm-operator-pw\n' >"$WORK/op.pass"
opargs=(-data "$DATA" -name board-vm -email op@board-vm.example)
ophelp=$("$WORK/bin/cloud" operator add -h 2>&1)
opin=/dev/null
if grep -q -- '-password-file' <<<"$ophelp"; then
	opargs+=(-password-file "$WORK/op.pass")
elif grep -q -- '-password ' <<<"$ophelp"; then
	opargs+=(-password board-vm-operator-pw)
else
	opin=$WORK/op.pass # read from standard input
fi
"$WORK/bin/cloud" operator add "${opargs[@]}" <"$opin" >"$LOGDIR/provision.log" 2>&1 ||
	die "cloud operator add failed: $(tail -3 "$LOGDIR/provision.log")"
devhelp=$("$WORK/bin/cloud" device add -h 2>&1)
if [ -z "${BOARD_VM_DEVICE_ADD:-}" ] && ! grep -q -- '-mqtt-ca' <<<"$devhelp"; then
	die "cloud device add has no -mqtt-ca: this tree's cloud does not write a provisioning bundle yet"
fi
# Options device add offers, when it does: 4-second ID windows; no
# plaintext listener (port 1883 may be taken here) and persistence in a
# directory of this run; the broker's PID file, so that device add itself
# reloads Mosquitto after adding a device.
has() { [ -z "${BOARD_VM_DEVICE_ADD:-}" ] && grep -q -- "^ *$1 " <<<"$devhelp"; }
kflag=() mflags=() pidflag=()
{ [ -n "${BOARD_VM_DEVICE_ADD:-}" ] || has -k; } && kflag=(-k 2)
has -mosquitto-listen && mflags+=(-mosquitto-listen "")
if has -mosquitto-persistence; then
	install -d -m 0700 -o mosquitto "$WORK/mosquitto-data"
	mflags+=(-mosquitto-persistence "$WORK/mosquitto-data")
fi
has -mosquitto-pid && pidflag=(-mosquitto-pid "$WORK/mosquitto.pid")
# shellcheck disable=SC2206
add=(${BOARD_VM_DEVICE_ADD:-"$WORK/bin/cloud" device add})
"${add[@]}" -data "$DATA" -id "$DEV" -operator board-vm -kind washer -machines 4 "${kflag[@]}" "${mflags[@]}" \
	-mqtt-url "$URL" -mqtt-ca "$WORK/pki/ca.crt" -out "$OUT" -mosquitto-dir "$MD" </dev/null >>"$LOGDIR/provision.log" 2>&1 ||
	die "${add[*]} failed: $(tail -3 "$LOGDIR/provision.log")"
[ -f "$OUT/bundle.json" ] || die "${add[*]} wrote no $OUT/bundle.json: $(ls "$OUT" | tr '\n' ' ')"
SECRET=$DATA/mqtt-cloud.secret
[ -f "$MD/mosquitto.conf" ] || die "no mosquitto.conf in $MD"
cp "$MD/mosquitto.conf" "$LOGDIR/mosquitto.conf"
bmode=$(stat -c %a "$OUT/bundle.json")
check "bundle.json written 0600" "$([ "$bmode" = 600 ] && echo 1 || echo 0)" "mode $bmode"
field() { grep -o "\"$1\": *\"*[0-9a-z._-]*" "$OUT/bundle.json" | head -1 | sed 's/.*[": ]//'; }
KEY=$(field identity_key)
K=$(field k)
[ -n "$KEY" ] && [ -n "$K" ] && [ -n "$DEV" ] || die "cannot read device_id, identity_key and k from the bundle"

# The host's subscriber: the operator's read-only broker account, as the
# README's mosquitto_sub example, when the cloud makes one; else the
# cloud's own account.
SUBUSER=_cloud SUBPASS=$(tr -d '\n' <"$SECRET" 2>/dev/null) SUBID=_board-vm-check
credhelp=$("$WORK/bin/cloud" operator broker-credentials -h 2>&1)
if [ -z "${BOARD_VM_DEVICE_ADD:-}" ] && grep -q -- '^ *-out ' <<<"$credhelp"; then
	"$WORK/bin/cloud" operator broker-credentials -data "$DATA" -operator board-vm -out "$WORK/op-broker.pass" -mqtt-url "$URL" \
		-mosquitto-dir "$MD" "${mflags[@]}" </dev/null >"$LOGDIR/operator-credentials.json" 2>>"$LOGDIR/provision.log" ||
		die "cloud operator broker-credentials failed: $(tail -3 "$LOGDIR/provision.log")"
	SUBUSER=$(sed -n 's/.*"username": *"\([^"]*\)".*/\1/p' "$LOGDIR/operator-credentials.json")
	SUBPASS=$(tr -d '\n' <"$WORK/op-broker.pass")
	SUBID=$SUBUSER-sub
	[ -n "$SUBUSER" ] || die "no username from cloud operator broker-credentials: $(cat "$LOGDIR/operator-credentials.json")"
fi

# ---- 6. Mosquitto from the generated files, as its own user -------------
"$MOSQ" -c "$MD/mosquitto.conf" >"$LOGDIR/mosquitto.log" 2>&1 &
MOSQ_PID=$!
echo $MOSQ_PID >"$WORK/mosquitto.pid"
up=0
for _ in $(seq 1 50); do
	kill -0 $MOSQ_PID 2>/dev/null || break
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
	sleep 0.1
done
[ $up = 1 ] || die "Mosquitto did not listen on $port with the generated mosquitto.conf: $(tail -5 "$LOGDIR/mosquitto.log" | tr '\n' ' ')"
muser=$(ps -o user= -p $MOSQ_PID | tr -d ' ')
check "Mosquitto runs as its own user" "$([ "$muser" = mosquitto ] && echo 1 || echo 0)" "user $muser, listener $port"
mosquitto_sub -h 127.0.0.1 -p "$port" --cafile "$WORK/pki/ca.crt" -u "$SUBUSER" -P "$SUBPASS" -i "$SUBID" \
	-t 'bv/v1/dev/+/state' -v >"$LOGDIR/state.txt" 2>"$LOGDIR/sub.err" &
SUB_PID=$!

# ---- 7. the board: wiring + controller import-bundle ------------------------
cat >"$WORK/wiring.yaml" <<EOF
# The VM's board: hwsim's built-in washers board (generic-relay-8) on a pty
# the VM links to /dev/ttyBOARD; machines wired in order (relay1/in1, ...).
profile: generic-relay-8
port: /dev/ttyBOARD
EOF
"$WORK/bin/controller" import-bundle -bundle "$OUT/bundle.json" -wiring "$WORK/wiring.yaml" -out "$WORK/etc" \
	>"$LOGDIR/import.json" 2>"$LOGDIR/import.log" || die "controller import-bundle failed: $(cat "$LOGDIR/import.log")"
cp "$WORK/etc/controller.yaml" "$LOGDIR/controller.yaml"
backend=$(sed -n 's/^  backend: //p' "$WORK/etc/controller.yaml")
broker=$(sed -n 's/^  broker: //p' "$WORK/etc/controller.yaml")
check "imported config: hci beacon, TLS broker" "$([ "$backend" = hci ] && [ "$broker" = "$URL" ] && grep -q '^    ca_file: ca.pem' "$WORK/etc/controller.yaml" && echo 1 || echo 0)" "backend $backend, broker $broker"

# ---- 8. the initrd ----------------------------------------------------------
rd=$WORK/rd
cp -a "$base" "$rd"
mkdir -p "$rd/lib/modules" "$rd/etc/beaconvend" "$rd/var/lib/beaconvend"
for m in $MODULES; do cp "$CACHE/kernel/modules/$m.ko" "$rd/lib/modules/"; done
cp "$WORK/bin/controller" "$WORK/bin/hwsim" "$rd/bin/"
cp -a "$WORK/etc/." "$rd/etc/beaconvend/"
printf 'MODULES="%s"\nRUN=%s\n' "$MODULES" "$RUN" >"$rd/etc/board-vm.conf"
cat >"$rd/init" <<'EOF'
#!/bin/sh
# /init of the board-vm test: every line the host reads starts with a tag.
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
mkdir -p /dev/pts && mount -t devpts -o ptmxmode=0666 devpts /dev/pts
. /etc/board-vm.conf
off() { echo "VMDONE $1"; sync; poweroff -f; sleep 5; }
echo; echo "VMSTEP init kernel=$(uname -r) clock=$(date +%s)"
for m in $MODULES; do
	insmod /lib/modules/$m.ko 2>/tmp/insmod.err || { echo "VMFAIL insmod $m: $(cat /tmp/insmod.err)"; off fail; }
done
ip link set lo up; ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 ||
	{ echo "VMFAIL network: $(ip addr 2>&1 | tr '\n' ' ')"; off fail; }
echo "VMSTEP network $(ip -4 addr show eth0 | sed -n 's/.*inet \([0-9./]*\).*/\1/p')"
btvirt -L -l2 >/tmp/btvirt.log 2>&1 &
n=0
while [ ! -e /sys/class/bluetooth/hci1 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
[ -e /sys/class/bluetooth/hci1 ] || { echo "VMFAIL btvirt: no hci1: $(cat /tmp/btvirt.log)"; off fail; }
btmon -t >/tmp/btmon.txt 2>&1 &
BTMON=$!
hciconfig hci1 up || echo "VMFAIL hciconfig hci1 up"
hcitool -i hci1 lescan --duplicates >/tmp/lescan.txt 2>&1 &
LESCAN=$!
hwsim -sim washers -json -control /tmp/emu.sock >/tmp/hwsim.json 2>/tmp/hwsim.log &
n=0
while ! grep -q '"board"' /tmp/hwsim.json 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
pty=$(sed -n 's/.*"board":"\([^"]*\)".*/\1/p' /tmp/hwsim.json)
[ -n "$pty" ] || { echo "VMFAIL hwsim: $(cat /tmp/hwsim.log)"; off fail; }
ln -s "$pty" /dev/ttyBOARD
echo "VMSTEP board $pty"
echo "VMSTEP controller start=$(date +%s)"
controller -config /etc/beaconvend/controller.yaml -log-level debug >/tmp/controller.log 2>&1 &
CTL=$!
sleep $RUN
kill -TERM $CTL
n=0
while kill -0 $CTL 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
wait $CTL
echo "VMSTEP controller end=$(date +%s) rc=$?"
kill -INT $LESCAN 2>/dev/null; sleep 0.3
kill $BTMON; sleep 0.3
sed 's/^/CTL| /' /tmp/controller.log | head -200
sed 's/^/HWSIM| /' /tmp/hwsim.log | head -20
echo "LESCAN| lines=$(wc -l </tmp/lescan.txt)"
# One line per advertising report btmon decoded: index, time, company, data.
awk '
/^[<>@=] / { if (rep != "") print rep; rep = ""; idx = ""
	if (match($0, /\[hci[0-9]+\]/)) idx = substr($0, RSTART + 1, RLENGTH - 2)
	tm = $NF; inrep = ($0 ~ /LE Meta Event/); next }
inrep && /Company:/ { sub(/^ +/, ""); co = $0 }
inrep && /^ +Data: / && co != "" { sub(/^ +Data: /, ""); rep = "BTMON| " idx " t=" tm " company=[" co "] data=" $0; co = "" }
END { if (rep != "") print rep }
' /tmp/btmon.txt
off ok
EOF
chmod +x "$rd/init"
(cd "$rd" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/initrd.gz") || skip "cannot pack the initrd"

# ---- 9. boot ------------------------------------------------------------------
LOG=$LOGDIR/console.log
accel="-accel tcg -cpu max"
[ "${BLE_VM_KVM:-0}" = 1 ] && [ -w /dev/kvm ] && accel="-accel kvm -cpu host"
say "booting $(cat "$CACHE/kernel-pkg") in qemu ($accel), limit ${TIMEOUT}s; logs in $LOGDIR"
tboot=$(date +%s)
# shellcheck disable=SC2086
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 $accel -m 512 -smp 1 -nographic -no-reboot \
	-nic user,model=e1000 \
	-kernel "$CACHE/kernel/vmlinuz" -initrd "$WORK/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1" </dev/null >"$LOG" 2>&1 &
QEMU_PID=$!
# Adding a device must not take the fleet down: once the board is online,
# provision a second device into the same Mosquitto files and reload the
# broker (SIGHUP), as an operator does; the board and the subscriber on
# the host must stay connected and authorised.
reload=none
for _ in $(seq 1 $((TIMEOUT * 5))); do
	kill -0 $QEMU_PID 2>/dev/null || break
	if grep -q '"status":"online"' "$LOGDIR/state.txt" 2>/dev/null; then
		if "${add[@]}" -data "$DATA" -id "$DEV-2" -operator board-vm -kind washer -machines 1 "${mflags[@]}" "${pidflag[@]}" \
			-mqtt-url "$URL" -mqtt-ca "$WORK/pki/ca.crt" -out "$WORK/device2" -mosquitto-dir "$MD" </dev/null >>"$LOGDIR/provision.log" 2>&1; then
			# device add sent SIGHUP itself when it took the PID file
			[ ${#pidflag[@]} -gt 0 ] || kill -HUP $MOSQ_PID
			reload=$(date +%s)
		else
			reload=failed
		fi
		break
	fi
	sleep 0.2
done
wait $QEMU_PID
qrc=$?
cp "$LOGDIR/mosquitto.log" "$LOGDIR/mosquitto-run.log" # the broker's log while the VM ran
sed -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\x1bc//g' "$LOG" >"$LOG.txt" && mv "$LOG.txt" "$LOG"
tend=$(date +%s)
say "qemu exit $qrc after $((tend - tboot))s (build $((tbuilt - T0))s, whole run $((tend - T0))s)"
grep -q 'VMSTEP init' "$LOG" || {
	tail -20 "$LOG" >&2
	[ $qrc = 124 ] && skip "VM did not reach /init within ${TIMEOUT}s" || skip "qemu failed (exit $qrc) before /init"
}
if ! grep -q '^VMDONE ok' "$LOG"; then
	grep -E '^VMFAIL|^VMSTEP' "$LOG" >&2
	tail -30 "$LOG" >&2
	die "VM test aborted$([ $qrc = 124 ] && echo " (timed out after ${TIMEOUT}s)"); log $LOG"
fi
sleep 0.5
kill $SUB_PID 2>/dev/null
wait $SUB_PID 2>/dev/null
SUB_PID=
# The retained state after the controller's orderly stop.
retained=$(mosquitto_sub -h 127.0.0.1 -p "$port" --cafile "$WORK/pki/ca.crt" -u "$SUBUSER" -P "$SUBPASS" -i "$SUBID-2" \
	-t "bv/v1/dev/$DEV/state" -C 1 -W 5 2>&1)

# ---- 10. checks ---------------------------------------------------------------
echo "board-vm: results (device $DEV, K=$K, controller ran ${RUN}s; logs in $LOGDIR)"
cstart=$(sed -n 's/^VMSTEP controller start=\([0-9]*\).*/\1/p' "$LOG")
cend=$(sed -n 's/^VMSTEP controller end=\([0-9]*\).*/\1/p' "$LOG")
crc=$(sed -n 's/^VMSTEP controller end=.* rc=\([0-9]*\).*/\1/p' "$LOG")
check "controller started on hci0 and the pty" "$(grep -q '^CTL| .*controller started' "$LOG" && echo 1 || echo 0)" "$(sed -n 's/^CTL| .*msg="controller started" //p' "$LOG" | head -1)"
check "controller connected over TLS" "$(grep -q "^CTL| .*mqtt connected.*broker=$URL" "$LOG" && echo 1 || echo 0)" "$(grep -c '^CTL| .*mqtt connected' "$LOG") connection(s) to $URL"
check "controller stopped cleanly on SIGTERM" "$([ "$crc" = 0 ] && echo 1 || echo 0)" "exit ${crc:-?}"
online=$(grep -c "^bv/v1/dev/$DEV/state .*\"status\":\"online\"" "$LOGDIR/state.txt")
check "state online reached the host over TLS" "$([ "$online" -ge 1 ] && echo 1 || echo 0)" "$online online state(s) seen by mosquitto_sub as $SUBUSER$( [ -s "$LOGDIR/sub.err" ] && echo ": $(head -1 "$LOGDIR/sub.err")")"
check "retained state after SIGTERM: offline" "$(echo "$retained" | grep -q '"status":"offline"' && echo 1 || echo 0)" "$(echo "$retained" | head -c 160)"
case $reload in
none | failed) check "second device add + broker reload" 0 "$([ $reload = failed ] && echo "device add failed: $(tail -2 "$LOGDIR/provision.log" | tr '\n' ' ')" || echo "the board never came online")" ;;
*)
	pwok=$(grep -c "^$DEV-2:" "$MD/passwords" 2>/dev/null)
	# Between the reload and the VM's end, the only disconnection allowed
	# is the board's own DISCONNECT at SIGTERM.
	drops=$(awk '/Reloading config/ { r = 1 } r' "$LOGDIR/mosquitto-run.log" |
		grep -E "Client ($DEV|$SUBID) (disconnected|closed its connection)|Socket error on client ($DEV|$SUBID)|not authori[sz]ed|Denied" |
		grep -v -c -F "Client $DEV disconnected.")
	offline=$(grep -c "^bv/v1/dev/$DEV/state .*\"status\":\"offline\"" "$LOGDIR/state.txt")
	check "second device add + reload kept the fleet" "$([ "$pwok" = 1 ] && grep -q 'Reloading config' "$LOGDIR/mosquitto.log" && [ "$drops" = 0 ] && [ "$offline" -ge 1 ] && echo 1 || echo 0)" \
		"$DEV-2 in passwords: $pwok; after the reload the board published its offline state to the subscriber ($offline); other disconnections or denials: $drops"
	;;
esac
mconn=$(grep -c "New client connected from 127.0.0.1:[0-9]* as $DEV .*u'$DEV'" "$LOGDIR/mosquitto.log")
check "broker log: device connected with its password" "$([ "$mconn" -ge 1 ] && echo 1 || echo 0)" "$mconn connection(s)$(grep -m1 -i -E 'denied|not authori' "$LOGDIR/mosquitto.log" | sed 's/^/; /')"

if [ -n "$cstart" ] && [ -n "$cend" ]; then
	"$WORK/bin/blevm" ids -key "$KEY" -k "$K" -from $((cstart - 1)) -to $((cend + 1)) | sed -n 's/.* id=//p' >"$WORK/expected"
fi
grep '^BTMON| hci1 ' "$LOG" >"$WORK/btmon1" || true
nb=$(wc -l <"$WORK/btmon1")
sed -n 's/.*company=\[[^]]*(65535)\] data=bc01\([0-9a-f]\{2\}\)\([0-9a-f]\{2\}\)\([0-9a-f]\{16\}\).*/\3/p' "$WORK/btmon1" | awk '!seen[$0]++' >"$WORK/ids"
nids=$(wc -l <"$WORK/ids")
bad=$(grep -v -x -F -f "$WORK/expected" "$WORK/ids" 2>/dev/null | tr '\n' ' ')
want=$((RUN >> K))
[ "$want" -gt 3 ] && want=3
[ "$want" -lt 1 ] && want=1
check "BlueZ (btmon, hci1) heard the beacon" "$([ "$nids" -gt 0 ] && echo 1 || echo 0)" "$nb reports, company 0xFFFF, frames bc 01"
check "IDs are the bundle key's, >= $want windows" "$([ "$nids" -ge "$want" ] && [ -z "$bad" ] && [ -s "$WORK/expected" ] && echo 1 || echo 0)" "$nids IDs: $(tr '\n' ' ' <"$WORK/ids")${bad:+; not from this key: $bad}"

if [ "$fail_count" = 0 ]; then
	echo "BOARD-VM RESULT: PASS ($((tend - T0))s; qemu $((tend - tboot))s; logs $LOGDIR)"
	exit 0
fi
echo "BOARD-VM RESULT: FAIL ($fail_count checks failed; logs $LOGDIR)"
exit 1
