package main_test

import (
	"os/exec"
	"strings"
	"testing"
)

// harness are the cloud packages that run real controllers on emulated
// boards (the fleet bench, the chaos soak and the cluster fault test). They are test tools, never
// part of a production binary: they may link the controller's config and
// the board emulator; nothing else under cloud/ may, and no production
// package may link them.
var harness = map[string]bool{
	"beaconvend/cloud/internal/simdev":       true, // fleet bench: controllers on emulated boards, configured in process
	"beaconvend/cloud/internal/chaos":        true, // chaos soak: the programs, with faults
	"beaconvend/cloud/cmd/cloudbench":        true,
	"beaconvend/cloud/cmd/chaossoak":         true,
	"beaconvend/cloud/internal/clusterfault": true, // cluster fault test: NATS nodes, a failover, the programs, with kills
	"beaconvend/cloud/cmd/clusterfault":      true,
}

// TestCloudLayering: the cloud binary, and every production package under
// cloud/, links nothing from controller/ or hw/ (the cloud speaks to
// boards only through app-protocol) and no test harness.
func TestCloudLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", "beaconvend/cloud/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, pkg := range strings.Fields(string(out)) {
		if harness[pkg] {
			continue
		}
		checked++
		deps, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, d := range strings.Fields(string(deps)) {
			if strings.HasPrefix(d, "beaconvend/controller") || strings.HasPrefix(d, "beaconvend/hw/") || (harness[d] && d != pkg) {
				t.Errorf("%s links %s", pkg, d)
			}
		}
	}
	if checked < 8 {
		t.Fatalf("only %d cloud packages checked: the test is not looking at the cloud", checked)
	}
	for h := range harness {
		if !strings.Contains(string(out), h+"\n") {
			t.Errorf("harness package %s no longer exists: update the list", h)
		}
	}
}
