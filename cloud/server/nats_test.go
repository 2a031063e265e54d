package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/ingest"
	"beaconvend/cloud/server"
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
	st := openStore(t, cfg)
	logs := &syncBuffer{}
	srv, err := server.New(server.Options{Config: cfg, Store: st, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := runServer(srv, 20*time.Second)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if err != nil {
		t.Fatalf("the cloud did not start on NATS: %v", err)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	c, err := js.Consumer(context.Background(), ingest.DefaultNATSStream, "fleet")
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
