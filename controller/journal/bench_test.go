package journal_test

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

// wchar returns the bytes this process has passed to write(2)/pwrite(2)
// so far (Linux /proc/self/io), or -1 when unknown.
func wchar() int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// BenchmarkSession runs one complete 60-second session per iteration as the
// controller would with the default 1 s metering interval: accept, start,
// a reading every 100 ms (600 Meter calls, 60 meter commits), end, report,
// ack. It reports commits and bytes written per session and commits per
// second of wall time.
func BenchmarkSession(b *testing.B) {
	clk := newClock()
	j := mustOpen(b, "", &journal.Opts{Now: clk.Now})
	w0 := wchar()
	c0 := j.Stats().Commits
	start := time.Now()
	for b.Loop() {
		id := mustStart(b, j, "m1", clk.Now(), 0)
		for k := uint64(1); k <= 600; k++ {
			clk.Advance(100 * time.Millisecond)
			if err := j.Meter(id, k*17, k*17); err != nil {
				b.Fatal(err)
			}
		}
		if err := j.Transition(id, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeUserStop }); err != nil {
			b.Fatal(err)
		}
		s, err := j.EndSession(id, signer)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := j.Ack(s.UsageMsgID); err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start)
	commits := float64(j.Stats().Commits - c0)
	b.ReportMetric(commits/float64(b.N), "commits/session")
	b.ReportMetric(commits/el.Seconds(), "commits/s")
	if w0 >= 0 {
		b.ReportMetric(float64(wchar()-w0)/float64(b.N), "B-written/session")
	}
}

// BenchmarkMeterCommit measures raw commit throughput: every Meter call
// commits one reading with an fsync.
func BenchmarkMeterCommit(b *testing.B) {
	j := mustOpen(b, "", &journal.Opts{MeterInterval: -1})
	id := mustStart(b, j, "m1", time.Now(), 0)
	w0 := wchar()
	var k uint64
	start := time.Now()
	for b.Loop() {
		k++
		if err := j.Meter(id, k, k); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
	if w0 >= 0 {
		b.ReportMetric(float64(wchar()-w0)/float64(b.N), "B-written/commit")
	}
}
