package broker_test

import (
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
)

// disconnects records Options.OnDisconnect calls.
type disconnects struct {
	mu  sync.Mutex
	ids []string
	ch  chan string
}

func (d *disconnects) on(id string, _ time.Time) {
	d.mu.Lock()
	d.ids = append(d.ids, id)
	d.mu.Unlock()
	d.ch <- id
}

func (d *disconnects) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ids)
}

// killable returns client options whose connection the test can cut like
// a killed process's kernel does (no DISCONNECT).
func killable(o *paho.ClientOptions) (*paho.ClientOptions, func()) {
	var mu sync.Mutex
	var conn net.Conn
	o.SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
		c, err := net.Dial("tcp", u.Host)
		mu.Lock()
		conn = c
		mu.Unlock()
		return c, err
	})
	return o, func() {
		mu.Lock()
		defer mu.Unlock()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, as for a process killed with SIGKILL
		}
		_ = conn.Close()
	}
}

// The embedded broker reports a device connection that dies (and one
// that ends cleanly), but not one taken over by the same device's new
// connection, nor the cloud's own clients.
func TestDisconnectHook(t *testing.T) {
	acc := brokertest.NewAccounts(t, devA, devB)
	d := &disconnects{ch: make(chan string, 16)}
	srv := brokertest.NewEmbedded(t, acc, broker.Options{OnDisconnect: d.on})
	expect := func(id string) {
		t.Helper()
		select {
		case got := <-d.ch:
			if got != id {
				t.Fatalf("disconnect reported for %s, want %s", got, id)
			}
		case <-time.After(brokertest.Wait):
			t.Fatalf("no disconnect reported for %s within %v", id, brokertest.Wait)
		}
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case got := <-d.ch:
			t.Fatalf("%s: disconnect reported for %s", what, got)
		case <-time.After(500 * time.Millisecond):
		}
	}

	o, kill := killable(brokertest.ClientOptions(srv.URL(), devA, devA, acc.Password(devA), nil))
	brokertest.MustConnect(t, o)
	kill()
	expect(devA)

	// Takeover: a second connection with the same client id.
	first := brokertest.MustConnect(t, brokertest.ClientOptions(srv.URL(), devB, devB, acc.Password(devB), nil).SetCleanSession(false))
	second := brokertest.MustConnect(t, brokertest.ClientOptions(srv.URL(), devB, devB, acc.Password(devB), nil).SetCleanSession(false))
	quiet("takeover")
	_ = first
	second.Disconnect(50)
	expect(devB)

	cloud := brokertest.MustConnect(t, brokertest.ClientOptions(srv.URL(), "_cloud-x", acc.CloudUser, acc.CloudPassword, nil))
	cloud.Disconnect(50)
	quiet("cloud client")
	if n := d.count(); n != 2 {
		t.Fatalf("%d disconnects reported, want 2", n)
	}
}
