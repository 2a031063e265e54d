package main

import (
	"path/filepath"
	"testing"

	"beaconvend/controller/config"
)

// A vending device provisioned for a pulse-io-4 board gets a controller
// config the controller accepts, with its drop sensor on a counted input
// and that counter named as the drop counter; an unknown board is refused.
func TestDeviceAddVendingBoard(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	runCLI(t, data, "operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))
	for _, c := range []struct {
		board, drop, counter, motor string
	}{
		{"generic-relay-16", "in16", "", "relay2"},
		{"pulse-io-4", "in1", "count1", "out2"},
	} {
		dir := filepath.Join(out, c.board)
		runCLI(t, data, "device", "add", "-id", "vm-"+c.board, "-operator", "Acme", "-kind", "vending", "-board", c.board, "-out", dir)
		cfg, err := config.Load(filepath.Join(dir, "controller.yaml"))
		if err != nil {
			t.Fatalf("%s: the controller refuses its config: %v", c.board, err)
		}
		m := cfg.Machines[0]
		if cfg.Board.Profile != c.board || m.Vending.Drop != c.drop || m.Vending.DropCounter != c.counter || m.Slots[1].Output != c.motor {
			t.Errorf("%s: board %s, drop %s, drop counter %q, slot A2 on %s; want %s, %s, %q, %s",
				c.board, cfg.Board.Profile, m.Vending.Drop, m.Vending.DropCounter, m.Slots[1].Output, c.board, c.drop, c.counter, c.motor)
		}
	}
	m := NewMain()
	m.StoreOpts.BcryptCost = 4
	err := m.ParseFlags([]string{"device", "add", "-id", "vm-x", "-operator", "Acme", "-kind", "vending", "-board", "generic-relay-4", "-out", filepath.Join(out, "x"), "-data", data})
	if err == nil {
		err = m.Run(t.Context())
	}
	m.Close()
	if err == nil {
		t.Error("device add -board generic-relay-4: no error")
	}
}
