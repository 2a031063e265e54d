package main_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
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
