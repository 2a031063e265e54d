package daemon_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/gattsvc"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

const attWait = 3 * time.Second

// serveRelay serves the daemon's relay service on the fork's whole
// peripheral stack (HCI, L2CAP, ATT server) over a scripted controller: a
// phone's central sends ATT PDUs through it.
func serveRelay(t *testing.T, relay gattsvc.Relay) (*hcitest.Controller, *gattsvc.Service) {
	t.Helper()
	svc := gattsvc.New(relay, &gattsvc.Opts{Poll: 50 * time.Millisecond})
	_, ctl := hcitest.NewDevice(t, "board", nil, attWait, svc.Service)
	return ctl, svc
}

func attRoundTrip(t *testing.T, ctl *hcitest.Controller, h uint16, req []byte) []byte {
	t.Helper()
	ctl.SendATT(h, req)
	for {
		b, err := ctl.ReadATT(h, attWait)
		if err != nil {
			t.Fatalf("no answer to % x: %v", req[:min(len(req), 8)], err)
		}
		if b[0] != 0x1b { // not a notification
			return b
		}
	}
}

func le16(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }

// attWrite writes v to handle a as a phone at ATT_MTU 23 does: a Write
// Request when it fits, a long write otherwise. It returns the answer.
func attWrite(t *testing.T, ctl *hcitest.Controller, h, a uint16, v []byte) []byte {
	t.Helper()
	if len(v) <= 20 {
		return attRoundTrip(t, ctl, h, append(append([]byte{0x12}, le16(a)...), v...))
	}
	for off := 0; off < len(v); off += 18 {
		req := append(append(append([]byte{0x16}, le16(a)...), le16(uint16(off))...), v[off:min(off+18, len(v))]...)
		if got := attRoundTrip(t, ctl, h, req); got[0] != 0x17 {
			t.Fatalf("prepare write at %d: % x", off, got)
		}
	}
	return attRoundTrip(t, ctl, h, []byte{0x18, 0x01})
}

// attRead reads a whole value with Read and Read Blob at ATT_MTU 23.
func attRead(t *testing.T, ctl *hcitest.Controller, h, a uint16) []byte {
	t.Helper()
	rsp := attRoundTrip(t, ctl, h, append([]byte{0x0a}, le16(a)...))
	if rsp[0] != 0x0b {
		t.Fatalf("read: % x", rsp)
	}
	v := append([]byte(nil), rsp[1:]...)
	for len(rsp) == 23 {
		rsp = attRoundTrip(t, ctl, h, append(append([]byte{0x0c}, le16(a)...), le16(uint16(len(v)))...))
		if rsp[0] != 0x0d {
			t.Fatalf("read blob: % x", rsp)
		}
		v = append(v, rsp[1:]...)
	}
	return v
}

// The relay end to end over ATT, as a phone does it at the default MTU:
// the grant in chunks, Progress notified, the phone gone in the middle of
// the session (which runs on to its cap), a new connection reading the
// receipt by Read Blob, and the cloud's ack written back.
func TestRelayOverGATT(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.cloud.NoAck = true
	r.startDaemon()
	ctl, svc := serveRelay(t, r.d.Relay())
	ctl.Connect(0x40, hcitest.RolePeripheral)
	if got := attWrite(t, ctl, 0x40, svc.Progress.CCCD.Handle, le16(1)); !bytes.Equal(got, []byte{0x13}) {
		t.Fatalf("subscribe: % x", got)
	}
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 600, time.Minute)
	msg := r.relayed(g, gb, "dev-1", newNonce(t))
	chunks, err := gattapi.Chunk(msg, 20, gattapi.MaxRelayGrant)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range chunks {
		if got := attWrite(t, ctl, 0x40, svc.Grant.ValueHandle, c); !bytes.Equal(got, []byte{0x13}) {
			t.Fatalf("chunk %d of %d answered % x", i, len(chunks), got)
		}
	}
	// Notified up to running; then the phone goes.
	for deadline := time.Now().Add(5 * time.Second); ; {
		b, err := ctl.ReadATT(0x40, time.Until(deadline))
		if err != nil {
			t.Fatalf("no running notification: %v", err)
		}
		var p gattapi.Progress
		if b[0] == 0x1b && p.UnmarshalBinary(b[3:]) == nil && p.State == gattapi.StateRunning {
			break
		}
	}
	ctl.Disconnect(0x40)
	eventually(t, "the session to end without the phone", func() bool { return r.d.Relay().Progress().State == gattapi.StateEnded })
	if p := r.d.Relay().Progress(); p.Units != 600 || p.Amount != 30 {
		t.Errorf("progress %+v, want the cap: 600 ml, 30", p)
	}
	if w := r.status().Machines[0].Water; w.Opens != 1 || w.ValveOpen || w.DeliveredML < 600 {
		t.Errorf("emulator %+v", w)
	}

	ctl.Connect(0x41, hcitest.RolePeripheral)
	var rc gattapi.Receipt
	eventually(t, "a receipt", func() bool {
		return rc.UnmarshalBinary(attRead(t, ctl, 0x41, svc.Receipt.ValueHandle)) == nil && rc.Status == gattapi.ReceiptReady
	})
	keys, _ := signed.NewKeys(r.devPub)
	if _, err := signed.OpenUsage(rc.Usage, keys); err != nil {
		t.Fatalf("receipt's report: %v", err)
	}
	if q, _ := r.outboxUsage(g.Session); !bytes.Equal(q, rc.Usage) {
		t.Fatal("receipt read over GATT differs from the outbox's report")
	}
	// The same grant again: its last chunk is answered grant.replayed.
	for i, c := range chunks {
		want := []byte{0x13}
		if i == len(chunks)-1 {
			want = []byte{0x01, 0x12, byte(svc.Grant.ValueHandle), byte(svc.Grant.ValueHandle >> 8), 0x8D}
		}
		if got := attWrite(t, ctl, 0x41, svc.Grant.ValueHandle, c); !bytes.Equal(got, want) {
			t.Fatalf("replayed chunk %d answered % x, want % x", i, got, want)
		}
	}
	ack, err := signed.SignUsageAck(r.cloud.Key, signed.UsageAck{Device: "dev-1", Session: g.Session, Report: signed.Digest(rc.Usage)})
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := signed.SignUsageAck(ed25519.NewKeyFromSeed(make([]byte, 32)), signed.UsageAck{Device: "dev-1", Session: g.Session, Report: signed.Digest(rc.Usage)})
	if got := attWrite(t, ctl, 0x41, svc.Ack.ValueHandle, append([]byte{gattapi.AckCloud}, forged...)); len(got) != 5 || got[4] != 0x87 {
		t.Errorf("ack signed by an unknown key answered % x, want sig.unknown_key 0x87", got)
	}
	if got := attWrite(t, ctl, 0x41, svc.Ack.ValueHandle, append([]byte{gattapi.AckCloud}, ack...)); !bytes.Equal(got, []byte{0x19}) {
		t.Fatalf("cloud ack answered % x", got)
	}
	if q, _ := r.outboxUsage(g.Session); q != nil {
		t.Error("the cloud's ack over GATT left the report in the outbox")
	}
	if err := rc.UnmarshalBinary(attRead(t, ctl, 0x41, svc.Receipt.ValueHandle)); err != nil || rc.Status != gattapi.ReceiptAcked {
		t.Errorf("receipt after the ack: %d, %v", rc.Status, err)
	}
}
