package server_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"beaconvend/cloud/server"
)

// The data directory's secrets are made once, mode 0600, and read back
// the same on the next start; no temporary file is left behind.
func TestSecretsMadeOnceWith0600(t *testing.T) {
	dir := t.TempDir()
	a, err := server.LoadSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := server.LoadSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.CloudKey.Equal(b.CloudKey) || a.MQTTPassword != b.MQTTPassword {
		t.Fatal("secrets changed between two starts")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("data dir holds %d entries, want cloud.key and mqtt-cloud.secret only", len(ents))
	}
	for _, e := range ents {
		st, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", e.Name(), st.Mode(), err)
		}
	}
	// A damaged key file is an error naming it, not a new key.
	os.WriteFile(filepath.Join(dir, "cloud.key"), []byte("zz\n"), 0o600)
	if _, err := server.LoadSecrets(dir); err == nil || !bytes.Contains([]byte(err.Error()), []byte("cloud.key")) {
		t.Fatalf("damaged cloud.key: %v", err)
	}
	// WriteSecret replaces a file whole.
	p := filepath.Join(dir, "s")
	if err := server.WriteSecret(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := server.WriteSecret(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "two" {
		t.Fatalf("WriteSecret: %q", got)
	}
	if err := server.WriteSecret(filepath.Join(dir, "missing", "s"), []byte("x")); err == nil {
		t.Fatal("WriteSecret into a missing directory succeeded")
	}
}
