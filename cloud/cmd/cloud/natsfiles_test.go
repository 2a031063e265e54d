package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/broker/natscluster"
)

func natsFiles(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, io.Discard
	if err := m.ParseFlags(append([]string{"broker", "nats-files"}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("printed %q", out.String())
	}
	return res
}

// `cloud broker nats-files` writes a node configuration nats-server
// accepts for each node, and keeps the responders' secrets on a rerun.
func TestBrokerNATSFiles(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-out", dir, "-nodes", "3", "-store", filepath.Join(dir, "js"), "-max-consumers", "20000"}
	first := natsFiles(t, args...)
	for _, n := range []string{"n0", "n1", "n2"} {
		o, err := server.ProcessConfigFile(filepath.Join(dir, n, "nats-server.conf"))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if o.MQTT.StreamReplicas != 3 || o.JetStreamLimits.DefaultMaxConsumers != 20000 || o.AuthCallout == nil || o.AuthCallout.Issuer != first["issuer"] {
			t.Fatalf("%s: %+v %+v", n, o.MQTT, o.AuthCallout)
		}
	}
	for _, f := range []string{natsIssuerSeedFile, natsAuthPassFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	if again := natsFiles(t, args...); again["issuer"] != first["issuer"] {
		t.Fatalf("issuer changed on a rerun: %v → %v", first["issuer"], again["issuer"])
	}
}

func natsFilesErr(args ...string) error {
	m := NewMain()
	m.Stdout, m.Stderr = io.Discard, io.Discard
	if err := m.ParseFlags(append([]string{"broker", "nats-files"}, args...)); err != nil {
		return err
	}
	return m.Run(context.Background())
}

// With -tls-cert, -tls-key and -tls-ca every node's client and MQTT
// listeners serve its own certificate ({node}) and its routes are mutual
// TLS; the real nats-server accepts each file, and the printed URLs are
// ssl:// and tls:// with the CA to give the cloud and the devices.
func TestBrokerNATSFilesTLS(t *testing.T) {
	dir := t.TempDir()
	p := brokertest.NewPKI(t)
	for _, n := range []string{"n0", "n1", "n2"} {
		p.NodeCert(t, n)
	}
	res := natsFiles(t, "-out", dir, "-nodes", "3", "-store", filepath.Join(dir, "js"),
		"-tls-cert", filepath.Join(p.Dir, "node-{node}.pem"), "-tls-key", filepath.Join(p.Dir, "node-{node}-key.pem"), "-tls-ca", p.CAFile)
	bin, err := natscluster.Binary()
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"n0", "n1", "n2"} {
		conf := filepath.Join(dir, n, "nats-server.conf")
		if out, err := exec.Command(bin, "-t", "-c", conf).CombinedOutput(); err != nil {
			t.Fatalf("nats-server -t -c %s: %v\n%s", conf, err, out)
		}
		o, err := server.ProcessConfigFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if o.TLSConfig == nil || o.MQTT.TLSConfig == nil || o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Fatalf("%s: TLS missing: client %v mqtt %v routes %+v", n, o.TLSConfig != nil, o.MQTT.TLSConfig != nil, o.Cluster.TLSConfig)
		}
		b, _ := os.ReadFile(conf)
		if !strings.Contains(string(b), filepath.Join(p.Dir, "node-"+n+".pem")) {
			t.Errorf("%s: not its own certificate:\n%s", n, b)
		}
		mu, nu := res["mqtt_urls"].([]any)[i].(string), res["nats_urls"].([]any)[i].(string)
		if !strings.HasPrefix(mu, "ssl://127.0.0.1:") || !strings.HasPrefix(nu, "tls://127.0.0.1:") {
			t.Errorf("%s: printed %s and %s, want ssl:// and tls://", n, mu, nu)
		}
	}
	if res["ca_file"] != p.CAFile {
		t.Errorf("printed ca_file %v, want %s", res["ca_file"], p.CAFile)
	}
}

// Off loopback without TLS the command refuses (unless -plaintext), as
// it refuses partial TLS flags and certificates a node would fail on.
func TestBrokerNATSFilesTLSRefusals(t *testing.T) {
	dir := t.TempDir()
	p := brokertest.NewPKI(t)
	cert, key := p.NodeCert(t, "n")
	offHosts := []string{"-hosts", "10.0.0.1,10.0.0.2,10.0.0.3"}
	base := []string{"-out", filepath.Join(dir, "out"), "-store", filepath.Join(dir, "js")}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"plain off loopback":     {offHosts, "10.0.0.1:4222 without TLS"},
		"key without cert":       {[]string{"-tls-key", key}, "need -tls-cert"},
		"cert without key":       {[]string{"-tls-cert", cert}, "needs -tls-key"},
		"cluster without ca":     {[]string{"-tls-cert", cert, "-tls-key", key}, "-tls-ca missing"},
		"plaintext and tls":      {[]string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", p.CAFile, "-plaintext"}, "choose one"},
		"route cert without key": {[]string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", p.CAFile, "-route-cert", cert}, "give both"},
		"host not in the cert":   {append([]string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", p.CAFile}, offHosts...), "node n0: broker: invalid options: nats tls: cert"},
		"server-only route cert": {[]string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", p.CAFile, "-route-cert", p.ServerCert, "-route-key", p.ServerKey}, "as a client certificate"},
	} {
		err := natsFilesErr(append(append([]string(nil), base...), c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "n0")); err == nil {
		t.Error("a refused run wrote node files")
	}
	if err := natsFilesErr(append(append([]string(nil), base...), append(offHosts, "-plaintext")...)...); err != nil {
		t.Errorf("-plaintext off loopback: %v", err)
	}
}
