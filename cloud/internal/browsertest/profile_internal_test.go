package browsertest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// A profile left by a test binary that has exited is removed by the next
// start; the profiles of running processes are kept.
func TestProfileDirRemovesOnlyDeadProcesses(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	base := filepath.Join(os.TempDir(), "beaconvend-browsertest")
	dead := filepath.Join(base, "profile-2147483646") // above pid_max: no such process
	alive := filepath.Join(base, fmt.Sprintf("profile-%d", os.Getppid()))
	for _, d := range []string{dead, alive} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := profileDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(base, fmt.Sprintf("profile-%d", os.Getpid())); dir != want {
		t.Errorf("profile %s, want %s", dir, want)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead process's profile is still there: %v", err)
	}
	if _, err := os.Stat(alive); err != nil {
		t.Errorf("the running parent's profile was removed: %v", err)
	}
}
