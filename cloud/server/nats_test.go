package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/ingest"
	"beaconvend/cloud/server"
	"beaconvend/cloud/store"
)

// TestBrokerKindNATS: with broker.kind nats the cloud starts against a
// nats-server (JetStream and its MQTT listener): it is ready only once
// its group's durable consumer on the uplink stream exists.
func TestBrokerKindNATS(t *testing.T) {
	np, mp := brokertest.FreePort(t), brokertest.FreePort(t)
	ns, err := natsserver.NewServer(&natsserver.Options{ServerName: "n0", Host: "127.0.0.1", Port: np, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true, MQTT: natsserver.MQTTOpts{Host: "127.0.0.1", Port: mp}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", np)

	dir := t.TempDir()
	cfg, _, _, err := prodConfig(t, dir, func(c *server.Config) {
		c.Broker = server.Broker{URL: fmt.Sprintf("tcp://127.0.0.1:%d", mp), Kind: "nats", NATSURLs: []string{natsURL}, Group: "fleet",
			FallbackURLs: []string{fmt.Sprintf("tcp://127.0.0.1:%d", brokertest.FreePort(t))}}
	})
	if err != nil {
		t.Fatal(err)
	}
	so, err := cfg.StoreOptions(store.Opts{BcryptCost: 4}, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), cfg.Database, &so)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs := &syncBuffer{}
	srv, err := server.New(server.Options{Config: cfg, Store: st, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() { close(ready) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		done <- err // for the deferred wait on Run's end
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the cloud did not start on NATS")
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	c, err := js.Consumer(ctx, ingest.DefaultNATSStream, "fleet")
	if err != nil {
		t.Fatalf("the group's consumer: %v", err)
	}
	if info := c.CachedInfo(); info.Config.AckPolicy != jetstream.AckExplicitPolicy || info.Config.MaxDeliver != ingest.DefaultNATSMaxDeliver {
		t.Errorf("consumer config %+v", info.Config)
	}
	if !srv.Ingest.Connected() {
		t.Error("ingest not connected")
	}
	// Without broker.nats_auth the cloud runs no responder, and says so.
	if len(srv.AuthResponders) != 0 || !strings.Contains(logs.String(), "broker.nats_auth not set: this cloud runs no NATS auth callout responder") {
		t.Errorf("%d responders; log:\n%s", len(srv.AuthResponders), logs)
	}
}
