package main_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// Two reboot commands (the cloud retries, or an operator presses twice)
// restart the controller once, cleanly: exit status ExitReboot, no panic.
func TestTwoRebootCommands(t *testing.T) {
	r := newProcRig(t)
	r.start()
	proc := r.proc
	a := r.cloud.Send("dev-pc", &mqttapi.Reboot{Envelope: mqttapi.NewEnvelope(time.Now()), DelayS: 1})
	b := r.cloud.Send("dev-pc", &mqttapi.Reboot{Envelope: mqttapi.NewEnvelope(time.Now()), DelayS: 1})
	for _, id := range []string{a, b} {
		if rep := r.cloud.WaitReply(id); !rep.OK {
			t.Fatalf("reboot %s: %+v", id, rep)
		}
	}
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("controller did not exit after two reboot commands")
	}
	r.proc = nil
	code := proc.ProcessState.ExitCode()
	log, _ := os.ReadFile(r.logf.Name())
	if strings.Contains(string(log), "panic:") {
		t.Errorf("controller panicked:\n%s", tail(log))
	}
	if code != exitReboot {
		t.Errorf("exit status %d, want %d (reboot)", code, exitReboot)
	}
}

// exitReboot is the program's ExitReboot.
const exitReboot = 75

func tail(b []byte) []byte {
	if len(b) > 3000 {
		return b[len(b)-3000:]
	}
	return b
}

// -clock-skew (tests only) runs the controller with its clock 10 minutes
// off; it still accepts a fresh 20-second grant (judged by the cloud's
// clock, estimated from Acks) and reports the session.
func TestClockSkewFlag(t *testing.T) {
	r := newProcRig(t)
	r.args = []string{"-clock-skew", "10m"}
	r.start()
	time.Sleep(time.Second) // the start-up probe's Ack
	g, gb := r.cloud.Grant("dev-pc", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 150, 20*time.Second)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-pc", "m1", gb)); !rep.OK {
		t.Fatalf("fresh grant on a controller 10 min ahead: %+v", rep)
	}
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	if u.Units != 150 {
		t.Errorf("usage %+v", u)
	}
	if d := u.EndedAt.Sub(time.Now()); d < 9*time.Minute {
		t.Errorf("report stamped %s from now; want the skewed clock (10 min ahead)", d)
	}
}
