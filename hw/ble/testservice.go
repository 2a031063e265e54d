package ble

import (
	"strconv"
	"sync"
	"time"

	goble "beaconvend/hw/ble/goble"
)

// UUIDs of TestService: a private 128-bit base, not the product's relay
// service (whose contract is app-protocol's).
var (
	TestServiceUUID = goble.MustParse("5e1f0001-7a3b-4c1d-9e2f-b0c0ffee0001")
	TestReadUUID    = goble.MustParse("5e1f0002-7a3b-4c1d-9e2f-b0c0ffee0001") // read: the value
	TestWriteUUID   = goble.MustParse("5e1f0003-7a3b-4c1d-9e2f-b0c0ffee0001") // write: replaces the value
	TestNotifyUUID  = goble.MustParse("5e1f0004-7a3b-4c1d-9e2f-b0c0ffee0001") // notify: the value, then ticks
	TestStaticUUID  = goble.MustParse("5e1f0005-7a3b-4c1d-9e2f-b0c0ffee0001") // read: TestStaticValue, longer than any ATT_MTU
)

// TestStaticValue is TestService's static value: bytes 0, 1, … 299.
var TestStaticValue = func() []byte {
	v := make([]byte, 300)
	for i := range v {
		v[i] = byte(i)
	}
	return v
}()

// TestServiceMaxValue bounds what TestService's write characteristic takes.
const TestServiceMaxValue = 512

// TestService is a tiny GATT service for tests and the VM proof: a value
// that reads back (TestReadUUID), a write that replaces it (TestWriteUUID,
// at most TestServiceMaxValue bytes, longer: Invalid Attribute Value
// Length), a notification (TestNotifyUUID) that, once subscribed, sends
// the value (cut to ATT_MTU − 3) and then "tick N" every Tick until the
// central unsubscribes or goes, and a static 300-byte value
// (TestStaticUUID, TestStaticValue) that takes long reads.
// Its characteristics, in that order, are Service.Characteristics[0..3];
// their handles are set once a Peripheral serves it.
type TestService struct {
	Service *goble.Service
	Tick    time.Duration // between notifications; set before serving

	mu     sync.Mutex
	value  []byte
	writes int
	subs   int
}

// NewTestService returns a TestService with the value "beaconvend" and
// ticks every 500 ms.
func NewTestService() *TestService {
	ts := &TestService{value: []byte("beaconvend"), Tick: 500 * time.Millisecond}
	s := goble.NewService(TestServiceUUID)
	s.NewCharacteristic(TestReadUUID).HandleRead(goble.ReadHandlerFunc(func(req goble.Request, rsp goble.ResponseWriter) {
		v := ts.Value()
		if req.Offset() > len(v) {
			rsp.SetStatus(goble.ErrInvalidOffset)
			return
		}
		v = v[req.Offset():]
		rsp.Write(v[:min(len(v), rsp.Cap())])
	}))
	s.NewCharacteristic(TestWriteUUID).HandleWrite(goble.WriteHandlerFunc(func(req goble.Request, rsp goble.ResponseWriter) {
		d := req.Data()
		if len(d) > TestServiceMaxValue {
			rsp.SetStatus(goble.ErrInvalAttrValueLen)
			return
		}
		ts.mu.Lock()
		ts.value = append([]byte(nil), d...)
		ts.writes++
		ts.mu.Unlock()
	}))
	s.NewCharacteristic(TestNotifyUUID).HandleNotify(goble.NotifyHandlerFunc(func(req goble.Request, n goble.Notifier) {
		ts.mu.Lock()
		ts.subs++
		v := ts.value
		tick := ts.Tick
		ts.mu.Unlock()
		max := req.Conn().TxMTU() - 3 // Notifier.Cap is always 0 in the fork
		if _, err := n.Write(v[:min(len(v), max)]); err != nil {
			return
		}
		t := time.NewTicker(tick)
		defer t.Stop()
		for i := 1; ; i++ {
			select {
			case <-n.Context().Done():
				return
			case <-t.C:
				if _, err := n.Write([]byte("tick " + strconv.Itoa(i))); err != nil {
					return
				}
			}
		}
	}))
	s.NewCharacteristic(TestStaticUUID).SetValue(TestStaticValue)
	ts.Service = s
	return ts
}

// Value returns the current value (a copy).
func (ts *TestService) Value() []byte {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]byte(nil), ts.value...)
}

// Writes and Subscriptions count accepted writes and notification
// subscriptions.
func (ts *TestService) Writes() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.writes
}

// Subscriptions counts notification subscriptions.
func (ts *TestService) Subscriptions() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.subs
}
