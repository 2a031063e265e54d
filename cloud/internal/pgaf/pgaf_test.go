package pgaf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestKillFindsAKeeperThePidFileMisses: a node's keeper whose pid the
// pid file does not hold (started by another run, the file rewritten
// since) is still killed with everything in its session, found by the
// data directory on its command line; a keeper left alive restarts its
// postgres within seconds and the primary's "death" never fails over.
func TestKillFindsAKeeperThePidFileMisses(t *testing.T) {
	dir := t.TempDir()
	pgdata := filepath.Join(dir, "node9")
	if err := os.MkdirAll(pgdata, 0o700); err != nil {
		t.Fatal(err)
	}
	// A stand-in keeper in its own session, as scripts/pgaf.sh starts
	// one, with a child of its own (its postgres).
	cmd := exec.Command("sh", "-c", "sleep 300 & wait", "pg_autoctl", "run", "--pgdata", pgdata)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stand-in keeper's child did not start")
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if _, ppid, ok := procIDs(pid); ok && ppid == cmd.Process.Pid {
				child = pid
			}
		}
	}
	// The pid file names a process that is long gone.
	if err := os.WriteFile(filepath.Join(dir, "node9.pid"), []byte("2147480000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &Formation{Dir: dir, killed: map[string]bool{}}
	if err := f.Kill(Node{Name: "node9"}); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the keeper outlived Kill")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(child, 0); err != nil {
			break
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child)); strings.Contains(string(b), ") Z ") {
			break // killed, waiting to be reaped
		}
		if time.Now().After(deadline) {
			t.Fatal("the keeper's child (its postgres) outlived Kill")
		}
	}
}
