package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "beaconvend/app-protocol/provision"
)

// runCLIErr runs one CLI command and returns its error (ParseFlags or Run).
func runCLIErr(t *testing.T, data string, args ...string) error {
	t.Helper()
	m := NewMain()
	m.Stdout, m.Stderr = io.Discard, io.Discard
	m.StoreOpts.BcryptCost = 4
	err := m.ParseFlags(append(args, "-data", data))
	if err == nil {
		err = m.Run(t.Context())
	}
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return err
}

// `cloud device add` prints {"device","operator","bundle"} and writes a
// bundle the controller's import reads; the cloud no longer takes board
// flags; a second add of the same id, or into a non-empty directory, is
// refused without touching anything.
func TestDeviceAddBundle(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	op := runCLI(t, data, "operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password", "acme-password-1")
	dir := filepath.Join(out, "vm-1")
	res := runCLI(t, data, "device", "add", "-id", "vm-1", "-operator", "Acme", "-kind", "vending", "-slots", "A1:Cola:150,B5:Cookies:140",
		"-out", dir, "-mqtt-url", "ssl://broker.example:8883")
	if res["device"] != "vm-1" || res["operator"] != op["operator"] || res["bundle"] != filepath.Join(dir, "bundle.json") {
		t.Fatalf("device add printed %v", res)
	}
	raw, err := os.ReadFile(res["bundle"])
	if err != nil {
		t.Fatal(err)
	}
	b, err := pb.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if b.MQTT.URL != "ssl://broker.example:8883" || len(b.Machines) != 1 || len(b.Machines[0].Slots) != 2 || b.Machines[0].Slots[1].ID != "B5" {
		t.Errorf("bundle %+v", b)
	}
	for name, args := range map[string][]string{
		"-board":                  {"-id", "vm-2", "-board", "pulse-io-4"},
		"-port":                   {"-id", "vm-2", "-port", "/dev/ttyUSB0"},
		"no -mqtt-url":            {"-id", "vm-2", "-mqtt-url", ""},
		"same id":                 {"-id", "vm-1", "-out", filepath.Join(out, "again")},
		"same directory":          {"-id", "vm-3", "-out", dir},
		"plaintext remote broker": {"-id", "vm-4", "-mqtt-url", "tcp://broker.example:1883"},
	} {
		full := append([]string{"device", "add", "-operator", "Acme", "-kind", "vending", "-out", filepath.Join(out, "new"), "-mqtt-url", "ssl://b.example:8883"}, args...)
		if err := runCLIErr(t, data, full...); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "panic") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if after, _ := os.ReadFile(res["bundle"]); !bytes.Equal(after, raw) {
		t.Error("a refused add changed the existing bundle")
	}
	for _, d := range []string{"new", "again"} {
		if _, err := os.Stat(filepath.Join(out, d)); err == nil {
			t.Errorf("a refused add made %s", d)
		}
	}
}
