package claim_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"testing"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/controller/claim"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// These tests serve the registration-mode service with the fork's real
// HCI, L2CAP and ATT server over its scripted controller (hcitest), as a
// phone would see it: ATT PDUs in, ATT PDUs out.

const gwait = 3 * time.Second

type central struct {
	t   *testing.T
	ctl *hcitest.Controller
	h   uint16
}

func serve(t *testing.T, b *claim.Board) (*hcitest.Controller, *claim.Service) {
	t.Helper()
	s := claim.NewService(b, nil)
	_, ctl := hcitest.NewDevice(t, "beaconvend", nil, gwait, s.Service)
	return ctl, s
}

func connect(t *testing.T, ctl *hcitest.Controller, h uint16) *central {
	t.Helper()
	ctl.Connect(h, hcitest.RolePeripheral)
	c := &central{t: t, ctl: ctl, h: h}
	if got := c.roundTrip([]byte{0x02, 0x05, 0x02}); !bytes.Equal(got, []byte{0x03, 0x03, 0x02}) { // MTU 517
		t.Fatalf("Exchange MTU answered % x", got)
	}
	return c
}

func (c *central) roundTrip(req []byte) []byte {
	c.t.Helper()
	c.ctl.SendATT(c.h, req)
	b, err := c.ctl.ReadATT(c.h, gwait)
	if err != nil {
		c.t.Fatalf("ATT % x: no answer: %v", req[:min(len(req), 8)], err)
	}
	return b
}

func le16(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }

// write sends a Write Request and returns 0 for a Write Response or the
// ATT error code.
func (c *central) write(handle uint16, v []byte) byte {
	c.t.Helper()
	got := c.roundTrip(append(append([]byte{0x12}, le16(handle)...), v...))
	switch {
	case bytes.Equal(got, []byte{0x13}):
		return 0
	case len(got) == 5 && got[0] == 0x01 && got[1] == 0x12 && bytes.Equal(got[2:4], le16(handle)):
		return got[4]
	}
	c.t.Fatalf("write answered % x", got)
	return 0
}

// info reads ClaimInfo (with Read Blob past the first part).
func (c *central) info(handle uint16) gattapi.ClaimInfo {
	c.t.Helper()
	got := c.roundTrip(append([]byte{0x0a}, le16(handle)...))
	if len(got) == 0 || got[0] != 0x0b {
		c.t.Fatalf("read ClaimInfo answered % x", got)
	}
	var ci gattapi.ClaimInfo
	if err := ci.UnmarshalBinary(got[1:]); err != nil {
		c.t.Fatalf("ClaimInfo % x: %v", got[1:], err)
	}
	return ci
}

// writeBundle writes a sealed bundle in chunks of size bytes and returns
// each chunk's answer.
func (c *central) writeBundle(handle uint16, sealed []byte, size int) []byte {
	c.t.Helper()
	chunks, err := gattapi.Chunk(sealed, size, gattapi.MaxBundle)
	if err != nil {
		c.t.Fatal(err)
	}
	var out []byte
	for _, ch := range chunks {
		out = append(out, c.write(handle, ch))
	}
	return out
}

func handles(s *claim.Service) (info, bundle uint16) {
	return s.Service.Characteristics[0].ValueHandle, s.Service.Characteristics[1].ValueHandle
}

// A phone claims the board over the service: it reads the sealing key,
// its chunks out of order and a bundle sealed to another board are
// refused with gatt.chunk and claim.open, the chunked bundle sealed to
// this board is accepted on its last chunk, ClaimInfo then names the
// device, and a second bundle is refused.
func TestServiceClaimOverATT(t *testing.T) {
	r := newRig(t)
	b := r.open(t)
	ctl, s := serve(t, b)
	ih, bh := handles(s)
	c := connect(t, ctl, 0x40)

	ci := c.info(ih)
	if ci.State != gattapi.Unclaimed || !bytes.Equal(ci.SealKey, b.SealKey()) {
		t.Fatalf("ClaimInfo %+v, want unclaimed with the board's key", ci)
	}

	bundle, sealed := sealedFor(t, b, "laundry-1")
	chunks, err := gattapi.Chunk(sealed, 200, gattapi.MaxBundle)
	if err != nil || len(chunks) < 3 {
		t.Fatalf("%d chunks, %v", len(chunks), err)
	}
	chunkCode := gattapi.ATTCodes["gatt.chunk"]
	// Out of order: a chunk other than 0 first, then a skipped chunk.
	if got := c.write(bh, chunks[1]); got != chunkCode {
		t.Errorf("chunk 1 first: 0x%02x, want gatt.chunk 0x%02x", got, chunkCode)
	}
	if got := c.write(bh, chunks[0]); got != 0 {
		t.Fatalf("chunk 0: 0x%02x", got)
	}
	if got := c.write(bh, chunks[2]); got != chunkCode {
		t.Errorf("chunk 2 after 0: 0x%02x, want gatt.chunk", got)
	}
	// The unfinished bundle was dropped: chunk 1 now is out of step too.
	if got := c.write(bh, chunks[1]); got != chunkCode {
		t.Errorf("chunk 1 after a refused chunk: 0x%02x, want gatt.chunk", got)
	}
	// Garbage chunks.
	for _, v := range [][]byte{{}, {0, 0, 0, 1}, {0, 5, 0, 3, 1}, {0, 0, 0, 0, 1}} {
		if got := c.write(bh, v); got == 0 {
			t.Errorf("chunk % x accepted", v)
		}
	}
	// Sealed to another board: every chunk but the last is taken, the last
	// gets claim.open.
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	_, doc := testBundle(t, "laundry-1")
	answers := c.writeBundle(bh, seal(t, other.PublicKey().Bytes(), doc), 200)
	if last := answers[len(answers)-1]; last != gattapi.ATTCodes["claim.open"] || bytes.Count(answers, []byte{0}) != len(answers)-1 {
		t.Errorf("bundle sealed to another board: answers % x, want 00… then claim.open 0x94", answers)
	}
	if f := r.files(t); len(f) != 0 {
		t.Errorf("refused bundles wrote %d files", len(f))
	}
	if c.info(ih).State != gattapi.Unclaimed {
		t.Fatal("claimed after refusals")
	}

	// The bundle sealed to this board, in 200-byte chunks.
	answers = c.writeBundle(bh, sealed, 200)
	if !bytes.Equal(answers, make([]byte, len(answers))) {
		t.Fatalf("bundle answers % x, want all accepted", answers)
	}
	select {
	case <-b.Claimed():
	default:
		t.Fatal("the board is not claimed after the last chunk's Write Response")
	}
	checkClaimed(t, r, b, bundle)
	ci = c.info(ih)
	if ci.State != gattapi.Claimed || ci.Device != "laundry-1" || len(ci.SignKey) != 32 {
		t.Errorf("ClaimInfo after the claim: %+v", ci)
	}
	// Again, even sealed to this board: claim.not_registration.
	_, again := sealedFor(t, b, "laundry-2")
	answers = c.writeBundle(bh, again, 300)
	if last := answers[len(answers)-1]; last != gattapi.ATTCodes["claim.not_registration"] {
		t.Errorf("second bundle: answers % x, want claim.not_registration 0x93 last", answers)
	}
	if st := s.Stats(); st.Accepted != 1 {
		t.Errorf("stats %+v, want 1 accepted", st)
	}
}

// A disconnect drops the unfinished bundle: the next central cannot go on
// where the first left off, and starts over.
func TestServiceDisconnectDropsBundle(t *testing.T) {
	r := newRig(t)
	b := r.open(t)
	ctl, s := serve(t, b)
	_, bh := handles(s)
	bundle, sealed := sealedFor(t, b, "laundry-1")
	chunks, _ := gattapi.Chunk(sealed, 300, gattapi.MaxBundle)
	a := connect(t, ctl, 0x40)
	if got := a.write(bh, chunks[0]); got != 0 {
		t.Fatalf("chunk 0: 0x%02x", got)
	}
	ctl.Disconnect(0x40)
	time.Sleep(50 * time.Millisecond)
	c := connect(t, ctl, 0x41)
	if got := c.write(bh, chunks[1]); got != gattapi.ATTCodes["gatt.chunk"] {
		t.Errorf("chunk 1 from the next central: 0x%02x, want gatt.chunk", got)
	}
	if answers := c.writeBundle(bh, sealed, 300); !bytes.Equal(answers, make([]byte, len(answers))) {
		t.Fatalf("bundle from the start: % x", answers)
	}
	checkClaimed(t, r, b, bundle)
}
