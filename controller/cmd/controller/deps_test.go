package main_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The controller runs on a small board: it must not pull in SQL drivers,
// the cloud, the embedded broker, HTTP frameworks or metrics servers.
func TestControllerImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{
		"database/sql", "modernc.org/", "github.com/jackc/", "github.com/mattn/go-sqlite3",
		"github.com/mochi-mqtt/", "github.com/prometheus/", "github.com/getkin/",
		"github.com/gin-gonic/", "github.com/labstack/", "github.com/gorilla/mux",
		"beaconvend/cloud", "beaconvend/hw/emu", "beaconvend/controller/internal/testrig",
	}
	n := 0
	for _, pkg := range strings.Fields(string(out)) {
		n++
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("the controller imports %s (forbidden prefix %s)", pkg, f)
			}
		}
	}
	t.Logf("%d packages in the controller binary", n)
}
