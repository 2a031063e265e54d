package server_test

import (
	"fmt"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/broker/natscluster"
	"beaconvend/cloud/server"
)

// TestBrokerKindNATSOverTLS: against a nats-server whose client and MQTT
// listeners serve TLS only, the cloud configured with ssl://, tls:// and
// broker.ca_file starts (its group's consumer made over NATS, its MQTT
// subscriptions made); with no ca_file it does not (the system roots do
// not know the CA), so it did use ca_file for both connections.
func TestBrokerKindNATSOverTLS(t *testing.T) {
	p := brokertest.NewPKI(t)
	tc, err := natsserver.GenTLSConfig(&natsserver.TLSConfigOpts{CertFile: p.ServerCert, KeyFile: p.ServerKey})
	if err != nil {
		t.Fatal(err)
	}
	np, mp := brokertest.FreePort(t), brokertest.FreePort(t)
	ns, err := natsserver.NewServer(&natsserver.Options{ServerName: "n0", Host: "127.0.0.1", Port: np, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true, TLSConfig: tc, TLSTimeout: 5,
		MQTT: natsserver.MQTTOpts{Host: "127.0.0.1", Port: mp, TLSConfig: tc, TLSTimeout: 5}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)

	run := func(caFile string, within time.Duration) error {
		dir := t.TempDir()
		cfg, _, _, err := prodConfig(t, dir, func(c *server.Config) {
			c.Broker = server.Broker{URL: fmt.Sprintf("ssl://127.0.0.1:%d", mp), Kind: "nats",
				NATSURLs: []string{fmt.Sprintf("tls://127.0.0.1:%d", np)}, Group: "fleet", CAFile: caFile}
		})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(server.Options{Config: cfg, Store: openStore(t, cfg)})
		if err != nil {
			t.Fatal(err)
		}
		stop, err := runServer(srv, within)
		defer func() {
			if err := stop(); err != nil && caFile != "" {
				t.Errorf("Run: %v", err)
			}
		}()
		if err != nil {
			return err
		}
		if !srv.Ingest.Connected() {
			return fmt.Errorf("ready but the ingest is not connected")
		}
		return nil
	}
	if err := run(p.CAFile, 20*time.Second); err != nil {
		t.Fatalf("with broker.ca_file: %v", err)
	}
	// A cloud that trusted the nodes anyway would be ready as fast as
	// the one above; 3 s is not a performance bound but the time it is
	// given to (wrongly) succeed.
	if err := run("", 3*time.Second); err == nil {
		t.Fatal("without broker.ca_file the cloud trusted the nodes' certificate")
	}
}

// TestServeNATSAuthRespondersOverTLS: on a cluster whose listeners serve
// TLS only and that admits every client through the auth callout, the
// cloud's own connections are admitted only once its responders reach
// the nodes, so the cloud becomes ready only if the responders, too,
// use broker.ca_file.
func TestServeNATSAuthRespondersOverTLS(t *testing.T) {
	p := brokertest.NewPKI(t)
	cert, key := p.NodeCert(t, "n")
	c := natscluster.Start(t, natscluster.Options{Nodes: 3, Auth: &natscluster.Auth{External: true},
		TLS: &broker.NATSTLS{CertFile: cert, KeyFile: key, CAFile: p.CAFile}})
	dir := t.TempDir()
	seedFile, pwFile := natsAuthFiles(t, c, dir)
	cfg, _, _, err := prodConfig(t, dir, func(cfg *server.Config) {
		cfg.Broker = server.Broker{URL: c.MQTTURLs[0], FallbackURLs: c.MQTTURLs[1:], Kind: "nats", NATSURLs: c.NATSURLs,
			Group: "fleet", CAFile: p.CAFile, NATSAuth: &server.NATSAuth{IssuerSeedFile: seedFile, PasswordFile: pwFile}}
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Config: cfg, Store: openStore(t, cfg)})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := runServer(srv, 30*time.Second)
	defer stop()
	if err != nil {
		t.Fatalf("the cloud was not admitted: its responders did not reach the TLS nodes: %v", err)
	}
	if !srv.Ingest.Connected() {
		t.Fatal("ready but the ingest is not connected")
	}
	var admitted uint64
	for _, r := range srv.AuthResponders {
		admitted += r.Stats().Admitted
	}
	if admitted == 0 {
		t.Fatal("the responders admitted nobody, yet the cloud got in")
	}
}
