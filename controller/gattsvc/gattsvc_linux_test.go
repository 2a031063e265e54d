package gattsvc_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/gattsvc"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

func code(err error) byte { return gattapi.ATTCode(err) }

// A message written in chunks of Write Requests at the default MTU, and in
// one chunk by a long write (Prepare/Execute Write), reaches Relay.Grant
// whole; every chunk is answered, the last with the verdict.
func TestGrantChunks(t *testing.T) {
	r := &fakeRelay{}
	ctl, s := serve(t, r, nil, nil)
	const h = 0x40
	ctl.Connect(h, hcitest.RolePeripheral)
	gh := s.Grant.ValueHandle
	msg := bytes.Repeat([]byte("relay grant "), 30) // 360 bytes
	chunks, err := gattapi.Chunk(msg, 20, gattapi.MaxRelayGrant)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range chunks {
		if got := roundTrip(t, ctl, h, writeReq(gh, c)); !bytes.Equal(got, writeRsp) {
			t.Fatalf("chunk %d of %d answered % x", i, len(chunks), got)
		}
	}
	// The verdict of the relay comes back on the last chunk.
	r.set(func(f *fakeRelay) { f.grantErr = vend.Errorf(signed.ErrReplayed, "x") })
	for i, c := range chunks {
		want := writeRsp
		if i == len(chunks)-1 {
			want = errRsp(0x12, gh, 0x8D)
		}
		if got := roundTrip(t, ctl, h, writeReq(gh, c)); !bytes.Equal(got, want) {
			t.Fatalf("chunk %d (second message) answered % x, want % x", i, got, want)
		}
	}
	// A long write: one 300-byte chunk in Prepare Write parts.
	r.set(func(f *fakeRelay) { f.grantErr = nil })
	long, _ := gattapi.Chunk(msg[:296], 300, gattapi.MaxRelayGrant)
	for off := 0; off < len(long[0]); off += 18 {
		part := long[0][off:min(off+18, len(long[0]))]
		req := cat([]byte{0x16}, le16(gh), le16(uint16(off)), part)
		if got := roundTrip(t, ctl, h, req); got[0] != 0x17 {
			t.Fatalf("prepare write at %d: % x", off, got)
		}
	}
	if got := roundTrip(t, ctl, h, []byte{0x18, 0x01}); !bytes.Equal(got, []byte{0x19}) {
		t.Fatalf("execute write: % x", got)
	}
	grants, _ := r.got()
	if len(grants) != 3 || !bytes.Equal(grants[0], msg) || !bytes.Equal(grants[1], msg) || !bytes.Equal(grants[2], msg[:296]) {
		t.Fatalf("Relay.Grant got %d messages", len(grants))
	}
}

// Chunks out of step, empty, short or too long are refused with their
// ATT code; index 0 starts over; nothing partial reaches the relay.
func TestGrantChunkErrors(t *testing.T) {
	r := &fakeRelay{}
	ctl, s := serve(t, r, nil, nil)
	const h = 0x40
	ctl.Connect(h, hcitest.RolePeripheral)
	gh := s.Grant.ValueHandle
	chunk := func(i, n uint16, d string) []byte { return cat(le16be(i), le16be(n), []byte(d)) }
	for _, c := range []struct {
		name  string
		value []byte
		want  []byte
	}{
		{"empty", nil, errRsp(0x12, gh, code(gattapi.ErrEmpty))},
		{"header only", chunk(0, 2, ""), errRsp(0x12, gh, code(gattapi.ErrTruncated))},
		{"3 bytes", []byte{0, 0, 1}, errRsp(0x12, gh, code(gattapi.ErrTruncated))},
		{"count 0", chunk(0, 0, "x"), errRsp(0x12, gh, code(gattapi.ErrChunk))},
		{"index past count", chunk(3, 2, "x"), errRsp(0x12, gh, code(gattapi.ErrChunk))},
		{"too many chunks", chunk(0, gattapi.MaxChunks+1, "x"), errRsp(0x12, gh, code(gattapi.ErrChunk))},
		{"first of 3", chunk(0, 3, "a"), writeRsp},
		{"skips one", chunk(2, 3, "c"), errRsp(0x12, gh, code(gattapi.ErrChunk))},
		{"second without a first (dropped)", chunk(1, 3, "b"), errRsp(0x12, gh, code(gattapi.ErrChunk))},
		{"first again", chunk(0, 3, "a"), writeRsp},
		{"count changed", chunk(1, 4, "b"), errRsp(0x12, gh, code(gattapi.ErrChunk))},
		{"restart", chunk(0, 2, "a"), writeRsp},
		{"restart mid-message", chunk(0, 2, "A"), writeRsp},
		{"last", chunk(1, 2, "B"), writeRsp},
	} {
		if got := roundTrip(t, ctl, h, writeReq(gh, c.value)); !bytes.Equal(got, c.want) {
			t.Errorf("%s: answered % x, want % x", c.name, got, c.want)
		}
	}
	// A message over MaxRelayGrant: refused at the chunk that passes it.
	big := make([]byte, gattapi.MaxChunkData)
	n := uint16(gattapi.MaxRelayGrant/gattapi.MaxChunkData + 1)
	for i := uint16(0); i < n; i++ {
		v := cat(le16be(i), le16be(n), big)
		ctl.SendATT(h, cat([]byte{0x16}, le16(gh), le16(0), v[:18]))
		ctl.ReadATT(h, wait)
		for off := 18; off < len(v); off += 18 {
			ctl.SendATT(h, cat([]byte{0x16}, le16(gh), le16(uint16(off)), v[off:min(off+18, len(v))]))
			ctl.ReadATT(h, wait)
		}
		got := roundTrip(t, ctl, h, []byte{0x18, 0x01})
		want := []byte{0x19}
		if i == n-1 {
			want = errRsp(0x18, gh, code(gattapi.ErrTooLong))
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("chunk %d of an oversized message: % x, want % x", i, got, want)
		}
	}
	grants, _ := r.got()
	if len(grants) != 1 || string(grants[0]) != "AB" {
		t.Fatalf("Relay.Grant got %q, want only \"AB\"", grants)
	}
}

func le16be(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// A disconnect in the middle of a message drops it: the next central
// cannot continue it, and must start over.
func TestGrantDisconnectMidMessage(t *testing.T) {
	r := &fakeRelay{}
	ctl, s := serve(t, r, nil, nil)
	gh := s.Grant.ValueHandle
	ctl.Connect(0x40, hcitest.RolePeripheral)
	if got := roundTrip(t, ctl, 0x40, writeReq(gh, cat(le16be(0), le16be(2), []byte("a")))); !bytes.Equal(got, writeRsp) {
		t.Fatalf("first chunk: % x", got)
	}
	ctl.Disconnect(0x40)
	ctl.Connect(0x41, hcitest.RolePeripheral)
	if got := roundTrip(t, ctl, 0x41, writeReq(gh, cat(le16be(1), le16be(2), []byte("b")))); !bytes.Equal(got, errRsp(0x12, gh, code(gattapi.ErrChunk))) {
		t.Fatalf("second chunk after a disconnect: % x, want gatt.chunk", got)
	}
	if grants, _ := r.got(); len(grants) != 0 {
		t.Fatalf("Relay.Grant got %q", grants)
	}
	for i, c := range [][]byte{cat(le16be(0), le16be(2), []byte("a")), cat(le16be(1), le16be(2), []byte("b"))} {
		if got := roundTrip(t, ctl, 0x41, writeReq(gh, c)); !bytes.Equal(got, writeRsp) {
			t.Fatalf("chunk %d after starting over: % x", i, got)
		}
	}
	if grants, _ := r.got(); len(grants) != 1 || string(grants[0]) != "ab" {
		t.Fatalf("Relay.Grant got %q", grants)
	}
}

// Every decoding error of an Ack value, and the relay's refusal, is
// answered with its ATT code; a good one reaches the relay.
func TestAckWrites(t *testing.T) {
	r := &fakeRelay{}
	ctl, s := serve(t, r, nil, nil)
	const h = 0x40
	ctl.Connect(h, hcitest.RolePeripheral)
	ah := s.Ack.ValueHandle
	sess := vend.NewSessionID()
	phone := cat([]byte{gattapi.AckPhone}, sess[:], make([]byte, 32))
	for _, c := range []struct {
		name  string
		value []byte
		want  []byte
	}{
		{"empty", nil, errRsp(0x12, ah, code(gattapi.ErrEmpty))},
		{"phone ack cut", phone[:20], errRsp(0x12, ah, code(gattapi.ErrTruncated))},
		{"phone ack with a trailing byte", cat(phone, []byte{0}), errRsp(0x12, ah, code(gattapi.ErrTrailing))},
		{"phone ack, zero session", cat([]byte{1}, make([]byte, 48)), errRsp(0x12, ah, code(gattapi.ErrField))},
		{"cloud ack without a body", []byte{2}, errRsp(0x12, ah, code(gattapi.ErrTruncated))},
		{"unknown kind", []byte{3, 1, 2}, errRsp(0x12, ah, code(gattapi.ErrField))},
		{"kind 0", []byte{0}, errRsp(0x12, ah, code(gattapi.ErrField))},
		{"good phone ack", phone, writeRsp},
	} {
		if got := roundTrip(t, ctl, h, writeReq(ah, c.value)); !bytes.Equal(got, c.want) {
			t.Errorf("%s: answered % x, want % x", c.name, got, c.want)
		}
	}
	r.set(func(f *fakeRelay) { f.ackErr = vend.Errorf(gattapi.ErrAckMismatch, "x") })
	if got := roundTrip(t, ctl, h, writeReq(ah, phone)); !bytes.Equal(got, errRsp(0x12, ah, 0x90)) {
		t.Errorf("refused ack: % x, want relay.ack_mismatch 0x90", got)
	}
	r.set(func(f *fakeRelay) { f.ackErr = vend.Errorf(signed.ErrSignature, "x") })
	if got := roundTrip(t, ctl, h, writeReq(ah, []byte{2, 1, 2, 3})); !bytes.Equal(got, errRsp(0x12, ah, 0x88)) {
		t.Errorf("forged cloud ack: % x, want sig.invalid 0x88", got)
	}
	if _, acks := r.got(); len(acks) != 3 || acks[0].Session != sess {
		t.Errorf("Relay.Ack got %+v", acks)
	}
}

// A receipt longer than ATT_MTU − 1 reads whole with Read Blob, from a
// snapshot taken at offset 0 even if the receipt changes meanwhile.
func TestReceiptLongRead(t *testing.T) {
	usage := bytes.Repeat([]byte{0xab, 0xcd, 0xef}, 100)
	r := &fakeRelay{receipt: gattapi.Receipt{Status: gattapi.ReceiptReady, Usage: usage}}
	ctl, s := serve(t, r, nil, nil)
	const h = 0x40
	ctl.Connect(h, hcitest.RolePeripheral)
	rh := s.Receipt.ValueHandle
	want, _ := r.receipt.MarshalBinary()
	if got := longRead(t, ctl, h, rh, 23); !bytes.Equal(got, want) {
		t.Fatalf("long read of the receipt: %d bytes % x…, want %d bytes", len(got), got[:min(8, len(got))], len(want))
	}
	// Changed after the first part: the read goes on from the snapshot.
	first := roundTrip(t, ctl, h, cat([]byte{0x0a}, le16(rh)))
	r.set(func(f *fakeRelay) { f.receipt.Status = gattapi.ReceiptAcked })
	blob := roundTrip(t, ctl, h, cat([]byte{0x0c}, le16(rh), le16(22)))
	if !bytes.Equal(first[1:], want[:22]) || !bytes.Equal(blob[1:], want[22:44]) {
		t.Errorf("read then blob after a change: % x / % x", first, blob)
	}
	if got := roundTrip(t, ctl, h, cat([]byte{0x0c}, le16(rh), le16(uint16(len(want)+1)))); !bytes.Equal(got, errRsp(0x0c, rh, 0x07)) {
		t.Errorf("blob past the end: % x, want Invalid Offset", got)
	}
	// A new read starts a new snapshot.
	acked, _ := gattapi.Receipt{Status: gattapi.ReceiptAcked, Usage: usage}.MarshalBinary()
	if got := longRead(t, ctl, h, rh, 23); !bytes.Equal(got, acked) {
		t.Errorf("second long read: % x…", got[:4])
	}
	// No receipt yet: 4 bytes.
	r.set(func(f *fakeRelay) { f.receipt = gattapi.Receipt{} })
	if got := roundTrip(t, ctl, h, cat([]byte{0x0a}, le16(rh))); !bytes.Equal(got, []byte{0x0b, 1, 0, 0, 0}) {
		t.Errorf("empty receipt: % x", got)
	}
	// Receipt is not writable; Progress, Receipt are not writable either.
	if got := roundTrip(t, ctl, h, writeReq(rh, []byte{1})); !bytes.Equal(got, errRsp(0x12, rh, 0x03)) {
		t.Errorf("write to Receipt: % x", got)
	}
	if s.ClaimInfo != nil {
		t.Error("ClaimInfo served without Opts.ClaimInfo")
	}
}

// Progress reads as 19 bytes and is notified at once on subscription, at
// every state change, and while running at most once a second.
func TestProgressNotify(t *testing.T) {
	r := &fakeRelay{}
	ctl, s := serve(t, r, &gattsvc.Opts{Poll: 20 * time.Millisecond}, nil)
	const h = 0x40
	ctl.Connect(h, hcitest.RolePeripheral)
	ph := s.Progress.ValueHandle
	idle, _ := gattapi.Progress{}.MarshalBinary()
	if got := roundTrip(t, ctl, h, cat([]byte{0x0a}, le16(ph))); !bytes.Equal(got, cat([]byte{0x0b}, idle)) {
		t.Fatalf("read: % x", got)
	}
	if got := roundTrip(t, ctl, h, writeReq(s.Progress.CCCD.Handle, le16(1))); !bytes.Equal(got, writeRsp) {
		t.Fatalf("subscribe: % x", got)
	}
	next := func(what string) gattapi.Progress {
		t.Helper()
		b, err := ctl.ReadATT(h, wait)
		if err != nil {
			t.Fatalf("%s: no notification: %v", what, err)
		}
		if b[0] != 0x1b || binary.LittleEndian.Uint16(b[1:]) != ph || len(b) != 3+gattapi.ProgressLen {
			t.Fatalf("%s: % x is not a Progress notification", what, b)
		}
		var p gattapi.Progress
		if err := p.UnmarshalBinary(b[3:]); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return p
	}
	if p := next("on subscription"); p.State != gattapi.StateIdle {
		t.Fatalf("first notification %+v", p)
	}
	r.set(func(f *fakeRelay) { f.progress = gattapi.Progress{State: gattapi.StateAccepted} })
	if p := next("accepted"); p.State != gattapi.StateAccepted {
		t.Fatalf("%+v", p)
	}
	r.set(func(f *fakeRelay) { f.progress = gattapi.Progress{State: gattapi.StateRunning} })
	start := time.Now()
	if p := next("running"); p.State != gattapi.StateRunning {
		t.Fatalf("%+v", p)
	}
	// Units change every poll: notified at most once a second.
	stop := make(chan struct{})
	go func() {
		for u := uint64(1); ; u++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			r.set(func(f *fakeRelay) {
				f.progress = gattapi.Progress{State: gattapi.StateRunning, Units: u, Amount: int64(u)}
			})
		}
	}()
	n := 0
	for time.Since(start) < 2500*time.Millisecond {
		b, err := ctl.ReadATT(h, 200*time.Millisecond)
		if err == nil && b[0] == 0x1b {
			n++
		}
	}
	close(stop)
	if n < 1 || n > 3 {
		t.Errorf("%d notifications of a running session in 2.5 s, want 1-3 (at most one a second)", n)
	}
	r.set(func(f *fakeRelay) { f.progress = gattapi.Progress{State: gattapi.StateRefused, Reason: 0x8d} })
	for {
		if p := next("refused"); p.State == gattapi.StateRefused {
			if p.Reason != 0x8d {
				t.Errorf("refused reason %#x", p.Reason)
			}
			break
		}
	}
}

// ClaimInfo is served (long read) only when the board has one.
func TestClaimInfo(t *testing.T) {
	v := bytes.Repeat([]byte{7}, 75)
	ctl, s := serve(t, &fakeRelay{}, &gattsvc.Opts{ClaimInfo: func() []byte { return v }}, nil)
	ctl.Connect(0x40, hcitest.RolePeripheral)
	if got := longRead(t, ctl, 0x40, s.ClaimInfo.ValueHandle, 23); !bytes.Equal(got, v) {
		t.Errorf("claim info % x", got)
	}
}
