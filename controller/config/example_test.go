package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/controller/config"
)

// The shipped example parses (its key files are absolute paths that exist
// only on a board, so only Parse, not LoadSecrets, is checked).
func TestExampleConfigParses(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "controller.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(strings.NewReader(string(b)), t.TempDir())
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if len(c.Machines) != 2 || c.Profile().Name != "generic-relay-8" {
		t.Errorf("example: %+v", c)
	}
}
