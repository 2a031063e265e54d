package att

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	ble "beaconvend/hw/ble/goble"
)

// peerConn is a ble.Conn whose far end is a scripted ATT server: every
// request written gets answer(request) read back.
type peerConn struct {
	answer func(req []byte) []byte
	mu     sync.Mutex
	reqs   [][]byte
	rsps   chan []byte
	done   chan struct{}
}

var _ ble.Conn = (*peerConn)(nil)

func newPeerConn(answer func([]byte) []byte) *peerConn {
	return &peerConn{answer: answer, rsps: make(chan []byte, 16), done: make(chan struct{})}
}

func (c *peerConn) Write(b []byte) (int, error) {
	req := append([]byte(nil), b...)
	c.mu.Lock()
	c.reqs = append(c.reqs, req)
	c.mu.Unlock()
	if rsp := c.answer(req); rsp != nil {
		c.rsps <- rsp
	}
	return len(b), nil
}

func (c *peerConn) Read(b []byte) (int, error) {
	select {
	case r := <-c.rsps:
		return copy(b, r), nil
	case <-c.done:
		return 0, io.EOF
	}
}

func (c *peerConn) Close() error                   { close(c.done); return nil }
func (c *peerConn) Context() context.Context       { return context.Background() }
func (c *peerConn) SetContext(ctx context.Context) {}
func (c *peerConn) LocalAddr() ble.Addr            { return ble.NewAddr("00:00:00:00:00:01") }
func (c *peerConn) RemoteAddr() ble.Addr           { return ble.NewAddr("00:00:00:00:00:02") }
func (c *peerConn) RxMTU() int                     { return ble.DefaultMTU }
func (c *peerConn) SetRxMTU(int)                   {}
func (c *peerConn) TxMTU() int                     { return ble.DefaultMTU }
func (c *peerConn) SetTxMTU(int)                   {}
func (c *peerConn) ReadRSSI() int                  { return 0 }
func (c *peerConn) Disconnected() <-chan struct{}  { return c.done }

// Upstream's client sent Prepare Write requests without their value and
// built an Execute Write request one byte short, panicking on its flags
// (upstream issue #81).
func TestClientPrepareExecuteWrite(t *testing.T) {
	conn := newPeerConn(func(req []byte) []byte {
		switch req[0] {
		case PrepareWriteRequestCode:
			return append([]byte{PrepareWriteResponseCode}, req[1:]...)
		case ExecuteWriteRequestCode:
			return []byte{ExecuteWriteResponseCode}
		}
		return []byte{ErrorResponseCode, req[0], 0, 0, byte(ble.ErrReqNotSupp)}
	})
	defer conn.Close()
	c := NewClient(conn, nil)
	go c.Loop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h, off, v, err := c.PrepareWrite(0x0016, 18, []byte("hello"))
		if err != nil || h != 0x0016 || off != 18 || string(v) != "hello" {
			t.Errorf("PrepareWrite = %#x, %d, %q, %v; want 0x16, 18, hello, nil", h, off, v, err)
		}
		if err := c.ExecuteWrite(1); err != nil {
			t.Errorf("ExecuteWrite: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("client hung")
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	want := [][]byte{{0x16, 0x16, 0x00, 18, 0x00, 'h', 'e', 'l', 'l', 'o'}, {0x18, 0x01}}
	if len(conn.reqs) != 2 || !bytes.Equal(conn.reqs[0], want[0]) || !bytes.Equal(conn.reqs[1], want[1]) {
		t.Errorf("requests sent % x, want % x", conn.reqs, want)
	}
}

// Request sends a PDU as given, malformed or not, and returns the
// server's answer to it: its response or an Error Response.
func TestClientRawRequest(t *testing.T) {
	conn := newPeerConn(func(req []byte) []byte {
		if req[0] == ExecuteWriteRequestCode && len(req) == 2 {
			return []byte{ExecuteWriteResponseCode}
		}
		return []byte{ErrorResponseCode, req[0], 0, 0, byte(ble.ErrInvalidPDU)}
	})
	defer conn.Close()
	c := NewClient(conn, nil)
	go c.Loop()
	type res struct {
		rsp []byte
		err error
	}
	got := make(chan res, 3)
	go func() {
		for _, pdu := range [][]byte{{0x18, 0x01}, {0x16, 0x01}, {}} {
			rsp, err := c.Request(pdu)
			got <- res{rsp, err}
		}
	}()
	want := []res{{[]byte{0x19}, nil}, {[]byte{0x01, 0x16, 0, 0, byte(ble.ErrInvalidPDU)}, nil}, {nil, ErrInvalidArgument}}
	for i, w := range want {
		select {
		case r := <-got:
			if !bytes.Equal(r.rsp, w.rsp) || r.err != w.err {
				t.Errorf("request %d: % x, %v; want % x, %v", i, r.rsp, r.err, w.rsp, w.err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("request %d: client hung", i)
		}
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if len(conn.reqs) != 2 || !bytes.Equal(conn.reqs[1], []byte{0x16, 0x01}) {
		t.Errorf("requests sent % x, want the two PDUs as given", conn.reqs)
	}
}

// The ATT_MTU after an exchange is the smaller of the two Rx MTUs, and
// never below 23, whatever the server answers.
func TestClientExchangeMTUTakesTheSmaller(t *testing.T) {
	for _, tc := range []struct{ client, server, want int }{{247, 515, 247}, {247, 100, 100}, {247, 5, 23}, {23, 517, 23}} {
		conn := newPeerConn(func(req []byte) []byte {
			return []byte{ExchangeMTUResponseCode, byte(tc.server), byte(tc.server >> 8)}
		})
		c := NewClient(conn, nil)
		go c.Loop()
		got := make(chan int, 1)
		go func() {
			mtu, err := c.ExchangeMTU(tc.client)
			if err != nil {
				t.Errorf("ExchangeMTU(%d) against %d: %v", tc.client, tc.server, err)
			}
			got <- mtu
		}()
		select {
		case mtu := <-got:
			if mtu != tc.want {
				t.Errorf("ExchangeMTU(%d) against a server of %d = %d, want %d", tc.client, tc.server, mtu, tc.want)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("client hung")
		}
		conn.Close()
	}
}
