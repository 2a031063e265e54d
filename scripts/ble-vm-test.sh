#!/usr/bin/env bash
# ble-vm-test.sh: prove the hw/ble go-ble HCI backend on a real Linux
# Bluetooth stack. Boots Debian's kernel in qemu (TCG) with btvirt's linked
# virtual LE controllers; hw/ble/cmd/blevm advertises the real Beacon on
# hci0 while BlueZ (hcitool lescan + btmon) listens on hci1 and the
# product's own scanner (blevm scan, go-ble) on hci2, all at once; then
# blevm gatt serves the GATT host with its test service on hci0, BlueZ's
# gatttool connects from hci1 (read, write, notifications, disconnect; then
# a silent central dropped by the idle timeout) while hcitool and btmon
# watch the beacon from hci2 go connectable -> non-connectable busy ->
# connectable. The host then checks the console output. See hw/ble/VM.md.
#
# Exit codes: 0 PASS, 1 FAIL (the stack ran and something was wrong),
# 2 SKIP-worthy: qemu, Debian packages, the kernel or the VM itself could
# not be had (a caller decides whether that fails a build).
#
# Environment:
#   BLE_VM_TIMEOUT   hard limit for the VM, seconds (default 120)
#   BLE_VM_ADV       advertising time inside the VM, seconds (default 18)
#   BLE_VM_K         rotation exponent, windows of 2^K s (default 2)
#   BLE_VM_CACHE     cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/beaconvend/ble-vm)
#   BLE_VM_LOG       where to keep the console log (default a temp dir, printed)
#   BLE_VM_DUMP=1    print btmon's whole decoding to the console log (BTMONRAW| lines)
#   BLE_VM_KEY       identity key the VM advertises and the checks expect (hex)
#   BLE_VM_CHECK_LOG re-run only the host checks on a kept console log (no VM)
#   BLE_VM_KVM=1     try -accel kvm (KVM guests hung on the dev machines; TCG is the default)
#   BLE_VM_PREPARE_ONLY=1  only make the host tools, kernel, modules and BlueZ
#                    userland available in the cache, then exit 0 (or 2); the
#                    board VM test (scripts/board-vm-test.sh) starts this way
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${BLE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beaconvend/ble-vm}
TIMEOUT=${BLE_VM_TIMEOUT:-120}
ADV=${BLE_VM_ADV:-18}
K=${BLE_VM_K:-2}
KEY=${BLE_VM_KEY:-000102030405060708090a0b0c0d0e0f} # blevm's TestKey
GKEY=0f0e0d0c0b0a09080706050403020100 # the GATT phase's key, so its frames are told apart
CHECK_LOG=${BLE_VM_CHECK_LOG:-}
MODULES="ecc ecdh_generic rfkill crc16 af_alg algif_skcipher algif_hash ecb cmac bluetooth hci_vhci"
# Cached too, for the board VM test's network (qemu user networking, e1000).
NET_MODULES="e1000"
T0=$(date +%s)

say() { printf 'ble-vm: %s\n' "$*" >&2; }
skip() {
	say "SKIP (exit 2): $*"
	echo "BLE-VM RESULT: SKIP ($*)"
	exit 2
}
fail_count=0
check() { # check NAME OK(0/1) DETAIL
	if [ "$2" = 1 ]; then
		printf '  ok    %-34s %s\n' "$1" "$3"
	else
		printf '  FAIL  %-34s %s\n' "$1" "$3"
		fail_count=$((fail_count + 1))
	fi
}

# ---- 1. host tools -------------------------------------------------------
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need_pkgs+=(busybox-static)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v btvirt >/dev/null || need_pkgs+=(bluez-test-tools)
for t in btmon hcitool hciconfig gatttool; do command -v $t >/dev/null || { need_pkgs+=(bluez); break; }; done
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || skip "no Go toolchain"
export PATH=$PATH:/usr/local/go/bin
if [ ${#need_pkgs[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || skip "missing packages ${need_pkgs[*]} and not root to install them"
	say "installing ${need_pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null 2>&1 || skip "apt-get update failed"
	apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1 ||
		skip "apt-get install ${need_pkgs[*]} failed"
fi
for t in qemu-system-x86_64 cpio btvirt btmon hcitool hciconfig gatttool; do
	command -v $t >/dev/null || skip "$t still missing"
done
ldd /bin/busybox >/dev/null 2>&1 && skip "/bin/busybox is not static (install busybox-static)"

if [ -z "$CHECK_LOG" ]; then
# ---- 2. kernel and modules (cached) --------------------------------------
mkdir -p "$CACHE" || skip "cannot create $CACHE"
kpkg=$(cat "$CACHE/kernel-pkg" 2>/dev/null || true)
if [ -z "$kpkg" ] || [ ! -f "$CACHE/kernel/vmlinuz" ] || [ ! -f "$CACHE/kernel/modules/hci_vhci.ko" ] || [ ! -f "$CACHE/kernel/modules/e1000.ko" ]; then
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	if [ -z "$kpkg" ]; then
		[ "$(id -u)" = 0 ] && { apt-get update -qq >/dev/null 2>&1 || true; }
		kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	fi
	[ -n "$kpkg" ] || skip "cannot resolve the kernel package behind linux-image-amd64"
	say "fetching $kpkg"
	rm -rf "$CACHE/kernel" "$CACHE/dl" && mkdir -p "$CACHE/dl" "$CACHE/kernel/modules"
	(cd "$CACHE/dl" && apt-get download "$kpkg" >/dev/null 2>&1) || skip "apt-get download $kpkg failed"
	dpkg -x "$CACHE"/dl/*.deb "$CACHE/dl/x" || skip "dpkg -x failed"
	cp "$CACHE"/dl/x/boot/vmlinuz-* "$CACHE/kernel/vmlinuz" || skip "no vmlinuz in $kpkg"
	for m in $MODULES $NET_MODULES; do
		f=$(find "$CACHE/dl/x/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" | head -1)
		[ -n "$f" ] || skip "module $m not in $kpkg"
		case $f in *.xz) xz -dc "$f" >"$CACHE/kernel/modules/$m.ko" ;; *) cp "$f" "$CACHE/kernel/modules/$m.ko" ;; esac
	done
	rm -rf "$CACHE/dl"
	echo "$kpkg" >"$CACHE/kernel-pkg"
fi

# ---- 3. userland base: busybox, BlueZ tools and their libraries (cached) --
base=$CACHE/base
TOOLS="btvirt btmon hcitool hciconfig gatttool"
stamp="$TOOLS $(dpkg-query -W -f='${Version}' bluez bluez-test-tools busybox-static 2>/dev/null | tr '\n' ' ')"
if [ "$(cat "$CACHE/base-stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$base/bin/busybox" ] || [ ! -L "$base/bin/sh" ]; then
	rm -rf "$base" && mkdir -p "$base"/{bin,sbin,lib64,lib/x86_64-linux-gnu,proc,sys,dev,tmp,run,etc}
	cp /bin/busybox "$base/bin/busybox"
	ln -s busybox "$base/bin/sh"
	for t in $TOOLS; do
		cp "$(command -v $t)" "$base/bin/$t"
		ldd "$(command -v $t)" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/lib64/ {print $1}' | while read -r lib; do
			case $lib in
			/lib64/*) cp -L "$lib" "$base/lib64/" ;;
			*) cp -L "$lib" "$base/lib/x86_64-linux-gnu/" ;;
			esac
		done
	done
	[ -f "$base/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$base/lib64/"
	echo "$stamp" >"$CACHE/base-stamp"
fi

fi
if [ "${BLE_VM_PREPARE_ONLY:-0}" = 1 ]; then
	[ -z "$CHECK_LOG" ] || skip "BLE_VM_PREPARE_ONLY and BLE_VM_CHECK_LOG together"
	say "prepared: $CACHE ($(cat "$CACHE/kernel-pkg"))"
	exit 0
fi

# ---- 4. blevm and the initrd ---------------------------------------------
WORK=$(mktemp -d /tmp/ble-vm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$WORK/blevm" ./hw/ble/cmd/blevm) ||
	{ echo "BLE-VM RESULT: FAIL (blevm does not build)"; exit 1; }

if [ -z "$CHECK_LOG" ]; then
rd=$WORK/rd
cp -a "$base" "$rd"
mkdir -p "$rd/lib/modules"
for m in $MODULES; do cp "$CACHE/kernel/modules/$m.ko" "$rd/lib/modules/"; done
cp "$WORK/blevm" "$rd/bin/blevm"
cat >"$rd/etc/blevm.conf" <<EOF
MODULES="$MODULES"
ADV=$ADV
K=$K
KEY=$KEY
GKEY=$GKEY
DUMP=${BLE_VM_DUMP:-0}
EOF
cat >"$rd/init" <<'EOF'
#!/bin/sh
# /init of the ble-vm test: every line the host reads starts with a tag.
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
. /etc/blevm.conf
off() { echo "VMDONE $1"; sync; poweroff -f; sleep 5; }
echo; echo "VMSTEP init kernel=$(uname -r) clock=$(date +%s)"
for m in $MODULES; do
	insmod /lib/modules/$m.ko 2>/tmp/insmod.err || { echo "VMFAIL insmod $m: $(cat /tmp/insmod.err)"; off fail; }
done
echo "VMSTEP modules"
btvirt -L -l3 >/tmp/btvirt.log 2>&1 &
n=0
while [ ! -e /sys/class/bluetooth/hci2 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
[ -e /sys/class/bluetooth/hci2 ] || { echo "VMFAIL btvirt: no hci2: $(cat /tmp/btvirt.log)"; off fail; }
echo "VMSTEP btvirt $(ls /sys/class/bluetooth | tr '\n' ' ')"
btmon -t >/tmp/btmon.txt 2>&1 &
BTMON=$!
blevm perms -hci 0 >/tmp/perms.txt 2>&1
echo "VMSTEP perms"
hciconfig hci1 up || echo "VMFAIL hciconfig hci1 up"
hcitool -i hci1 lescan --duplicates >/tmp/lescan.txt 2>&1 &
LESCAN=$!
blevm scan -hci 2 -duration $((ADV + 4))s >/tmp/scan.txt 2>/tmp/scan.err &
SCAN=$!
sleep 2
# Probe: can BlueZ use an adapter go-ble holds as a user channel?
echo "PROBE| hciconfig hci2 up while blevm scan holds it: rc=$(hciconfig hci2 up >/tmp/up.err 2>&1; echo $?) $(cat /tmp/up.err); hciconfig then shows: $(hciconfig hci2 | sed -n 's/^[[:space:]]*\(UP\|DOWN\)/\1/p')"
echo "VMSTEP advertise $(date +%s)"
blevm advertise -hci 0 -key $KEY -k $K -busy-after 2 -duration ${ADV}s >/tmp/adv.txt 2>/tmp/adv.err
echo "VMSTEP advertised rc=$? $(date +%s)"
wait $SCAN
echo "VMSTEP scanned rc=$?"
# Probe: what happens to hcitool's scan when go-ble opens the same adapter?
echo "PROBE| before: hci1 $(hciconfig hci1 | grep -o -E 'UP RUNNING|DOWN' | head -1), hcitool lescan $(kill -0 $LESCAN 2>/dev/null && echo running || echo gone)"
blevm scan -hci 1 -duration 1s >/tmp/probe.txt 2>&1
echo "PROBE| blevm scan -hci 1 (hci1 up, hcitool scanning): $(grep -E 'SCANEND|ERROR' /tmp/probe.txt | head -1)"
sleep 0.3
echo "PROBE| after: hci1 $(hciconfig hci1 | grep -o -E 'UP RUNNING|DOWN' | head -1), hcitool lescan $(kill -0 $LESCAN 2>/dev/null && echo running || echo gone): $(tail -1 /tmp/lescan.txt)"
kill -INT $LESCAN 2>/dev/null; sleep 0.3
hciconfig hci1 down
sleep 0.5
# GATT phase: the GATT host on hci0 (public address), gatttool on hci1,
# an observer (hcitool lescan, btmon) on hci2. One central at a time.
echo "VMSTEP gatt $(date +%s)"
ADDR=$(hciconfig hci0 | sed -n 's/.*BD Address: \([0-9A-F:]*\).*/\1/p')
hciconfig hci1 up || echo "VMFAIL hciconfig hci1 up (gatt)"
hciconfig hci2 up || echo "VMFAIL hciconfig hci2 up (gatt)"
hcitool -i hci2 lescan --duplicates >/tmp/lescan2.txt 2>&1 &
LESCAN2=$!
blevm gatt -hci 0 -key $GKEY -k $K -idle 4s -duration 60s >/tmp/gatt.txt 2>/tmp/gatt.err &
GATT=$!
n=0
while ! grep -q 'BLEVM GATTHANDLES' /tmp/gatt.txt && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
eval "$(sed -n 's/^BLEVM GATTHANDLES read=\(0x[0-9a-f]*\) write=\(0x[0-9a-f]*\) notify=\(0x[0-9a-f]*\) cccd=\(0x[0-9a-f]*\).*/RH=\1 WH=\2 NH=\3 CH=\4/p' /tmp/gatt.txt)"
echo "VMSTEP gatt addr=$ADDR read=${RH:-?} write=${WH:-?} notify=${NH:-?} cccd=${CH:-?}"
sleep 1.5
# 1: connect, MTU, read, write, read back, subscribe, notifications for 5 s
# (a window boundary passes; a read half-way keeps it within the idle
# timeout), disconnect
{ echo connect; sleep 2.5; echo "mtu 247"; sleep 1; echo "char-read-hnd $RH"; sleep 0.7
  echo "char-write-req $WH 68656c6c6f2d766d"; sleep 0.7; echo "char-read-hnd $RH"; sleep 0.7
  echo "char-write-req $CH 0100"; sleep 2.5; echo "char-read-hnd $RH"; sleep 2.5; echo disconnect; sleep 0.5; echo exit; sleep 1; } |
	timeout -s KILL 25 gatttool -i hci1 -b "$ADDR" -I >/tmp/gatttool1.txt 2>&1
echo "VMSTEP gatttool 1 rc=$? $(date +%s)"
sleep 2
# 2: a central that connects and says nothing: the idle timeout (4 s) drops it
# (gatttool hangs when its input ends right after "exit": hence the sleeps)
{ echo connect; sleep 7; echo exit; sleep 1; } | timeout -s KILL 15 gatttool -i hci1 -b "$ADDR" -I >/tmp/gatttool2.txt 2>&1
echo "VMSTEP gatttool 2 rc=$? $(date +%s)"
sleep 2
kill -INT $GATT 2>/dev/null
wait $GATT
echo "VMSTEP gatt done rc=$? $(date +%s)"
kill -INT $LESCAN2 2>/dev/null; sleep 0.3
hciconfig hci1 down; hciconfig hci2 down
sleep 0.5
kill $BTMON; sleep 0.3
sed 's/^/GATT| /' /tmp/gatt.txt
sed 's/^/GATTERR| /' /tmp/gatt.err | grep -v -e 'level=DEBUG' | head -60
sed 's/^/GATTTOOL1| /' /tmp/gatttool1.txt
sed 's/^/GATTTOOL2| /' /tmp/gatttool2.txt
sed 's/^/PERMS| /' /tmp/perms.txt
sed 's/^/ADV| /' /tmp/adv.txt
sed 's/^/ADVERR| /' /tmp/adv.err | head -60
sed 's/^/SCAN| /' /tmp/scan.txt
sed 's/^/SCANERR| /' /tmp/scan.err | head -40
echo "LESCAN| lines=$(wc -l </tmp/lescan.txt) distinct=$(sort -u /tmp/lescan.txt | wc -l)"
sort /tmp/lescan.txt | uniq -c | sort -rn | head -20 | sed 's/^/LESCAN| /'
echo "BTMONSIZE| lines=$(wc -l </tmp/btmon.txt)"
# btmon's decoding, with the controller index of each event or command.
# BTMON: one line per advertising report (index, time, company, data, event
# type, address). BTCMD: every command completed on hci0, with its status.
# BTPARAM: each LE Set Advertising Parameters sent to hci0, on one line.
awk '
function flush() { if (rep != "") print rep; rep = ""; if (pl != "") print "BTPARAM| hci0 t=" pt pl; pl = "" }
/^[<>@=] / { flush(); idx = ""
	if (match($0, /\[hci[0-9]+\]/)) idx = substr($0, RSTART + 1, RLENGTH - 2)
	tm = $NF; inrep = ($0 ~ /LE Meta Event/); cc = (idx == "hci0" && $0 ~ /Command Complete/); ccname = ""
	par = (idx == "hci0" && $0 ~ /^< .*\(0x08\|0x0006\)/); pt = tm
	next }
par && /(interval|Type|Own address type|Channel map):/ { x = $0; sub(/^ +/, "", x); pl = pl "; " x; next }
cc && ccname == "" { ccname = $0; sub(/^ +/, "", ccname); sub(/ ncmd.*/, "", ccname); next }
cc && /Status:/ { st = $0; sub(/^ +Status: /, "", st); print "BTCMD| hci0 t=" tm " " ccname " -> " st; cc = 0; next }
inrep && /Event type:/ { sub(/^ +/, ""); et = $0 }
inrep && /Address:/ { sub(/^ +/, ""); addr = $0 }
inrep && /Company:/ { sub(/^ +/, ""); co = $0 }
inrep && /^ +Data: / && co != "" { sub(/^ +Data: /, ""); rep = "BTMON| " idx " t=" tm " company=[" co "] data=" $0 " type=[" et "] addr=[" addr "]"; co = "" }
END { flush() }
' /tmp/btmon.txt
sed 's/^/BTVIRT| /' /tmp/btvirt.log | head -20
[ "$DUMP" = 1 ] && sed 's/^/BTMONRAW| /' /tmp/btmon.txt
off ok
EOF
chmod +x "$rd/init"
(cd "$rd" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/initrd.gz") || skip "cannot pack the initrd"
fi

# ---- 5. boot ---------------------------------------------------------------
if [ -z "$CHECK_LOG" ]; then
LOGDIR=${BLE_VM_LOG:-$(mktemp -d /tmp/ble-vm-log.XXXXXX)}
mkdir -p "$LOGDIR"
LOG=$LOGDIR/console.log
accel="-accel tcg -cpu max"
[ "${BLE_VM_KVM:-0}" = 1 ] && [ -w /dev/kvm ] && accel="-accel kvm -cpu host"
say "booting $(cat "$CACHE/kernel-pkg") in qemu ($accel), limit ${TIMEOUT}s; console log $LOG"
tboot=$(date +%s)
# shellcheck disable=SC2086
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 $accel -m 512 -smp 1 -nographic -no-reboot \
	-kernel "$CACHE/kernel/vmlinuz" -initrd "$WORK/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1" </dev/null >"$LOG" 2>&1
qrc=$?
# drop CRs and the terminal escapes SeaBIOS/the kernel print, which would
# otherwise glue themselves to the first line of /init
sed -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\x1bc//g' "$LOG" >"$LOG.txt" && mv "$LOG.txt" "$LOG"
tend=$(date +%s)
say "qemu exit $qrc after $((tend - tboot))s (whole run $((tend - T0))s)"
else
	LOG=$CHECK_LOG qrc=0 tboot=$(date +%s) tend=$(date +%s)
	[ -f "$LOG" ] || skip "no log $LOG"
fi
grep -q 'VMSTEP init' "$LOG" || {
	tail -20 "$LOG" >&2
	[ $qrc = 124 ] && skip "VM did not reach /init within ${TIMEOUT}s" || skip "qemu failed (exit $qrc) before /init"
}
if ! grep -q '^VMDONE ok' "$LOG"; then
	grep -E '^VMFAIL|^VMSTEP' "$LOG" >&2
	tail -30 "$LOG" >&2
	[ $qrc = 124 ] && echo "BLE-VM RESULT: FAIL (VM timed out after ${TIMEOUT}s; log $LOG)" ||
		echo "BLE-VM RESULT: FAIL (VM test aborted; log $LOG)"
	exit 1
fi

# ---- 6. checks -------------------------------------------------------------
echo "ble-vm: results ($(cat "$CACHE/kernel-pkg" 2>/dev/null), K=$K, ${ADV}s of advertising)"
grep -E '^PERMS\| BLEVM PERM' "$LOG" | sed 's/^PERMS| BLEVM PERM /  perm: /'
grep -E '^ADV\| BLEVM (ONAIR|SETSTATE)' "$LOG" | sed 's/^ADV| BLEVM /  adv: /'
sed -n 's/^BTPARAM| hci0 t=[0-9:.]*; /  params: /p' "$LOG" | sort | uniq -c

advstart=$(sed -n 's/^ADV| BLEVM ADVSTART at=\([0-9]*\).*/\1/p' "$LOG")
advend=$(sed -n 's/^ADV| BLEVM ADVEND at=\([0-9]*\).*/\1/p' "$LOG")
advsum=$(sed -n 's/^ADV| BLEVM ADVEND //p' "$LOG")
check "advertiser ran without errors" "$([ -n "$advend" ] && echo "$advsum" | grep -q ' errors=0 ' && echo 1 || echo 0)" "${advsum:-no ADVEND line}"
[ -n "$advstart" ] && [ -n "$advend" ] || { echo "BLE-VM RESULT: FAIL (advertiser did not run; log $LOG)"; exit 1; }
"$WORK/blevm" ids -key $KEY -k "$K" -from $((advstart - 1)) -to $((advend + 1)) | sed -n 's/.* id=//p' >"$WORK/expected"

# The GATT phase (5) advertises with its own key; its frames are not phase 1's.
gstart=$(sed -n 's/^GATT| BLEVM GATTSTART at=\([0-9]*\).*/\1/p' "$LOG")
gend=$(sed -n 's/^GATT| BLEVM GATTEND at=\([0-9]*\).*/\1/p' "$LOG")
: >"$WORK/gexpected"
[ -n "$gstart" ] && [ -n "$gend" ] &&
	"$WORK/blevm" ids -key $GKEY -k "$K" -from $((gstart - 1)) -to $((gend + 1)) | sed -n 's/.* id=//p' >"$WORK/gexpected"
[ -s "$WORK/gexpected" ] || echo "none" >"$WORK/gexpected"
# (1) BlueZ's decoding (btmon) of what hci1 received.
grep '^BTMON| hci1 ' "$LOG" | grep -v -F -f "$WORK/gexpected" >"$WORK/btmon1" || true
nb=$(wc -l <"$WORK/btmon1")
nff=$(grep -c 'company=\[[^]]*(65535)\] data=bc01' "$WORK/btmon1" || true)
check "btmon: company 0xFFFF, BC 01 payload" "$([ "$nff" -gt 0 ] && echo 1 || echo 0)" "$nff of $nb decoded reports on hci1 ($(head -1 "$WORK/btmon1" | sed 's/.*company=\[\([^]]*\)\].*type=\[\([^]]*\)\].*/\1; \2/'))"
# payload: bc 01 <state> <tx> <id 8>
sed -n 's/.*company=\[[^]]*(65535)\] data=bc01\([0-9a-f]\{2\}\)\([0-9a-f]\{2\}\)\([0-9a-f]\{16\}\) .*/\1 \3/p' "$WORK/btmon1" >"$WORK/btmon-frames"
awk '{print $2}' "$WORK/btmon-frames" | awk '!seen[$0]++' >"$WORK/btmon-ids"
nids=$(wc -l <"$WORK/btmon-ids")
bad=$(grep -v -x -F -f "$WORK/expected" "$WORK/btmon-ids" | tr '\n' ' ')
check "btmon: >= 3 distinct proximity IDs" "$([ "$nids" -ge 3 ] && echo 1 || echo 0)" "$nids IDs: $(tr '\n' ' ' <"$WORK/btmon-ids")"
inorder=$(case " $(tr '\n' ' ' <"$WORK/expected")" in *" $(tr '\n' ' ' <"$WORK/btmon-ids")"*) echo 1 ;; *) echo 0 ;; esac)
check "btmon: IDs of consecutive windows" "$([ "$nids" -gt 0 ] && echo "$inorder")" "heard in window order, none skipped"
check "btmon: IDs are the key's for the windows" "$([ "$nids" -gt 0 ] && [ -z "$bad" ] && echo 1 || echo 0)" "${bad:+unexpected: $bad}$([ -z "$bad" ] && echo "all in the $(wc -l <"$WORK/expected") expected for $advstart..$advend")"
# (3) state: idle (00) first, then busy (01), never back.
states=$(awk '{print $1}' "$WORK/btmon-frames" | uniq | tr '\n' ' ' | sed 's/ $//')
check "btmon: state idle -> busy" "$([ "$states" = "00 01" ] && echo 1 || echo 0)" "state sequence: ${states:-none}"
switchid=$(awk '$1=="00"{i[$2]=1} $1=="01" && i[$2]{print $2; exit}' "$WORK/btmon-frames")
check "btmon: state change inside a window" "$([ -n "$switchid" ] && echo 1 || echo 0)" "${switchid:+same ID $switchid heard idle and busy}"
en=$(grep -c '^BTCMD| hci0 .*LE Set Advertise Enable .*-> Success' "$LOG" || true)
nok=$(grep '^BTCMD| hci0 ' "$LOG" | grep -v -e '-> Success' -e 'LE Set Advertise Enable (0x08|0x000a) -> Command Disallowed' | sed 's/^BTCMD| //')
check "hci0: every command succeeded" "$([ -z "$nok" ] && [ "$en" -gt 0 ] && echo 1 || echo 0)" "${nok:-$(grep -c '^BTCMD| hci0 ' "$LOG") commands (disable-while-off answered Command Disallowed, as tolerated)}"


# (4) the product's scanner (go-ble on hci2, beacon.Decode).
grep '^SCAN| BLEVM FRAME ' "$LOG" | sed -n 's/.* state=\([a-z]*\) .* id=\([0-9a-f]*\) .*/\1 \2/p' >"$WORK/scan-frames"
scansum=$(sed -n 's/^SCAN| BLEVM SCANEND //p' "$LOG")
check "product scanner ran" "$([ -n "$scansum" ] && echo 1 || echo 0)" "${scansum:-no SCANEND line}"
sed -e 's/^00 /idle /' -e 's/^01 /busy /' "$WORK/btmon-frames" | awk '!seen[$0]++' | sort >"$WORK/btmon-set"
sort -u "$WORK/scan-frames" >"$WORK/scan-set"
grep '^ADV| BLEVM ONAIR ' "$LOG" | sed -n 's/.* state=\([a-z]*\) id=\([0-9a-f]*\) .*/\1 \2/p' | sort -u >"$WORK/adv-set"
sids=$(awk '{print $2}' "$WORK/scan-frames" | sort -u | wc -l)
sbad=$(awk '{print $2}' "$WORK/scan-frames" | sort -u | grep -v -x -F -f "$WORK/expected" | tr '\n' ' ')
check "scanner: >= 3 expected IDs" "$([ "$sids" -ge 3 ] && [ -z "$sbad" ] && echo 1 || echo 0)" "$sids IDs${sbad:+, unexpected: $sbad}"
sstates=$(awk '{print $1}' "$WORK/scan-frames" | uniq | tr '\n' ' ' | sed 's/ $//')
check "scanner: state idle -> busy" "$([ "$sstates" = "idle busy" ] && echo 1 || echo 0)" "state sequence (first sightings): ${sstates:-none}"
check "scanner frames == btmon frames" "$(cmp -s "$WORK/scan-set" "$WORK/btmon-set" && [ -s "$WORK/scan-set" ] && echo 1 || echo 0)" "$(wc -l <"$WORK/scan-set") vs $(wc -l <"$WORK/btmon-set") (state, ID) pairs$(cmp -s "$WORK/scan-set" "$WORK/btmon-set" || echo ": $(diff "$WORK/scan-set" "$WORK/btmon-set" | grep '^[<>]' | tr '\n' ' ')")"
check "every frame put on air was heard" "$(cmp -s "$WORK/adv-set" "$WORK/btmon-set" && echo 1 || echo 0)" "$(wc -l <"$WORK/adv-set") on air$(cmp -s "$WORK/adv-set" "$WORK/btmon-set" || echo ": $(diff "$WORK/adv-set" "$WORK/btmon-set" | grep '^[<>]' | tr '\n' ' ')")"
grep '^SCAN| BLEVM FRAMESUM ' "$LOG" | sed 's/^SCAN| BLEVM FRAMESUM /  heard: /'
sed -n 's/^PROBE| /  probe: /p' "$LOG"
echo "  btmon: $nb reports on hci1, $(grep -c '^BTMON| hci2 ' "$LOG") on hci2; $en LE Set Advertise Enable commands (on+off) on hci0; $(sed -n 's/^LESCAN| lines=//p' "$LOG") (hcitool lescan)"

# (5) the GATT host (blevm gatt on hci0), gatttool on hci1, observer on hci2.
echo "ble-vm: GATT host (connectable beacon, gatttool central, observer on hci2)"
sed -n 's/^GATT| BLEVM GATTAIR /  air: /p' "$LOG"
gsum=$(sed -n 's/^GATT| BLEVM GATTEND //p' "$LOG")
# idle_drops: the silent central, and (2) the first one too when the kernel
# keeps its LE link after gatttool's disconnect (it only closes the L2CAP
# socket; without bluetoothd nothing ends the link): the timeout ends it.
check "gatt host ran without errors" "$(echo "$gsum" | grep -q ' errors=0 .* connections=2 refused=0 idle_drops=[12] writes=1 subscriptions=1 value="hello-vm" ' && echo 1 || echo 0)" "${gsum:-no GATTEND line}"
gidle=$(grep -c '^GATTERR| .*idle central disconnected' "$LOG" || true)
check "gatt: silent central dropped" "$(grep '^GATTERR| .*idle central disconnected' "$LOG" | tail -1 | grep -q 'silent=4\.[0-4]' && echo 1 || echo 0)" "$gidle idle drops; last: $(grep '^GATTERR| .*idle central disconnected' "$LOG" | tail -1 | sed -n 's/.*\(silent=[0-9.]*s\).*/\1/p')"
g1=$(grep '^GATTTOOL1| ' "$LOG")
check "gatttool: connected" "$(echo "$g1" | grep -q 'Connection successful' && echo 1 || echo 0)" "$(echo "$g1" | grep -c 'Connection successful') x Connection successful"
check "gatttool: MTU 247 exchanged" "$(echo "$g1" | grep -q 'MTU was exchanged successfully: 247' && echo 1 || echo 0)" "$(echo "$g1" | grep -o 'MTU was exchanged[^$]*' | head -1)"
rd=$(echo "$g1" | sed -n 's/.*Characteristic value\/descriptor: \([0-9a-f ]*\).*/\1/p' | sed 's/ *$//' | tr '\n' '|')
check "gatttool: read, write, read back" "$([ "$rd" = "62 65 61 63 6f 6e 76 65 6e 64|68 65 6c 6c 6f 2d 76 6d|68 65 6c 6c 6f 2d 76 6d|" ] && echo "$g1" | grep -q 'Characteristic value was written successfully' && echo 1 || echo 0)" "reads: ${rd:-none} (beaconvend, hello-vm, hello-vm)"
nn=$(echo "$g1" | grep -c "Notification handle = ${NHX:-0x}" || true)
nt=$(echo "$g1" | grep -c 'Notification handle = .* value: 74 69 63 6b' || true)
check "gatttool: notifications" "$(echo "$g1" | grep -q 'Notification handle = .* value: 68 65 6c 6c 6f 2d 76 6d' && [ "$nt" -ge 3 ] && echo 1 || echo 0)" "$nn notifications: the value, then $nt ticks"
grep '^BTMON| hci2 ' "$LOG" | sed -n 's/.*data=bc01\([0-9a-f]\{2\}\)[0-9a-f]\{2\}\([0-9a-f]\{16\}\) type=\[\([^]]*\)\].*/\3 \1 \2/p' |
	sed -e 's/^.*ADV_NONCONN_IND[^ ]* [^ ]* /NONCONN /' -e 's/^.*ADV_IND[^ ]* [^ ]* /IND /' |
	grep -F -f "$WORK/gexpected" >"$WORK/gframes" || true
gseq=$(awk '{print $1 ":" $2}' "$WORK/gframes" | uniq | tr '\n' ' ' | sed 's/ $//')
check "observer: connectable -> busy -> connectable" "$(case "$gseq" in "IND:00 NONCONN:01 IND:00 NONCONN:01 IND:00"*) echo 1 ;; *) echo 0 ;; esac)" "hci2 heard (type:state, first of each run): ${gseq:-nothing}"
gbusy=$(awk '$1 == "NONCONN" && $2 == "01" {if (!s[$3]++) n++} $1 == "IND" && n > 0 {exit} END {print n + 0}' "$WORK/gframes")
check "observer: rotation while connected" "$([ "$gbusy" -ge 2 ] && echo 1 || echo 0)" "$gbusy distinct IDs heard busy during the first connection"
echo "  observer: $(wc -l <"$WORK/gframes") reports of the GATT phase on hci2"

if [ "$fail_count" = 0 ]; then
	echo "BLE-VM RESULT: PASS ($((tend - T0))s; qemu $((tend - tboot))s; log $LOG)"
	exit 0
fi
echo "BLE-VM RESULT: FAIL ($fail_count checks failed; log $LOG)"
exit 1
