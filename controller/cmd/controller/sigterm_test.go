package main_test

import (
	"syscall"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
)

// SIGTERM mid-pour: the valve closes, the session is reported as
// interrupted with what was metered, and the process exits promptly.
func TestSIGTERMStopsSafely(t *testing.T) {
	r := newProcRig(t)
	r.start()
	g, gb := r.cloud.Grant("dev-pc", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 100_000, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-pc", "m1", gb)); !rep.OK {
		t.Fatal(rep)
	}
	time.Sleep(700 * time.Millisecond)
	start := time.Now()
	r.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("controller still running 15 s after SIGTERM")
	}
	took := time.Since(start)
	r.proc = nil
	if r.status().Coils["out1"] {
		t.Error("valve open after SIGTERM")
	}
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	if u.Outcome != vend.OutcomeInterrupted || u.Units == 0 {
		t.Errorf("usage after SIGTERM: %+v", u)
	}
	t.Logf("exited %s after SIGTERM; reported %d ml", took.Round(time.Millisecond), u.Units)
	if took > 5*time.Second {
		t.Errorf("took %s to stop", took)
	}
}
