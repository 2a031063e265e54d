package gattsvc_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/gattsvc"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// checkingRelay is a Relay whose Grant and Ack run the real checks
// (gattapi.CheckRelay, gattapi.CheckAck) against test keys, so the fuzzer
// reaches the decoders behind the service, not only the service.
type checkingRelay struct {
	fakeRelay
	keys signed.Keys
}

func (c *checkingRelay) Grant(msg []byte) error {
	c.fakeRelay.Grant(msg)
	_, _, err := gattapi.CheckRelay(msg, gattapi.RelayCheck{
		Keys: c.keys, Device: "dev-1", Machines: []string{"m1"}, Now: time.Now(), Skew: 5 * time.Second,
		Seen:      func(vend.SessionID) (bool, error) { return false, nil },
		NonceSeen: func([signed.RelayNonceLen]byte) (bool, error) { return false, nil },
	})
	return err
}

func (c *checkingRelay) Ack(a gattapi.Ack) error {
	c.fakeRelay.Ack(a)
	_, err := gattapi.CheckAck(a, "dev-1", vend.SessionID{1}, []byte("report"), c.keys)
	return err
}

// fuzzKey is the test cloud key the seeds' grants are signed with (a
// test key: never used elsewhere).
var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte("gattsvc fuzz"), 3)[:32])

// Fuzz input records, each [kind][length][data…].
const (
	fzATT       = 0 // data is a raw ATT PDU from the central
	fzWrite     = 1 // Write Request to characteristic data[0]%4 (Grant, Progress, Receipt, Ack) with data[1:]
	fzRead      = 2 // Read Blob of characteristic data[0]%4 at offset data[1:3] (Read when 0)
	fzReconnect = 3 // the central goes; another connects
	fzSubscribe = 4 // subscribe to Progress
	fzKinds     = 5
)

// FuzzBoardGATT feeds ATT PDUs from a central to the board's relay
// service on the fork's whole peripheral stack (scripted controller, HCI,
// L2CAP, ATT server): raw PDUs, writes of arbitrary values to its
// characteristics (chunks reaching gattapi.CheckRelay, acks reaching
// gattapi.CheckAck), long reads at any offset, subscriptions and
// reconnections mid-message. After each input a new central must be
// served within 2 s; a panic or a hang (20 s watchdog) fails the input.
func FuzzBoardGATT(f *testing.F) {
	for _, s := range boardSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(runBoardInput)
}

func rec(kind byte, data ...[]byte) []byte {
	d := cat(data...)
	return cat([]byte{kind, byte(len(d))}, d)
}

// boardSeeds: a good chunked grant, hostile chunks, acks, long reads,
// a disconnect mid-message.
func boardSeeds(tb testing.TB) [][]byte {
	priv := fuzzKey
	now := time.Now()
	g := signed.Grant{Session: vend.NewSessionID(), Device: "dev-1", Machine: "m1", Unit: vend.UnitML, Price: vend.Price{Minor: 5, Per: 100},
		Currency: "EUR", CapUnits: 100, CapMoney: 5, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	gb, err := signed.SignGrant(priv, g)
	if err != nil {
		tb.Fatal(err)
	}
	tk, err := signed.SignRelayTicket(priv, signed.RelayTicket{Session: g.Session, Device: "dev-1", Nonce: [16]byte{9}, Grant: signed.Digest(gb), ExpiresAt: g.ExpiresAt})
	if err != nil {
		tb.Fatal(err)
	}
	msg, err := gattapi.RelayGrant{Grant: gb, Ticket: tk}.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	chunks, err := gattapi.Chunk(msg, 200, gattapi.MaxRelayGrant)
	if err != nil {
		tb.Fatal(err)
	}
	var good []byte
	for _, c := range chunks {
		good = append(good, rec(fzWrite, []byte{0}, c)...)
	}
	ack, _ := gattapi.Ack{Kind: gattapi.AckPhone, Session: vend.SessionID{1}}.MarshalBinary()
	return [][]byte{
		good,
		cat(rec(fzWrite, []byte{0}, chunks[0]), rec(fzReconnect), rec(fzWrite, []byte{0}, chunks[1])),
		cat(rec(fzWrite, []byte{0}), rec(fzWrite, []byte{0, 0, 0}), rec(fzWrite, []byte{0, 0, 5, 0, 2, 1})),
		cat(rec(fzWrite, []byte{3}, ack), rec(fzWrite, []byte{3, 2}), rec(fzWrite, []byte{3, 2, 'A', 1})),
		cat(rec(fzRead, []byte{2, 0, 0}), rec(fzRead, []byte{2, 22, 0}), rec(fzRead, []byte{2, 0xff, 0xff}), rec(fzRead, []byte{1, 0, 0})),
		cat(rec(fzSubscribe), rec(fzReconnect), rec(fzSubscribe), rec(fzATT, []byte{0x18, 0x01})),
		cat(rec(fzATT, []byte{0x16, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00}), rec(fzATT, []byte{0x18, 0x01})),
	}
}

func runBoardInput(t *testing.T, in []byte) {
	watchdog := time.AfterFunc(20*time.Second, func() {
		panic(fmt.Sprintf("FuzzBoardGATT: input still running after 20 s (hang): %q", in))
	})
	defer watchdog.Stop()
	keys, _ := signed.NewKeys(fuzzKey.Public().(ed25519.PublicKey))
	r := &checkingRelay{keys: keys}
	r.receipt = gattapi.Receipt{Status: gattapi.ReceiptReady, Usage: bytes.Repeat([]byte{1}, 300)}
	ctl, s := serve(t, r, &gattsvc.Opts{Poll: 10 * time.Millisecond}, &hcitest.Opts{LEBufCnt: 2})
	chars := []uint16{s.Grant.ValueHandle, s.Progress.ValueHandle, s.Receipt.ValueHandle, s.Ack.ValueHandle}
	h := uint16(0x40)
	ctl.Connect(h, hcitest.RolePeripheral)
	waitEnd := time.Now().Add(2 * time.Second)
	for len(in) >= 2 {
		kind, n := in[0], int(in[1])
		in = in[2:]
		data := in[:min(n, len(in))]
		in = in[len(data):]
		switch kind % fzKinds {
		case fzATT:
			ctl.SendATT(h, data)
		case fzWrite:
			if len(data) > 0 {
				ctl.SendATT(h, writeReq(chars[int(data[0])%4], data[1:]))
			}
		case fzRead:
			if len(data) >= 3 {
				off := uint16(data[1]) | uint16(data[2])<<8
				ch := chars[int(data[0])%4]
				if off == 0 {
					ctl.SendATT(h, cat([]byte{0x0a}, le16(ch)))
				} else {
					ctl.SendATT(h, cat([]byte{0x0c}, le16(ch), le16(off)))
				}
			}
		case fzReconnect:
			ctl.Disconnect(h)
			h = 0x40 + (h-0x40+1)%0x3f // below the probe's handle
			ctl.Connect(h, hcitest.RolePeripheral)
		case fzSubscribe:
			ctl.SendATT(h, writeReq(s.Progress.CCCD.Handle, le16(1)))
		}
		// As a central keeping to request/response, within a budget, so
		// that a long input of unanswered PDUs is not taken for a hang.
		if left := time.Until(waitEnd); left > 0 {
			ctl.ReadATT(h, min(20*time.Millisecond, left))
		} else {
			ctl.DrainATT(h)
		}
	}
	ctl.Disconnect(h)
	// A new central is served.
	const probe = 0x7f
	ctl.Connect(probe, hcitest.RolePeripheral)
	ctl.SendATT(probe, cat([]byte{0x0a}, le16(s.Progress.ValueHandle)))
	for deadline := time.Now().Add(2 * time.Second); ; {
		b, err := ctl.ReadATT(probe, time.Until(deadline))
		if err != nil {
			t.Fatalf("the board no longer serves a new central: %v", err)
		}
		if b[0] == 0x0b {
			break
		}
	}
}

// The good seed passes every check (so the fuzzer starts from a grant the
// board accepts), and each hostile seed is answered.
func TestBoardSeedsReachTheChecks(t *testing.T) {
	keys, _ := signed.NewKeys(fuzzKey.Public().(ed25519.PublicKey))
	r := &checkingRelay{keys: keys}
	ctl, s := serve(t, r, nil, nil)
	ctl.Connect(0x40, hcitest.RolePeripheral)
	in := boardSeeds(t)[0]
	for len(in) >= 2 {
		n := int(in[1])
		data := in[2 : 2+n]
		in = in[2+n:]
		if got := roundTrip(t, ctl, 0x40, writeReq(s.Grant.ValueHandle, data[1:])); !bytes.Equal(got, writeRsp) {
			t.Fatalf("good seed chunk answered % x", got)
		}
	}
	if grants, _ := r.got(); len(grants) != 1 {
		t.Fatalf("%d grants", len(grants))
	}
}
