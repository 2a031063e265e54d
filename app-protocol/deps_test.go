package protocol_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The protocol's library packages are what app teams port to Kotlin and
// Swift and what both the cloud and the controller import: they may use
// only the standard library, golang.org/x/crypto and app-protocol itself.
// Programs under app-protocol/cmd may use more; the phone program reaches
// the BLE radio through hw/ble's Scanner interface (and the go-ble fork under
// hw/ble/goble that implements it on Linux) and nothing else of hw/.
func TestProtocolImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	libs := 0
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "/cmd/") {
			continue
		}
		libs++
		deps, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, d := range strings.Fields(string(deps)) {
			if d != "beaconvend/app-protocol" && !strings.HasPrefix(d, "beaconvend/app-protocol/") && !strings.HasPrefix(d, "golang.org/x/crypto/") {
				t.Errorf("%s links %s: protocol libraries use only the standard library, x/crypto and app-protocol", pkg, d)
			}
		}
	}
	if libs < 5 {
		t.Fatalf("only %d library packages listed: the test is not looking at app-protocol", libs)
	}
}

func TestPhoneProgramImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/phone").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, "beaconvend/") && !strings.HasPrefix(d, "beaconvend/app-protocol") && d != "beaconvend/hw/ble" && !strings.HasPrefix(d, "beaconvend/hw/ble/goble") {
			t.Errorf("the phone program links %s: beyond app-protocol it may use only hw/ble (for scanning) and its radio library hw/ble/goble", d)
		}
		for _, f := range []string{"database/sql", "modernc.org/", "github.com/jackc/", "github.com/mochi-mqtt/"} {
			if strings.HasPrefix(d, f) {
				t.Errorf("the phone program links %s", d)
			}
		}
	}
}
