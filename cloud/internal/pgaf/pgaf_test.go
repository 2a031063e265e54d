package pgaf

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pgaf.env")
	if err := os.WriteFile(p, []byte("MONITOR_PORT=1\nNODE1_PORT=2\nNODE2_PORT=3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := readEnv(p)
	if err != nil || env["MONITOR_PORT"] != 1 || env["NODE2_PORT"] != 3 {
		t.Fatalf("readEnv = %v, %v", env, err)
	}
	if err := os.WriteFile(p, []byte("MONITOR_PORT=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readEnv(p); err == nil || !strings.HasPrefix(err.Error(), "pgaf: ") {
		t.Fatalf("readEnv without node ports: %v", err)
	}
}

func TestProcIDs(t *testing.T) {
	sid, ppid, ok := procIDs(os.Getpid())
	want, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, 0, 0, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	if !ok || sid != int(want) || ppid != os.Getppid() {
		t.Fatalf("procIDs = %d %d %v, want %d %d", sid, ppid, ok, want, os.Getppid())
	}
}

func TestScriptPath(t *testing.T) {
	if _, err := scriptPath(); err != nil {
		t.Fatal(err)
	}
}
