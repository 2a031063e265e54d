package ingest_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/ingest"
)

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A broker refusing the cloud's credentials is logged with the reason,
// not only as "reconnecting" (before, an operator whose broker lost the
// cloud's password saw nothing else); an unreachable broker is logged too.
func TestRefusedConnectionIsLogged(t *testing.T) {
	acc := brokertest.NewAccounts(t)
	srv := brokertest.NewEmbedded(t, acc, broker.Options{})
	for _, c := range []struct{ name, url, password, want string }{
		{"bad password", srv.URL(), "not-the-password", "broker refused the connection"},
		{"nobody listening", "tcp://127.0.0.1:1", acc.CloudPassword, "broker unreachable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs lockedBuffer
			in, err := ingest.New(ingest.Options{URL: c.url, ClientID: "_cloud-refused", Username: acc.CloudUser, Password: c.password,
				Handler:              ingest.HandlerFunc(func(context.Context, string, mqttapi.Leaf, mqttapi.Message) error { return nil }),
				MaxReconnectInterval: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- in.Run(ctx) }()
			defer func() { cancel(); <-done }()
			deadline := time.Now().Add(brokertest.Wait)
			for !strings.Contains(logs.String(), c.want) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			got := logs.String()
			if !strings.Contains(got, c.want) {
				t.Fatalf("log lacks %q:\n%s", c.want, got)
			}
			// Mosquitto answers 4 (bad username or password), mochi 5.
			if c.name == "bad password" && !strings.Contains(got, "bad username or password") && !strings.Contains(got, `reason="not authorized"`) {
				t.Errorf("log lacks the refusal's reason:\n%s", got)
			}
		})
	}
}
