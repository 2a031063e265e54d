package linux_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	ble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// wait bounds every step of these tests: a hang fails the test.
const wait = 3 * time.Second

// testTable is the attribute table the tests (and FuzzATTServer) serve: a
// static value longer than any MTU, a read handler, a write handler that
// records what it got, and a notify characteristic whose notifiers go to
// a channel.
type testTable struct {
	svc                     *ble.Service
	static, read, wr, notif *ble.Characteristic
	staticVal               []byte

	mu      sync.Mutex
	writes  [][]byte
	notifyC chan ble.Notifier
}

func newTestTable() *testTable {
	tt := &testTable{notifyC: make(chan ble.Notifier, 16)}
	tt.staticVal = make([]byte, 300)
	for i := range tt.staticVal {
		tt.staticVal[i] = byte(i)
	}
	tt.svc = ble.NewService(ble.MustParse("6e400001-b5a3-f393-e0a9-e50e24dcca9e"))
	tt.static = tt.svc.NewCharacteristic(ble.UUID16(0xfff1))
	tt.static.SetValue(tt.staticVal)
	tt.read = tt.svc.NewCharacteristic(ble.UUID16(0xfff2))
	tt.read.HandleRead(ble.ReadHandlerFunc(func(req ble.Request, rsp ble.ResponseWriter) {
		v := bytes.Repeat([]byte("r"), 600)
		if req.Offset() > len(v) {
			rsp.SetStatus(ble.ErrInvalidOffset)
			return
		}
		v = v[req.Offset():]
		rsp.Write(v[:min(len(v), rsp.Cap())])
	}))
	tt.wr = tt.svc.NewCharacteristic(ble.UUID16(0xfff3))
	tt.wr.HandleWrite(ble.WriteHandlerFunc(func(req ble.Request, rsp ble.ResponseWriter) {
		tt.mu.Lock()
		tt.writes = append(tt.writes, append([]byte(nil), req.Data()...))
		tt.mu.Unlock()
	}))
	tt.notif = tt.svc.NewCharacteristic(ble.UUID16(0xfff4))
	tt.notif.HandleNotify(ble.NotifyHandlerFunc(func(req ble.Request, n ble.Notifier) {
		select {
		case tt.notifyC <- n:
		default:
		}
		<-n.Context().Done()
	}))
	return tt
}

func (tt *testTable) lastWrite() []byte {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if len(tt.writes) == 0 {
		return nil
	}
	return tt.writes[len(tt.writes)-1]
}

// newDevice runs the fork's whole Linux device (HCI, L2CAP, ATT server,
// GATT database) on a scripted controller.
func newDevice(t testing.TB, o *hcitest.Opts) (*linux.Device, *hcitest.Controller, *testTable) {
	t.Helper()
	tt := newTestTable()
	d, ctl := hcitest.NewDevice(t, "test", o, wait, tt.svc)
	return d, ctl, tt
}

func readATT(t testing.TB, ctl *hcitest.Controller, h uint16) []byte {
	t.Helper()
	b, err := ctl.ReadATT(h, wait)
	if err != nil {
		t.Fatalf("no ATT PDU from the host on handle %#x: %v", h, err)
	}
	return b
}

// roundTrip sends an ATT request and returns the server's answer.
func roundTrip(t testing.TB, ctl *hcitest.Controller, h uint16, req []byte) []byte {
	t.Helper()
	ctl.SendATT(h, req)
	return readATT(t, ctl, h)
}

func le16(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func errRsp(op byte, h uint16, code ble.ATTError) []byte {
	return cat([]byte{0x01, op}, le16(h), []byte{byte(code)})
}

func exchangeMTU(t testing.TB, ctl *hcitest.Controller, h uint16, mtu uint16) {
	t.Helper()
	got := roundTrip(t, ctl, h, cat([]byte{0x02}, le16(mtu)))
	if want := cat([]byte{0x03}, le16(ble.MaxMTU)); !bytes.Equal(got, want) {
		t.Fatalf("Exchange MTU answer % x, want % x", got, want)
	}
}
