package broker_test

import (
	"fmt"
	"net"
	"net/url"
	"strings"
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

// A connection taken over by a newer one of the same device does not
// publish its will (it would land after the new connection's online
// state and mark a connected device offline); a connection that dies
// does.
func TestTakeoverWillDropped(t *testing.T) {
	acc := brokertest.NewAccounts(t, devA)
	srv := brokertest.NewEmbedded(t, acc, broker.Options{})
	rec := newRecorder()
	cloud := brokertest.MustConnect(t, brokertest.ClientOptions(srv.URL(), "_cloud-w", acc.CloudUser, acc.CloudPassword, nil))
	if err := brokertest.Done(cloud.Subscribe(topic(devA, "state"), 1, rec.handle)); err != nil {
		t.Fatal(err)
	}
	withWill := func(payload string) (*paho.ClientOptions, func()) {
		o := brokertest.ClientOptions(srv.URL(), devA, devA, acc.Password(devA), nil).SetCleanSession(false)
		o.SetWill(topic(devA, "state"), payload, 1, false)
		return killable(o)
	}
	for i := range 5 {
		o, _ := withWill(fmt.Sprintf("will-old-%d", i))
		brokertest.MustConnect(t, o)
		o2, kill := withWill(fmt.Sprintf("will-new-%d", i))
		brokertest.MustConnect(t, o2) // takes the session over
		kill()
		rec.waitFor(t, "cloud", fmt.Sprintf("will-new-%d", i))
		if rec.has(fmt.Sprintf("will-old-%d", i)) {
			t.Fatalf("round %d: the taken-over connection's will was published", i)
		}
	}
}

// The cloud orders presence by arrival: it relies on no broker
// delivering a taken-over connection's will after the online state the
// new connection publishes. Mosquitto publishes that will while it
// handles the new CONNECT; the embedded broker drops it.
func TestTakeoverWillNeverAfterOnline(t *testing.T) {
	for _, kind := range []string{"embedded", "mosquitto"} {
		t.Run(kind, func(t *testing.T) {
			acc := brokertest.NewAccounts(t, devA)
			var srv brokertest.Server
			if kind == "embedded" {
				srv = brokertest.NewEmbedded(t, acc, broker.Options{})
			} else {
				srv = brokertest.NewMosquitto(t, acc, brokertest.MosquittoOptions{})
			}
			rec := newRecorder()
			cloud := brokertest.MustConnect(t, brokertest.ClientOptions(srv.URL(), "_cloud-w", acc.CloudUser, acc.CloudPassword, nil))
			if err := brokertest.Done(cloud.Subscribe(topic(devA, "state"), 1, rec.handle)); err != nil {
				t.Fatal(err)
			}
			st := topic(devA, "state")
			for i := range 10 {
				o := brokertest.ClientOptions(srv.URL(), devA, devA, acc.Password(devA), nil).SetCleanSession(false)
				o.SetWill(st, fmt.Sprintf("will-%d", i), 1, false)
				if i == 0 {
					brokertest.MustConnect(t, o)
					continue
				}
				c := brokertest.MustConnect(t, o) // takes over connection i-1
				if err := brokertest.Done(c.Publish(st, 1, false, fmt.Sprintf("online-%d", i))); err != nil {
					t.Fatal(err)
				}
				rec.waitFor(t, "cloud", fmt.Sprintf("online-%d", i))
			}
			time.Sleep(300 * time.Millisecond) // a late will would arrive by now
			rec.mu.Lock()
			defer rec.mu.Unlock()
			seen := map[string]int{}
			for n, m := range rec.msgs {
				_, p, _ := strings.Cut(m, " ")
				seen[p] = n
			}
			for i := 1; i < 10; i++ {
				if w, ok := seen[fmt.Sprintf("will-%d", i-1)]; ok && w > seen[fmt.Sprintf("online-%d", i)] {
					t.Errorf("will of connection %d delivered after the online state of connection %d, which took it over", i-1, i)
				}
			}
			t.Logf("%s: %d messages: %v", kind, len(rec.msgs), rec.msgs)
		})
	}
}
