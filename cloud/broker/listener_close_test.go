package broker_test

import (
	"net"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"beaconvend/cloud/broker"
)

// connectPacket is an MQTT 3.1.1 CONNECT with client ID "churn", clean
// session, no credentials.
var connectPacket = []byte{0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x05, 'c', 'h', 'u', 'r', 'n'}

// Closing the broker while clients connect, take each other's client ID
// over and disconnect must return: mochi's own listener-close path takes
// the clients' read lock twice, so a client removing itself between the
// two locks (a waiting writer) deadlocked Close for good.
func TestCloseWhileClientsChurn(t *testing.T) {
	for round := range 20 {
		srv := mqtt.New(&mqtt.Options{InlineClient: false})
		if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
			t.Fatal(err)
		}
		ln := broker.NewListener("tcp", "127.0.0.1:0", nil)
		if err := srv.AddListener(ln); err != nil {
			t.Fatal(err)
		}
		if err := srv.Serve(); err != nil {
			t.Fatal(err)
		}
		addr := ln.Address()
		stop := make(chan struct{})
		for range 8 {
			go func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						time.Sleep(time.Millisecond)
						continue
					}
					_, _ = c.Write(connectPacket)
					buf := make([]byte, 4)
					_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					_, _ = c.Read(buf)
					c.Close()
				}
			}()
		}
		time.Sleep(30 * time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- srv.Close() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: the broker's Close did not return with clients churning (deadlock)", round)
		}
		close(stop)
	}
}
