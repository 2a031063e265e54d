#!/usr/bin/env bash
# The README's demo: a cloud, three controllers on emulated boards and a
# phone buying from each, all on this machine, needing only Go.
#
#   scripts/demo.sh            run the purchases, then keep everything up
#                              (prints the phone API and operator addresses)
#                              until Ctrl-C
#   DEMO_EXIT=1 scripts/demo.sh   exit after the purchases (tests use this)
#
# What it does, in order:
#   1. builds cloud, controller, hwsim and phone (and a small helper for the
#      hwsim control socket and the cloud's metrics) into a temporary dir;
#   2. starts one hwsim per machine on its own pty, with fast sim settings
#      (washer cycle 3 s, vend 300 ms), written as YAML into the temp dir;
#   3. provisions an operator and three devices with `cloud device add`
#      (water dispenser on pulse-io-4, 4-washer laundromat on
#      generic-relay-8, 10-slot vending machine on generic-relay-16), each
#      pointing at its hwsim pty;
#   4. starts `cloud serve` with the development configuration
#      cloud/server/testdata/cloud.dev.yaml (sandbox card, embedded broker,
#      SQLite, free loopback ports; the cloud logs these at WARN),
#      points each controller config at its broker and at a simulated air
#      group of this run only, starts the three controllers;
#   5. runs the phone client, scripted: water stopped early by the user,
#      one laundry cycle, one vend, and a vend from a jammed slot (jammed
#      through the hwsim control socket) that is refunded in full;
#   6. prints every receipt and the ledger totals (wallet before/after,
#      held, captured, released, the operator's view, and the ledger
#      imbalance gauge from the admin listener's /metrics, which must be 0);
#   7. logs in to the operator console (/console/) through its form and
#      prints its address and the operator's log-in.
#
# Environment:
#   DEMO_EXIT=1           exit after the purchases instead of waiting
#   DEMO_HTTP=ADDR        phone/operator API listen address (default 127.0.0.1:0, a free port)
#   DEMO_MQTT=ADDR        embedded broker listen address (default 127.0.0.1:0)
#   DEMO_AIR=GROUP:PORT   simulated air group (default: a random one for this run)
#   DEMO_STEP_TIMEOUT=S   seconds any one step may take (default 60)
#   DEMO_KEEP=1           keep the temporary directory (logs) on exit
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
export GOFLAGS="${GOFLAGS:-} -mod=mod"

STEP_TIMEOUT=${DEMO_STEP_TIMEOUT:-60}
D=$(mktemp -d "${TMPDIR:-/tmp}/beaconvend-demo.XXXXXX")
BIN=$D/bin
PIDS=()

cleanup() {
	local st=$?
	trap - EXIT INT TERM
	# Newest first, one at a time: the controllers stop (outputs OFF,
	# reports sent) while their boards and the broker are still there.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "${DEMO_KEEP:-}" = 1 ]; then
		echo "demo: logs kept in $D" >&2
	else
		rm -rf "$D"
	fi
	exit "$st"
}
trap cleanup EXIT
trap 'echo; echo "demo: stopping"; exit 0' INT TERM

step() { printf '\n== %s  [%ds]\n' "$*" "$SECONDS"; }
fail() {
	echo "demo: FAIL: $*" >&2
	for f in "$D"/*.log; do
		[ -s "$f" ] || continue
		echo "--- last lines of $(basename "$f")" >&2
		tail -n 15 "$f" >&2
	done
	exit 1
}

# wait_for FILE PATTERN WHAT PID: wait (bounded) until FILE has a line
# matching PATTERN, failing early if PID died.
wait_for() {
	local file=$1 pat=$2 what=$3 pid=$4
	for _ in $(seq $((STEP_TIMEOUT * 10))); do
		if grep -q -- "$pat" "$file" 2>/dev/null; then return 0; fi
		kill -0 "$pid" 2>/dev/null || fail "$what exited early"
		sleep 0.1
	done
	fail "$what not ready within ${STEP_TIMEOUT}s"
}

# json_field FILE KEY: the first string value of "KEY" in a one-line JSON file.
json_field() { sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" "$1" | head -n1; }
# minor KEY: the minor units of amount KEY in a receipt line on stdin.
minor() { sed -n "s/.*\"$1\":{\"minor\":\(-\{0,1\}[0-9]*\).*/\1/p"; }
# money N: minor units as 12.34
money() { local n=$1 s=""; if ((n < 0)); then s=-; n=$((-n)); fi; printf '%s%d.%02d' "$s" $((n / 100)) $((n % 100)); }

# run_bounded SECONDS CMD...: run CMD (a program), stopping it after SECONDS
# (status 124 then).
run_bounded() {
	local secs=$1; shift
	timeout -k 5 "$secs" "$@"
}

# ---------------------------------------------------------------- build
step "build (into $D)"
mkdir -p "$BIN"
# A cold build (empty module and build caches) takes a minute or more:
# go build -v names each package it compiles, and a line every 5 s says
# how far it got, so a first run does not look hung.
build_progress() { # LOG PID
	local log=$1 pid=$2 t0=$SECONDS
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		kill -0 "$pid" 2>/dev/null || break
		printf '  building: %d packages compiled, %ds, last %s\n' "$(grep -vc '^#' "$log" 2>/dev/null || echo 0)" $((SECONDS - t0)) "$(tail -n1 "$log" 2>/dev/null)"
	done
}
run_bounded 600 go build -v -o "$BIN/" ./cloud/cmd/cloud ./controller/cmd/controller ./hw/cmd/hwsim ./app-protocol/cmd/phone 2>"$D/build.log" &
BUILD_PID=$!
build_progress "$D/build.log" $BUILD_PID &
PROGRESS_PID=$!
build_st=0
wait $BUILD_PID || build_st=$?
kill $PROGRESS_PID 2>/dev/null || true
wait $PROGRESS_PID 2>/dev/null || true
[ $build_st = 0 ] || fail "go build (see build.log)"
n=$(grep -vc '^#' "$D/build.log" || true)
if [ "$n" = 0 ]; then echo "  built: everything from the build cache"; else echo "  built: $n packages compiled in $((SECONDS))s"; fi
# democtl: talks to the hwsim control socket and reads the cloud's operator
# API and /metrics, so the demo needs neither socat nor curl nor jq.
mkdir -p "$D/democtl"
cat >"$D/democtl/go.mod" <<'EOF'
module democtl

go 1.26
EOF
cat >"$D/democtl/main.go" <<'EOF'
// democtl: demo helper. Commands:
//   ctl SOCKET JSON                send one control command to hwsim, print the reply
//   metric URL NAME                print the value of a Prometheus metric at URL
//   operator API EMAIL PASSWORD    print the operator's sessions as totals
//   console API EMAIL PASSWORD     log in to the operator console's form; open its users page
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"time"
)

func die(f string, a ...any) { fmt.Fprintf(os.Stderr, "democtl: "+f+"\n", a...); os.Exit(1) }

func main() {
	if len(os.Args) < 2 {
		die("usage: ctl|metric|operator|console ...")
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	switch a := os.Args[2:]; os.Args[1] {
	case "ctl":
		c, err := net.DialTimeout("unix", a[0], 5*time.Second)
		if err != nil {
			die("%v", err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintln(c, a[1])
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			die("%v", err)
		}
		fmt.Print(line)
		if !strings.Contains(line, `"ok":true`) {
			os.Exit(1)
		}
	case "metric":
		r, err := hc.Get(a[0])
		if err != nil {
			die("%v", err)
		}
		b, _ := io.ReadAll(r.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == a[1] {
				fmt.Println(f[1])
				return
			}
		}
		die("metric %s not found", a[1])
	case "operator":
		body, _ := json.Marshal(map[string]string{"email": a[1], "password": a[2]})
		r, err := hc.Post(a[0]+"/v1/operator/auth/login", "application/json", bytes.NewReader(body))
		if err != nil {
			die("%v", err)
		}
		var tok struct{ Token string }
		json.NewDecoder(r.Body).Decode(&tok)
		req, _ := http.NewRequest("GET", a[0]+"/v1/operator/sessions?limit=100", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		r, err = hc.Do(req)
		if err != nil || r.StatusCode != 200 {
			die("operator sessions: %v %v", err, r.Status)
		}
		var out struct {
			Sessions []struct {
				State          string
				Hold, Captured struct{ Minor int64 }
			}
		}
		json.NewDecoder(r.Body).Decode(&out)
		var held, captured int64
		for _, s := range out.Sessions {
			held += s.Hold.Minor
			captured += s.Captured.Minor
		}
		fmt.Printf("sessions=%d held=%d captured=%d released=%d\n", len(out.Sessions), held, captured, held-captured)
	case "console":
		jar, _ := cookiejar.New(nil)
		cc := &http.Client{Timeout: 10 * time.Second, Jar: jar}
		r, err := cc.PostForm(a[0]+"/console/login", url.Values{"email": {a[1]}, "password": {a[2]}, "next": {"/console/users"}})
		if err != nil {
			die("console log-in: %v", err)
		}
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != 200 || r.Request.URL.Path != "/console/users" || !strings.Contains(string(b), a[1]) {
			die("console log-in: %s at %s", r.Status, r.Request.URL.Path)
		}
		fmt.Println("console log-in ok: users page lists", a[1])
	default:
		die("unknown command %s", os.Args[1])
	}
}
EOF
(cd "$D/democtl" && GOFLAGS= run_bounded 120 go build -o "$BIN/democtl" .) || fail "build democtl"
echo "built: $(ls "$BIN" | tr '\n' ' ')"

# ---------------------------------------------------------------- hwsim
step "emulated boards (hwsim)"
cat >"$D/water.yaml" <<'EOF'
# Demo water dispenser: 20 L/min so a stop after 1.5 L comes quickly.
profile: pulse-io-4
comm_timeout: 3s
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 20, k_factor: 450}
EOF
cat >"$D/washers.yaml" <<'EOF'
# Demo laundromat: one coin pulse buys a 3-second cycle.
profile: generic-relay-8
machines:
  - {name: washer-1, kind: washer, coin: relay1, running: in1, credit: 1, cycle: 3s}
  - {name: washer-2, kind: washer, coin: relay2, running: in2, credit: 1, cycle: 3s}
  - {name: washer-3, kind: washer, coin: relay3, running: in3, credit: 1, cycle: 3s}
  - {name: washer-4, kind: washer, coin: relay4, running: in4, credit: 1, cycle: 3s}
EOF
cat >"$D/vending.yaml" <<'EOF'
# Demo vending machine: ten slots on relay1-10, drop sensor on in16, quick drops.
profile: generic-relay-16
machines:
  - name: snacks
    kind: vending
    drop: in16
    drop_after: 300ms
    drop_pulse: 300ms
    slots:
      - {name: A1, motor: relay1}
      - {name: A2, motor: relay2}
      - {name: A3, motor: relay3}
      - {name: A4, motor: relay4}
      - {name: A5, motor: relay5}
      - {name: B1, motor: relay6}
      - {name: B2, motor: relay7}
      - {name: B3, motor: relay8}
      - {name: B4, motor: relay9}
      - {name: B5, motor: relay10}
EOF
declare -A PTY SOCK
for sim in water washers vending; do
	"$BIN/hwsim" -sim "$D/$sim.yaml" -json -control "$D/$sim.sock" >"$D/hwsim-$sim.json" 2>"$D/hwsim-$sim.log" &
	PIDS+=($!)
	wait_for "$D/hwsim-$sim.json" '"board"' "hwsim $sim" $!
	PTY[$sim]=$(json_field "$D/hwsim-$sim.json" board)
	SOCK[$sim]=$(json_field "$D/hwsim-$sim.json" control)
	echo "hwsim $sim: board ${PTY[$sim]}, control ${SOCK[$sim]}"
done

# ---------------------------------------------------------------- provision
step "provision: operator and three devices (cloud operator add / device add)"
OP_EMAIL=operator@demo.example OP_PASS=demo-operator-pw
# Passwords never go on a command line (ps shows it): standard input here.
printf '%s\n' "$OP_PASS" | "$BIN/cloud" operator add -data "$D/cloud" -name demo -email "$OP_EMAIL" -password-stdin \
	2>>"$D/provision.log" || fail "operator add"
# The broker URL is set below, once cloud serve has its port.
"$BIN/cloud" device add -data "$D/cloud" -operator demo -out "$D/dev/water" -mqtt-url tcp://127.0.0.1:1 \
	-id demo-water -kind water -name "Water dispenser" 2>>"$D/provision.log" >/dev/null || fail "device add water"
"$BIN/cloud" device add -data "$D/cloud" -operator demo -out "$D/dev/laundry" -mqtt-url tcp://127.0.0.1:1 \
	-id demo-laundry -kind washer -machines 4 -name "Laundromat" 2>>"$D/provision.log" >/dev/null || fail "device add laundry"
"$BIN/cloud" device add -data "$D/cloud" -operator demo -out "$D/dev/vending" -mqtt-url tcp://127.0.0.1:1 \
	-id demo-vending -kind vending -name "Snack machine" \
	-slots "A1:Cola:150,A2:Lemonade:150,A3:Water:100,A4:Juice:180,A5:Iced tea:160,B1:Crisps:120,B2:Pretzels:120,B3:Chocolate:130,B4:Gum:80,B5:Cookies:140" \
	2>>"$D/provision.log" >/dev/null || fail "device add vending"
# The water tap also takes guests through its printed code (web checkout,
# off for every machine until the operator turns it on).
"$BIN/cloud" machine web-checkout -data "$D/cloud" demo-water tap1 on 2>>"$D/provision.log" >/dev/null || fail "machine web-checkout"

# Each board: its wiring (profile, the emulator's pty, the simulated air at
# a distance) and the controller's import of the bundle.
step "boards: wiring + controller import-bundle"
AIR=${DEMO_AIR:-239.255.$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1)):$((20000 + RANDOM % 30000))}
export BEACONVEND_BLE_AIR=$AIR
echo "simulated air $AIR"
declare -A PROFILE=([water]=pulse-io-4 [laundry]=generic-relay-8 [vending]=generic-relay-16)
declare -A SIM=([water]=water [laundry]=washers [vending]=vending)
declare -A RSSI=([water]=-48 [laundry]=-61 [vending]=-70)
for dev in water laundry vending; do
	cat >"$D/dev/$dev/wiring.yaml" <<EOF
profile: ${PROFILE[$dev]}
port: ${PTY[${SIM[$dev]}]}
journal: $D/dev/$dev/board/journal.db
beacon: {sim_addr: "$AIR", sim_rssi: ${RSSI[$dev]}}
EOF
	if [ $dev = vending ]; then # quick drop time-out for the jammed-slot purchase
		cat >>"$D/dev/$dev/wiring.yaml" <<'EOF'
machines:
  vm1:
    drop: in16
    drop_timeout: 2s
    slots: {A1: relay1, A2: relay2, A3: relay3, A4: relay4, A5: relay5, B1: relay6, B2: relay7, B3: relay8, B4: relay9, B5: relay10}
EOF
	fi
	"$BIN/controller" import-bundle -bundle "$D/dev/$dev/bundle.json" -wiring "$D/dev/$dev/wiring.yaml" -out "$D/dev/$dev/board" \
		-beacon sim >/dev/null 2>>"$D/provision.log" || fail "import-bundle $dev"
done

# ---------------------------------------------------------------- cloud
step "cloud serve -config cloud/server/testdata/cloud.dev.yaml (development: sandbox card, embedded broker, SQLite)"
"$BIN/cloud" serve -config cloud/server/testdata/cloud.dev.yaml -data "$D/cloud" -http "${DEMO_HTTP:-127.0.0.1:0}" -mqtt-listen "${DEMO_MQTT:-127.0.0.1:0}" -json \
	>"$D/cloud.json" 2>"$D/cloud.log" &
CLOUD_PID=$!
PIDS+=($CLOUD_PID)
wait_for "$D/cloud.json" '"http"' "cloud serve" $CLOUD_PID
API=$(json_field "$D/cloud.json" http)
MQTT=$(json_field "$D/cloud.json" mqtt)
ADMIN=$(json_field "$D/cloud.json" admin)
echo "phone API $API, broker $MQTT, admin (metrics) $ADMIN"
echo "operator console $API/console/  (log in as $OP_EMAIL / $OP_PASS)"
"$BIN/cloud" stickers -data "$D/cloud" -device demo-water -public-url "$API" -o "$D/stickers.pdf" 2>>"$D/provision.log" || fail "cloud stickers"

# ---------------------------------------------------------------- controllers
step "controllers"
for dev in water laundry vending; do
	cfg=$D/dev/$dev/board/controller.yaml
	sed -i -e "s#^  broker: .*#  broker: $MQTT#" "$cfg"
	"$BIN/controller" -config "$cfg" 2>"$D/controller-$dev.log" &
	PIDS+=($!)
	wait_for "$D/controller-$dev.log" "controller started" "controller $dev" $!
	echo "controller demo-$dev: board $(sed -n 's/^  port: //p' "$cfg"), beacon RSSI ${RSSI[$dev]} dBm"
done

# ---------------------------------------------------------------- phone
PHONE_EMAIL=alice@demo.example PHONE_PASS=alice-demo-password
phone() {
	run_bounded "$STEP_TIMEOUT" "$BIN/phone" -api "$API" -email "$PHONE_EMAIL" -password "$PHONE_PASS" \
		-token-file "$D/phone-token.json" -air "$AIR" -scan 1500ms -timeout "${STEP_TIMEOUT}s" "$@" </dev/null
}
step "phone: sign up, top up 20.00 from the sandbox card"
phone -signup -topup 20.00 -wallet | tee "$D/wallet-before.txt" || fail "phone sign-up"

step "phone: machines in range (waiting until all three are online)"
ok=
for _ in $(seq "$STEP_TIMEOUT"); do
	if phone -list >"$D/list.txt" 2>&1 && [ "$(grep -c ' idle ' "$D/list.txt")" -ge 6 ]; then ok=1; break; fi
	sleep 1
done
cat "$D/list.txt"
[ -n "$ok" ] || fail "the three machines did not come online within ${STEP_TIMEOUT}s"

buy() { # name, phone args...
	local name=$1; shift
	step "phone: $name"
	phone -json-receipt "$@" >"$D/receipt-$name.json" || fail "purchase $name (exit $?)"
	[ -s "$D/receipt-$name.json" ] || fail "purchase $name: no receipt"
}
buy water -device demo-water -cap-amount 2.00 -stop-after-units 1500
buy laundry -device demo-laundry -machine washer2
buy vend -device demo-vending -slot A1
"$BIN/democtl" ctl "${SOCK[vending]}" '{"cmd":"jam","machine":"snacks","slot":"B5","jammed":true}' >/dev/null || fail "jam slot B5"
echo
echo "(slot B5 jammed through the hwsim control socket)"
buy jammed-vend -device demo-vending -slot B5

# ---------------------------------------------------------------- totals
step "ledger"
phone -wallet >"$D/wallet-after.txt" || fail "wallet"
wb=$(sed -n 's/^wallet: \([0-9.]*\) .*/\1/p' "$D/wallet-before.txt" | tr -d .)
wa=$(sed -n 's/^wallet: \([0-9.]*\) .*/\1/p' "$D/wallet-after.txt" | tr -d .)
held=0 captured=0 released=0
for r in water laundry vend jammed-vend; do
	h=$(minor held <"$D/receipt-$r.json") c=$(minor captured <"$D/receipt-$r.json") l=$(minor released <"$D/receipt-$r.json")
	held=$((held + h)) captured=$((captured + c)) released=$((released + l))
	printf '  %-12s held %6s  captured %6s  released %6s\n' "$r" "$(money "$h")" "$(money "$c")" "$(money "$l")"
done
jam_c=$(minor captured <"$D/receipt-jammed-vend.json") jam_h=$(minor held <"$D/receipt-jammed-vend.json")
opsum=$("$BIN/democtl" operator "$API" "$OP_EMAIL" "$OP_PASS") || fail "operator API"
sleep 2 # the gauge is computed every upkeep.gauge_interval (1 s in the development config), not per scrape
imbalance=$("$BIN/democtl" metric "$ADMIN/metrics" beaconvend_ledger_imbalance_minor) || fail "metrics"
echo "  wallet before  $(money $((10#$wb))) EUR"
echo "  wallet after   $(money $((10#$wa))) EUR"
echo "  held           $(money $held) EUR"
echo "  captured       $(money $captured) EUR"
echo "  released       $(money $released) EUR"
echo "  operator view  $opsum"
echo "  ledger imbalance $imbalance"
[ $((10#$wb - 10#$wa)) -eq "$captured" ] || fail "wallet went down by $(money $((10#$wb - 10#$wa))), captured $(money $captured)"
[ $((held - captured)) -eq "$released" ] || fail "held - captured != released"
[ "$jam_c" -eq 0 ] && [ "$jam_h" -gt 0 ] || fail "the jammed vend was not refunded in full"
[ "$opsum" = "sessions=4 held=$held captured=$captured released=$released" ] || fail "operator API disagrees with the receipts"
[ "$imbalance" = 0 ] || fail "ledger imbalance $imbalance"
echo "  balanced: wallet before - after = captured; held = captured + released; imbalance 0"

step "operator console"
"$BIN/democtl" console "$API" "$OP_EMAIL" "$OP_PASS" || fail "operator console log-in"
echo "  open $API/console/ in a browser; log in as $OP_EMAIL / $OP_PASS (the operator's owner)"

if [ "${DEMO_EXIT:-}" = 1 ]; then
	echo
	echo "demo: OK"
	exit 0
fi
step "running"
cat <<EOF
phone API     $API   (try: $BIN/phone -api $API -air $AIR -email $PHONE_EMAIL -password $PHONE_PASS)
operator console  $API/console/  (log in as $OP_EMAIL / $OP_PASS)
operator API  $API/v1/operator/  (log in as $OP_EMAIL / $OP_PASS)
web checkout  $API/m/demo-water/tap1   (a guest's page at the water tap; its sticker: $D/stickers.pdf)
metrics       $ADMIN/metrics   (admin listener; not on the phone API)
broker        $MQTT
Ctrl-C stops everything and removes $D
EOF
while kill -0 "$CLOUD_PID" 2>/dev/null; do sleep 1; done
fail "cloud exited"
