package simdev_test

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/cloud/internal/simdev"
)

func selfComm(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

func TestReadProcSelf(t *testing.T) {
	ps, err := simdev.ReadProc(os.Getpid())
	if err != nil {
		t.Fatalf("ReadProc(self): %v", err)
	}
	if ps.PID != os.Getpid() || ps.Comm != selfComm(t) {
		t.Errorf("ReadProc(self) = pid %d comm %q, want %d %q", ps.PID, ps.Comm, os.Getpid(), selfComm(t))
	}
	if ps.RSS <= 0 || ps.PeakRSS < ps.RSS || ps.Start == 0 {
		t.Errorf("ReadProc(self) = %+v; want RSS > 0, PeakRSS >= RSS, Start > 0", ps)
	}
	if ps.CPU < 0 {
		t.Errorf("ReadProc(self).CPU = %v, want >= 0", ps.CPU)
	}
}

func TestReadProcMissing(t *testing.T) {
	// pid_max is at most 2^22: this pid cannot exist.
	for _, pid := range []int{1<<22 + 1, 0, -1} {
		_, err := simdev.ReadProc(pid)
		if !errors.Is(err, simdev.ErrNoProcess) {
			t.Errorf("ReadProc(%d) error = %v, want ErrNoProcess", pid, err)
			continue
		}
		if !strings.Contains(err.Error(), "no such process") {
			t.Errorf("ReadProc(%d) error = %q, want it to say no such process", pid, err)
		}
	}
}

func TestProcPIDsByName(t *testing.T) {
	pids, err := simdev.PIDsByName(selfComm(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, os.Getpid()) {
		t.Errorf("PIDsByName(%q) = %v, want it to hold %d", selfComm(t), pids, os.Getpid())
	}
	if pids, err := simdev.PIDsByName("no-such-comm-x"); err != nil || len(pids) != 0 {
		t.Errorf("PIDsByName(no-such-comm-x) = %v, %v; want none", pids, err)
	}
}

func TestSamplerSelf(t *testing.T) {
	s := simdev.NewSampler(simdev.PIDs(os.Getpid()), 50*time.Millisecond)
	var sink atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		x := uint64(1)
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
			for range 10000 {
				x = x*6364136223846793005 + 1442695040888963407
			}
		}
		sink.Store(x)
	}()
	<-done
	u := s.Stop()
	t.Logf("usage: %+v", u)
	if u.CPUPercent <= 0 || u.CPU <= 0 {
		t.Errorf("CPU = %v (%.1f%%), want > 0", u.CPU, u.CPUPercent)
	}
	if u.MeanRSS <= 0 || u.PeakRSS < u.MeanRSS || u.MaxHWM < u.PeakRSS {
		t.Errorf("MeanRSS %d, PeakRSS %d, MaxHWM %d; want 0 < mean <= peak <= hwm", u.MeanRSS, u.PeakRSS, u.MaxHWM)
	}
	if u.Samples < 3 || u.Procs != 1 || u.Window < 250*time.Millisecond {
		t.Errorf("Samples %d, Procs %d, Window %v; want >= 3, 1, >= 250ms", u.Samples, u.Procs, u.Window)
	}
	if again := s.Stop(); again != u {
		t.Errorf("second Stop = %+v, want %+v", again, u)
	}
}

// A process that exits keeps the CPU time it had at its last sample; a
// PID listed but gone is skipped.
func TestSamplerVanishingProcess(t *testing.T) {
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	s := simdev.NewSampler(simdev.PIDs(pid, 1<<22+1), 20*time.Millisecond)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("child: %v", err)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-waited
		t.Fatal("child did not finish within 20 s")
	}
	time.Sleep(100 * time.Millisecond) // a few samples without the process
	u := s.Stop()
	t.Logf("usage: %+v", u)
	if u.Procs != 1 || u.CPU <= 0 || u.CPUPercent <= 0 {
		t.Errorf("Procs %d, CPU %v (%.1f%%); want 1 process with its CPU time kept", u.Procs, u.CPU, u.CPUPercent)
	}
}

func TestParseProcStat(t *testing.T) {
	// Fields 14 (utime) and 15 (stime) are 250 and 50 ticks; 22 (starttime) is 12345.
	tail := " S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 12345 100000 200"
	for _, tc := range []struct {
		in      string
		comm    string
		wantErr bool
	}{
		{"42 (postgres)" + tail, "postgres", false},
		{"42 (a b) (c))" + tail, "a b) (c)", false},
		{"42 ()" + tail, "", false},
		{"42 postgres" + tail, "", true},
		{"42 (postgres) S 1 2 3", "", true},
		{"42 (postgres)" + strings.Replace(tail, "250", "x", 1), "", true},
	} {
		ps, err := simdev.ParseProcStat([]byte(tc.in))
		if tc.wantErr {
			if !errors.Is(err, simdev.ErrProcFormat) {
				t.Errorf("ParseProcStat(%q) = %+v, %v; want ErrProcFormat", tc.in, ps, err)
			}
			continue
		}
		if err != nil || ps.Comm != tc.comm || ps.Start != 12345 || ps.CPU <= 0 {
			t.Errorf("ParseProcStat(%q) = %+v, %v; want comm %q, start 12345, CPU > 0", tc.in, ps, err, tc.comm)
		}
		// 300 ticks: 3 s at the usual 100 ticks a second.
		if ps.CPU != 3*time.Second {
			t.Logf("ParseProcStat(%q).CPU = %v (CLK_TCK is not 100 here?)", tc.in, ps.CPU)
		}
	}
}

func TestParseProcStatus(t *testing.T) {
	for _, tc := range []struct {
		in        string
		rss, peak uint64
		wantErr   bool
	}{
		{"Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t1\n", 1 << 20, 2 << 20, false},
		{"Name:\tkthreadd\nThreads:\t1\n", 0, 0, false}, // kernel thread: no memory
		{"VmRSS:\t1024 MB\n", 0, 0, true},
		{"VmRSS:\tlots kB\n", 0, 0, true},
	} {
		rss, peak, err := simdev.ParseProcStatus([]byte(tc.in))
		if tc.wantErr {
			if !errors.Is(err, simdev.ErrProcFormat) {
				t.Errorf("ParseProcStatus(%q) = %d, %d, %v; want ErrProcFormat", tc.in, rss, peak, err)
			}
			continue
		}
		if err != nil || rss != tc.rss || peak != tc.peak {
			t.Errorf("ParseProcStatus(%q) = %d, %d, %v; want %d, %d", tc.in, rss, peak, err, tc.rss, tc.peak)
		}
	}
}
