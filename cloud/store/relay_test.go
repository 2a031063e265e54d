package store_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"beaconvend/cloud/store"
)

// A relay ticket is stored once (a second call returns the first), and
// with outlast a pending session's deadline moves to its unreported bound.
func TestRelayTicketOnce(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 1000)
		ss, err := e.start(e.user.ID, "w1", "", 1000, "r1")
		must(t, err)
		got, err := e.s.SetRelayTicket(e.ctx, ss.ID, []byte("ticket-1"), true)
		must(t, err)
		if string(got) != "ticket-1" {
			t.Fatalf("first ticket %q", got)
		}
		got, err = e.s.SetRelayTicket(e.ctx, ss.ID, []byte("ticket-2"), true)
		must(t, err)
		if string(got) != "ticket-1" {
			t.Fatalf("second call stored %q, want the first ticket kept", got)
		}
		cur, err := e.s.GetSession(e.ctx, ss.ID)
		must(t, err)
		if !bytes.Equal(cur.RelayTicket, []byte("ticket-1")) || !cur.Deadline.Equal(cur.Unreported) || !cur.Deadline.After(ss.Deadline) {
			t.Fatalf("session after relay: ticket %q deadline %s (was %s) unreported %s", cur.RelayTicket, cur.Deadline, ss.Deadline, cur.Unreported)
		}
		ss2, err := e.start(e.user.ID, "wash1", "", 1, "r2")
		must(t, err)
		_, err = e.s.SetRelayTicket(e.ctx, ss2.ID, []byte("t"), false)
		must(t, err)
		if cur, _ := e.s.GetSession(e.ctx, ss2.ID); !cur.Deadline.Equal(ss2.Deadline) {
			t.Fatalf("without outlast the deadline moved: %s, was %s", cur.Deadline, ss2.Deadline)
		}
		_, err = e.s.SetRelayTicket(e.ctx, ss.ID, nil, true)
		wantCode(t, err, store.ErrInput.Code)
		_, err = e.s.SetRelayTicket(e.ctx, [16]byte{9}, []byte("t"), true)
		wantCode(t, err, store.ErrSessionNotFound.Code)
		e.checkLedger()
	})
}

func TestRelayAlwaysFlags(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		for _, m := range []string{"w1", "wash1"} {
			if on, err := e.s.RelayAlways(e.ctx, "dev-a", m); err != nil || on {
				t.Fatalf("default %s = %v, %v", m, on, err)
			}
		}
		must(t, e.s.SetRelayAlways(e.ctx, e.opA.ID, "dev-a", "w1", true))
		if on, _ := e.s.RelayAlways(e.ctx, "dev-a", "w1"); !on {
			t.Fatal("machine flag not set")
		}
		if on, _ := e.s.RelayAlways(e.ctx, "dev-a", "wash1"); on {
			t.Fatal("machine flag leaked to another machine")
		}
		must(t, e.s.SetRelayAlways(e.ctx, e.opA.ID, "dev-a", "", true))
		if on, _ := e.s.RelayAlways(e.ctx, "dev-a", "wash1"); !on {
			t.Fatal("device flag does not cover its machines")
		}
		wantCode(t, e.s.SetRelayAlways(e.ctx, "op_nobody", "dev-a", "", true), store.ErrDeviceNotFound.Code)
		wantCode(t, e.s.SetRelayAlways(e.ctx, e.opA.ID, "dev-a", "nope", true), store.ErrMachineNotFound.Code)
		_, err := e.s.RelayAlways(e.ctx, "dev-a", "nope")
		wantCode(t, err, store.ErrMachineNotFound.Code)
		_, err = e.s.RelayAlways(e.ctx, "dev-zz", "w1")
		wantCode(t, err, store.ErrDeviceNotFound.Code)
	})
}

// A claimed device is registered with its claim in one transaction; a
// key claimed before is refused and writes nothing.
func TestCreateClaimedDevice(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		key := strings.Repeat("ab", 32)
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		d := store.Device{ID: "claimed-1", OperatorID: e.opA.ID, Name: "c", K: 5, SignKey: pub, MQTTHash: "x", Machines: testMachines()[:1]}
		must(t, e.s.CreateClaimedDevice(e.ctx, d, store.Claim{SealKey: key, ClaimedBy: "opa_1", Sealed: []byte("sealed")}))
		c, err := e.s.GetClaim(e.ctx, key)
		must(t, err)
		if c.Device != "claimed-1" || c.Operator != e.opA.ID || string(c.Sealed) != "sealed" || c.ClaimedBy != "opa_1" || c.At.After(time.Now().Add(time.Hour)) {
			t.Fatalf("claim %+v", c)
		}
		d.ID = "claimed-2"
		wantCode(t, e.s.CreateClaimedDevice(e.ctx, d, store.Claim{SealKey: key, ClaimedBy: "opa_1", Sealed: []byte("x")}), store.ErrKeyClaimed.Code)
		if ok, _ := e.s.DeviceExists(e.ctx, "claimed-2"); ok {
			t.Fatal("a refused claim made a device")
		}
		wantCode(t, e.s.CreateClaimedDevice(e.ctx, d, store.Claim{SealKey: "short", ClaimedBy: "opa_1", Sealed: []byte("x")}), store.ErrInput.Code)
		_, err = e.s.GetClaim(e.ctx, strings.Repeat("cd", 32))
		wantCode(t, err, store.ErrClaimNotFound.Code)
	})
}
