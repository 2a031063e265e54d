package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoScript runs the README's demo end to end (scripts/demo.sh with
// DEMO_EXIT=1): it builds everything, runs the four purchases and checks
// the ledger itself. Slow (about 30 s warm), so -short skips it.
func TestDemoScript(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs scripts/demo.sh end to end (run without -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), "scripts", "demo.sh"))
	cmd.Env = append(os.Environ(), "DEMO_EXIT=1", "DEMO_STEP_TIMEOUT=60", "TMPDIR="+t.TempDir())
	cmd.WaitDelay = 10 * time.Second
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out)
	}
	for _, want := range []string{"demo: OK", "ledger imbalance 0", "outcome    user_stop", "outcome    vend_failed", "refunded   1.40 EUR (all of it)"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if n := strings.Count(out, "\nreceipt R-"); n != 4 {
		t.Errorf("demo printed %d receipts, want 4", n)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", out)
	}
}
