package main_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
)

// procStat reads a process's resident set (bytes), CPU time and bytes
// written to storage from /proc.
func procStat(tb testing.TB, pid int) (rss int64, cpu time.Duration, written int64) {
	tb.Helper()
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb * 1024
		}
	}
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	// Fields after the parenthesised command: utime is the 14th field, stime the 15th.
	rest := string(stat)[strings.LastIndexByte(string(stat), ')')+2:]
	f := strings.Fields(rest)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+stt) * (time.Second / 100) // USER_HZ = 100 on Linux
	io, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	for _, line := range strings.Split(string(io), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			written, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return
}

// BenchmarkSteadyState runs the real controller process through water and
// vending sessions, then idles it, and reports its resident memory, CPU
// while selling and while idle, and bytes written to storage per session.
// It is a benchmark, not a timed test: run it with
//
//	go test -run '^$' -bench SteadyState -benchtime 40x ./controller/cmd/controller/
func BenchmarkSteadyState(b *testing.B) {
	r := newProcRig(b)
	r.start()
	pid := r.proc.Process.Pid
	time.Sleep(2 * time.Second) // let start-up settle
	_, cpu0, w0 := procStat(b, pid)
	var maxRSS int64
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var machine string
		var gb []byte
		var g = struct{ id vend.SessionID }{}
		if i%2 == 0 {
			gr, bytes := r.cloud.Grant("dev-pc", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 500, time.Minute)
			g.id, gb, machine = gr.Session, bytes, "m1"
		} else {
			gr, bytes := r.cloud.Grant("dev-pc", "vm", "A1", vend.UnitItem, vend.Price{Minor: 150, Per: 1}, 1, time.Minute)
			g.id, gb, machine = gr.Session, bytes, "vm"
		}
		if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-pc", machine, gb)); !rep.OK {
			b.Fatalf("refused: %+v", rep)
		}
		r.cloud.WaitUsage(g.id, r.devPub)
		if rss, _, _ := procStat(b, pid); rss > maxRSS {
			maxRSS = rss
		}
	}
	b.StopTimer()
	active := time.Since(start)
	_, cpu1, w1 := procStat(b, pid)
	idleFor := 10 * time.Second
	time.Sleep(idleFor)
	rss, cpu2, _ := procStat(b, pid)
	maxRSS = max(maxRSS, rss)
	b.ReportMetric(float64(maxRSS)/(1<<20), "maxRSS_MiB")
	b.ReportMetric(100*float64(cpu1-cpu0)/float64(active), "cpu%_selling")
	b.ReportMetric(100*float64(cpu2-cpu1)/float64(idleFor), "cpu%_idle")
	b.ReportMetric(float64(w1-w0)/float64(b.N)/1024, "KiB_written/session")
	b.ReportMetric(float64(b.N)/active.Seconds(), "sessions/s")
}
