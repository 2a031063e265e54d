package main_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	controller "beaconvend/controller/cmd/controller"
)

// Registration mode needs both its flags; with them the daemon's flags
// still parse.
func TestRegistrationFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-claim-dir", "/var/lib/beaconvend/claim"},
		{"-wiring", "/etc/beaconvend/wiring.yaml"},
		{"-claim-dir", "d", "-wiring", "w", "extra"},
	} {
		var stderr bytes.Buffer
		m := &controller.Main{Stderr: &stderr}
		if err := m.ParseFlags(args); err == nil {
			t.Errorf("ParseFlags(%q) accepted", args)
		}
		if !strings.Contains(stderr.String(), "-claim-dir") {
			t.Errorf("ParseFlags(%q) printed %q, want the usage", args, stderr.String())
		}
	}
	m := &controller.Main{Stderr: io.Discard}
	if err := m.ParseFlags([]string{"-config", "/etc/beaconvend/controller.yaml", "-wiring", "/etc/beaconvend/wiring.yaml", "-claim-dir", "/var/lib/beaconvend/claim"}); err != nil {
		t.Fatal(err)
	}
	if m.ClaimDir != "/var/lib/beaconvend/claim" || m.WiringPath != "/etc/beaconvend/wiring.yaml" || m.ImportBeacon != "hci" {
		t.Errorf("flags: claim dir %q, wiring %q, beacon %q", m.ClaimDir, m.WiringPath, m.ImportBeacon)
	}
}
