package linux_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	ble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// Fuzz input records, each [kind][length][data…]; a record cut short is
// sent as far as it goes.
const (
	recATT   = 0 // data is an ATT PDU from the central, fragmented as a controller does
	recACL   = 1 // data is one raw ACL packet payload; kind bits 2-3 are the boundary flag
	recWait  = 2 // wait up to 20 ms for one answer, as a central keeping to request/response (at most maxWaits per input)
	recNotif = 3 // the server code sends a notification of data's length on every subscribed notifier
)

// fuzzHandle is the connection the input plays on; probeHandle the one
// that checks the device afterwards.
const (
	fuzzHandle  = 0x40
	probeHandle = 0x41
	// probeWait bounds the liveness probe: a device that does not answer
	// within it hangs, and that fails the input.
	probeWait = 2 * time.Second
	// inputWait bounds a whole input; past it the worker panics, which
	// the fuzzer reports with the input (a t.Fatal cannot come from a
	// watchdog goroutine).
	inputWait = 20 * time.Second
	// maxWaits caps the recWait records obeyed per input, so that an
	// input of many waits is not taken for a hang.
	maxWaits = 25
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzATTServer from fuzzSeeds")

// FuzzATTServer feeds arbitrary ATT PDUs and raw ACL fragments from a
// central to the fork's whole peripheral stack (scripted controller, HCI,
// L2CAP, ATT server, GATT database with static, read, write and notify
// characteristics and a value longer than any MTU), disconnects the
// central, possibly in the middle of a notification, and then checks that
// the device still serves a new central within probeWait: a panic or a
// hang fails the input.
func FuzzATTServer(f *testing.F) {
	// The seeds are testdata/fuzz/FuzzATTServer (TestSeedCorpus keeps
	// them equal to fuzzSeeds).
	f.Fuzz(runFuzzInput)
}

// runFuzzInput is FuzzATTServer's body.
func runFuzzInput(t *testing.T, in []byte) {
	{
		watchdog := time.AfterFunc(inputWait, func() {
			panic(fmt.Sprintf("FuzzATTServer: input still running after %v (hang): %q", inputWait, in))
		})
		defer watchdog.Stop()
		_, ctl, tt := newDevice(t, &hcitest.Opts{LEBufCnt: 2})
		ctl.Connect(fuzzHandle, hcitest.RolePeripheral)
		waits := 0
		for len(in) >= 2 {
			kind, n := in[0], int(in[1])
			in = in[2:]
			data := in[:min(n, len(in))]
			in = in[len(data):]
			switch kind & 3 {
			case recATT:
				ctl.SendATT(fuzzHandle, data)
			case recACL:
				ctl.SendACL(fuzzHandle, (kind>>2)&3, data)
			case recWait:
				if waits++; waits <= maxWaits {
					ctl.ReadATT(fuzzHandle, 20*time.Millisecond)
				}
			case recNotif:
				notifyAll(tt, len(data))
			}
		}
		notifyAll(tt, 200)
		ctl.Disconnect(fuzzHandle)
		ctl.Connect(probeHandle, hcitest.RolePeripheral)
		ctl.SendATT(probeHandle, []byte{0x0a, 0x03, 0x00}) // read the device name
		got, err := ctl.ReadATT(probeHandle, probeWait)
		if err != nil {
			t.Fatalf("the device hangs: a new central got no answer within %v: %v", probeWait, err)
		}
		if want := []byte("\x0btest"); !bytes.Equal(got, want) {
			t.Fatalf("the next central read the device name as % x, want % x", got, want)
		}
		ctl.Disconnect(probeHandle)
	}
}

// notifyAll sends an n-byte notification, without waiting for it, on
// every notifier the table's notify handler has handed out.
func notifyAll(tt *testTable, n int) {
	for {
		select {
		case nt := <-tt.notifyC:
			go nt.Write(bytes.Repeat([]byte{0x5a}, n))
		default:
			return
		}
	}
}

// fuzzSeeds are the hostile inputs of the issue and a few well-formed
// conversations (the same as testdata/fuzz/FuzzATTServer).
func fuzzSeeds() [][]byte {
	att := func(pdu ...byte) []byte { return append([]byte{recATT, byte(len(pdu))}, pdu...) }
	acl := func(pbf byte, d ...byte) []byte { return append([]byte{recACL | pbf<<2, byte(len(d))}, d...) }
	wait := []byte{recWait, 0}
	// Handles of the test table: see TestFuzzTableHandles.
	const static, write, cccd = 0x12, 0x16, 0x19
	return [][]byte{
		att(0x18, 0x01),             // Execute Write on an empty queue
		att(0x12, cccd, 0x00, 0x01), // 1-byte write to a CCCD
		att(0x0a, static, 0x00),     // read of a 300-byte static value at MTU 23
		cat(att(0x02, 0x03, 0x02), wait, att(0x0a, static, 0x00), wait, att(0x0c, static, 0x00, 0xff, 0x00)),                    // MTU 515, read, read blob
		cat(att(0x16, write, 0x00, 0x00, 0x00, 'A', 'A'), wait, att(0x16, write, 0x00, 0x05, 0x00, 'B'), wait, att(0x18, 0x01)), // gap
		cat(att(0x12, cccd, 0x00, 0x01, 0x00), wait, []byte{recNotif, 30}, att(0x02, 0xf7, 0x00)),                               // subscribe, too long a notification
		cat(att(0x02, 0xf7, 0x00), wait, att(0x12, cccd, 0x00, 0x01, 0x00), wait, []byte{recNotif, 200}),                        // disconnect mid-notification
		acl(2, 0x01),                   // ACL packet shorter than an L2CAP header
		acl(2, 0x10, 0x00, 0x04, 0x00), // start of a 16-byte PDU that never continues
		acl(1, 0x01, 0x02, 0x03),       // a continuation with no start
		cat(acl(2, 0xff, 0xff, 0x04, 0x00, 0x0a), acl(1, 0x01)), // announces 65535 bytes
		att(),                        // an empty ATT PDU
		att(0x04, 0x01, 0x00),        // a truncated Find Information request
		att(0x16, write, 0x00, 0x00), // a Prepare Write without an offset
		acl(2, 0x06, 0x00, 0x05, 0x00, 0x12, 0x01, 0x08, 0x00, 0x00, 0x00),       // a signaling command longer than its packet
		acl(2, 0x07, 0x00, 0x06, 0x00, 0x01, 0x03, 0x00, 0x01, 0x10, 0x07, 0x07), // an SMP Pairing Request
		acl(2, 0x00, 0x00, 0x06, 0x00),                                           // an empty SMP PDU
	}
}

// The seeds above name the test table's handles; keep them honest.
func TestFuzzTableHandles(t *testing.T) {
	_, _, tt := newDevice(t, nil)
	if tt.static.ValueHandle != 0x12 || tt.wr.ValueHandle != 0x16 || tt.notif.CCCD.Handle != 0x19 {
		t.Fatalf("handles: static %#x, write %#x, cccd %#x; update fuzzSeeds", tt.static.ValueHandle, tt.wr.ValueHandle, tt.notif.CCCD.Handle)
	}
}

// TestSeedCorpus checks that the checked-in seed corpus holds fuzzSeeds;
// -update-seeds writes it.
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzATTServer")
	for i, s := range fuzzSeeds() {
		name := filepath.Join(dir, fmt.Sprintf("hostile-%02d", i))
		want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q (go test -run TestSeedCorpus -update-seeds)", name, got, err, want)
		}
	}
}

var _ ble.Notifier // the table's notifiers
