package gattsvc_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/controller/gattsvc"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// wait bounds every step: a hang fails the test.
const wait = 3 * time.Second

// fakeRelay is a hand-written Relay: it records what it got and answers
// what its fields say.
type fakeRelay struct {
	mu       sync.Mutex
	grants   [][]byte
	acks     []gattapi.Ack
	grantErr error
	ackErr   error
	progress gattapi.Progress
	receipt  gattapi.Receipt
}

var _ gattsvc.Relay = (*fakeRelay)(nil)

func (f *fakeRelay) Grant(msg []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.grants = append(f.grants, append([]byte(nil), msg...))
	return f.grantErr
}

func (f *fakeRelay) Progress() gattapi.Progress {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.progress
}

func (f *fakeRelay) Receipt() gattapi.Receipt {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.receipt
}

func (f *fakeRelay) Ack(a gattapi.Ack) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks = append(f.acks, a)
	return f.ackErr
}

func (f *fakeRelay) set(fn func(f *fakeRelay)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeRelay) got() (grants [][]byte, acks []gattapi.Ack) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.grants...), append([]gattapi.Ack(nil), f.acks...)
}

// serve runs the fork's whole Linux peripheral (HCI, L2CAP, ATT server,
// GATT database) with the service on a scripted controller.
func serve(t testing.TB, r gattsvc.Relay, o *gattsvc.Opts, ho *hcitest.Opts) (*hcitest.Controller, *gattsvc.Service) {
	t.Helper()
	s := gattsvc.New(r, o)
	_, ctl := hcitest.NewDevice(t, "board", ho, wait, s.Service)
	return ctl, s
}

func roundTrip(t testing.TB, ctl *hcitest.Controller, h uint16, req []byte) []byte {
	t.Helper()
	ctl.SendATT(h, req)
	b, err := ctl.ReadATT(h, wait)
	if err != nil {
		t.Fatalf("no answer to % x on handle %#x: %v", req, h, err)
	}
	return b
}

func le16(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func writeReq(h uint16, v []byte) []byte { return cat([]byte{0x12}, le16(h), v) }

func errRsp(op byte, h uint16, code byte) []byte { return cat([]byte{0x01, op}, le16(h), []byte{code}) }

var writeRsp = []byte{0x13}

// longRead reads a value with Read and Read Blob until a part shorter than
// the MTU allows.
func longRead(t testing.TB, ctl *hcitest.Controller, conn, h uint16, mtu int) []byte {
	t.Helper()
	rsp := roundTrip(t, ctl, conn, cat([]byte{0x0a}, le16(h)))
	if rsp[0] != 0x0b {
		t.Fatalf("read of %#x: % x", h, rsp)
	}
	v := append([]byte(nil), rsp[1:]...)
	for len(rsp)-1 == mtu-1 {
		rsp = roundTrip(t, ctl, conn, cat([]byte{0x0c}, le16(h), le16(uint16(len(v)))))
		if rsp[0] != 0x0d {
			t.Fatalf("read blob of %#x at %d: % x", h, len(v), rsp)
		}
		v = append(v, rsp[1:]...)
	}
	return v
}
