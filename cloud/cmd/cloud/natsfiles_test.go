package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
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
