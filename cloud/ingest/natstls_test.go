package ingest_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/broker/natscluster"
	"beaconvend/cloud/ingest"
)

// caConfig is what `cloud serve` builds from broker.ca_file.
func caConfig(t *testing.T, caFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestNATSClusterTLS: three nodes with TLS on the client and MQTT
// listeners and mutual TLS on the routes, the auth callout answered over
// TLS. A device publishes a usage report over ssl:// to one node; the
// cloud, whose NATS and MQTT connections trust only broker.ca_file,
// consumes it from JetStream through another node and its Ack reaches
// the device. A client without the CA, and a plain-TCP client on either
// listener, are refused.
func TestNATSClusterTLS(t *testing.T) {
	p := brokertest.NewPKI(t)
	cert, key := p.NodeCert(t, "n")
	acc := brokertest.NewAccounts(t, "dev-0")
	c := natscluster.Start(t, natscluster.Options{Nodes: 3,
		Auth: &natscluster.Auth{Credentials: acc, CloudPassword: acc.CloudPassword},
		TLS:  &broker.NATSTLS{CertFile: cert, KeyFile: key, CAFile: p.CAFile}})
	for i, u := range append(append([]string(nil), c.MQTTURLs...), c.NATSURLs...) {
		if !strings.HasPrefix(u, "ssl://") && !strings.HasPrefix(u, "tls://") {
			t.Fatalf("url %d %s: want ssl:// or tls://", i, u)
		}
	}

	rec := newRecorder()
	cloudTLS := caConfig(t, p.CAFile)
	in, err := ingest.New(ingest.Options{
		URL: c.MQTTURLs[0], FallbackURLs: c.MQTTURLs[1:], ClientID: "_cloud-a", Username: "_cloud", Password: acc.CloudPassword,
		TLS: cloudTLS, Group: "cloud", Handler: rec.handler("a"), MaxReconnectInterval: 2 * time.Second, Logger: testLogger(t),
		NATS: &ingest.NATSOptions{URLs: c.NATSURLs, Replicas: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingest Run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, wait)
	defer wcancel()
	if err := in.WaitSubscribed(wctx); err != nil {
		t.Fatalf("ingest over TLS not subscribed: %v", err)
	}

	const dev = "dev-0"
	o := brokertest.ClientOptions(c.MQTTURLs[2], dev, dev, acc.Password(dev), caConfig(t, p.CAFile))
	d := brokertest.MustConnect(t, o)
	acks := listenAcks(t, d, dev)
	u := &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(time.Now()), Session: vend.NewSessionID(), Seq: 1, Report: []byte("signed report")}
	pub, err := mqttapi.Tree{}.Publication(dev, u)
	if err != nil {
		t.Fatal(err)
	}
	if err := brokertest.Done(d.Publish(pub.Topic, pub.QoS, pub.Retain, pub.Payload)); err != nil {
		t.Fatal(err)
	}
	key1 := dev + "/" + u.ID
	waitUntil(t, "the usage report at the cloud", rec.notify, func() bool { return rec.handled([]string{key1}) })
	rec.mu.Lock()
	if leaf := rec.leaves[key1]; leaf != string(mqttapi.LeafUsage) {
		t.Errorf("handled as %q, want usage", leaf)
	}
	rec.mu.Unlock()
	waitUntil(t, "the Ack at the device", rec.notify, func() bool { return acks.counts()[u.ID] > 0 })

	// The listeners' certificate is refused by a client without the CA.
	noCA := brokertest.ClientOptions(c.MQTTURLs[1], dev, dev, acc.Password(dev), &tls.Config{MinVersion: tls.VersionTLS12})
	if _, err := brokertest.Connect(t, noCA); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("MQTT client without the CA: err = %v, want a certificate error", err)
	}
	if nc, err := nats.Connect(c.NATSURLs[1], nats.UserInfo("_cloud", acc.CloudPassword), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("NATS client without the CA connected")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("NATS client without the CA: err = %v, want a certificate error", err)
	}

	// A plain client on a TLS listener is refused by the node itself.
	plain := brokertest.ClientOptions(strings.Replace(c.MQTTURLs[1], "ssl://", "tcp://", 1), dev, dev, acc.Password(dev), nil)
	if _, err := brokertest.Connect(t, plain); err == nil {
		t.Error("plain MQTT client on the TLS listener connected")
	}
	host := func(s string) string { pu, _ := url.Parse(s); return pu.Host }
	if line := plainNATS(t, host(c.NATSURLs[1]), `CONNECT {"verbose":false,"user":"_cloud","pass":"`+acc.CloudPassword+`"}`); strings.Contains(line, "PONG") {
		t.Errorf("plain NATS client on the TLS listener answered %q", line)
	}
}

// plainNATS speaks the NATS protocol in clear to addr: it reads INFO,
// sends connect and a PING, and returns what comes back before the node
// closes the connection (a PONG means it was admitted).
func plainNATS(t *testing.T, addr, connect string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("no INFO from %s: %q %v", addr, info, err)
	}
	if !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("INFO of %s does not require TLS: %s", addr, info)
	}
	if _, err := conn.Write([]byte(connect + "\r\nPING\r\n")); err != nil {
		return ""
	}
	var got strings.Builder
	for {
		line, err := r.ReadString('\n')
		got.WriteString(line)
		if err != nil || strings.Contains(line, "PONG") {
			return got.String()
		}
	}
}
