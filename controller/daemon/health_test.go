package daemon_test

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// makeReadOnly turns the open journal file of this process read-only, as
// flash remounted read-only would: the descriptor bbolt writes through is
// replaced by a read-only one on the same file.
func makeReadOnly(t *testing.T, path string) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(path)
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || target != want {
			continue
		}
		ro, err := syscall.Open(path, syscall.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		var fd int
		for _, c := range e.Name() {
			fd = fd*10 + int(c-'0')
		}
		if err := syscall.Dup2(ro, fd); err != nil {
			t.Fatal(err)
		}
		syscall.Close(ro)
		n++
	}
	if n == 0 {
		t.Fatalf("journal %s is not open", path)
	}
}

// A journal that cannot write while water pours is a board fault: the
// valve closes at once (not at the cap), a fault event reaches the cloud,
// the machine shows fault and refuses the next start.
func TestJournalWriteFailureIsBoardFault(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	price := vend.Price{Minor: 50, Per: 1000}
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, price, 100_000, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
		t.Fatal(rep)
	}
	// More than a metering interval of flow, so a reading is committed.
	eventually(t, "water to flow", func() bool { return r.status().Machines[0].Water.DeliveredML > 350 })
	makeReadOnly(t, filepath.Join(r.dir, "journal.db"))
	failedAt := time.Now()
	eventually(t, "valve closed", func() bool { return !r.status().Coils["out1"] })
	if took := time.Since(failedAt); took > 5*time.Second {
		t.Errorf("valve closed %s after the journal failed", took)
	}
	eventually(t, "fault event", func() bool {
		r.cloud.Mu.Lock()
		defer r.cloud.Mu.Unlock()
		for _, e := range r.cloud.Events {
			if e.Kind == mqttapi.EventFault {
				return true
			}
		}
		return false
	})
	eventually(t, "fault telemetry", func() bool {
		tm, _ := r.cloud.LastTelemetry()
		return tm != nil && len(tm.Machines) == 1 && tm.Machines[0].State == mqttapi.MachineFault
	})
	_, gb2 := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, price, 100, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb2)); rep.OK || rep.Code != mqttapi.CodeMachineFault {
		t.Errorf("start on a board whose journal cannot write: %+v", rep)
	}
	time.Sleep(500 * time.Millisecond)
	if r.status().Coils["out1"] {
		t.Error("valve open again")
	}
	// The flash is writable again after a restart: the session is finished
	// from its last committed reading and reported, never above the truth.
	r.stopDaemon()
	r.startDaemon()
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	if w := r.status().Machines[0].Water; u.Units == 0 || u.Units > uint64(w.DeliveredML) {
		t.Errorf("report after the journal fault: %+v, %d ml delivered", u, w.DeliveredML)
	}
}

// Board state changes are published as telemetry at once, not with the
// next periodic one: the first telemetry after a (re)start, a board fault
// and its recovery.
func TestStateChangesPublishedAtOnce(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.setConfig("telemetry_interval: 1s", "telemetry_interval: 1h")
	r.startDaemon()
	eventually(t, "telemetry at start", func() bool { tm, _ := r.cloud.LastTelemetry(); return tm != nil })
	if err := r.ctl.NoReply(1_000_000); err != nil {
		t.Fatal(err)
	}
	eventually(t, "fault telemetry", func() bool {
		tm, _ := r.cloud.LastTelemetry()
		return tm.Board.Status == "fault" && tm.Machines[0].State == mqttapi.MachineFault
	})
	// Restarted while the board is still in fault, then the board recovers.
	r.stopDaemon()
	if err := r.ctl.ClearFaults(); err != nil {
		t.Fatal(err)
	}
	_, before := r.cloud.LastTelemetry()
	r.startDaemon()
	eventually(t, "telemetry after restart", func() bool { _, n := r.cloud.LastTelemetry(); return n > before })
	r.cloud.Mu.Lock()
	first := r.cloud.Telemetry[before]
	r.cloud.Mu.Unlock()
	if first.Board.Status != "ok" || first.Machines[0].State != mqttapi.MachineIdle {
		t.Errorf("first telemetry after a restart on a healthy board: board %+v machine %+v", first.Board, first.Machines[0])
	}
}

// A jammed vending slot is listed in telemetry at once and refused; a
// successful output test of its motor clears it.
func TestJammedSlotListedUntilCleared(t *testing.T) {
	r := newRig(t, "generic-relay-16", vendingSim, vendingCfg)
	r.setConfig("telemetry_interval: 1s", "telemetry_interval: 1h")
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "vm", "A2", vend.UnitItem, vend.Price{Minor: 120, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "vm", gb)); !rep.OK {
		t.Fatal(rep)
	}
	if u := r.cloud.WaitUsage(g.Session, r.devPub); u.Outcome != vend.OutcomeVendFailed {
		t.Fatalf("jammed slot: %+v", u)
	}
	eventually(t, "jam in telemetry", func() bool {
		tm, _ := r.cloud.LastTelemetry()
		return tm != nil && slices.Equal(tm.Machines[0].Jammed, []string{"A2"})
	})
	_, gb2 := r.cloud.Grant("dev-1", "vm", "A2", vend.UnitItem, vend.Price{Minor: 120, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "vm", gb2)); rep.OK || rep.Code != mqttapi.CodeMachineFault {
		t.Errorf("start on a jammed slot: %+v", rep)
	}
	// The other slot still sells.
	g3, gb3 := r.cloud.Grant("dev-1", "vm", "A1", vend.UnitItem, vend.Price{Minor: 150, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "vm", gb3)); !rep.OK {
		t.Fatalf("start on a good slot: %+v", rep)
	}
	r.cloud.WaitUsage(g3.Session, r.devPub)
	// A technician frees the spiral and runs the motor once.
	if err := r.ctl.Jam("vm", "A2", false); err != nil {
		t.Fatal(err)
	}
	if rep := r.cloud.WaitReply(r.cloud.Send("dev-1", &mqttapi.TestOutput{Envelope: mqttapi.NewEnvelope(time.Now()), Machine: "vm", Output: "relay2", DurationMS: 100})); !rep.OK {
		t.Fatal(rep)
	}
	eventually(t, "jam cleared in telemetry", func() bool {
		tm, _ := r.cloud.LastTelemetry()
		return len(tm.Machines[0].Jammed) == 0
	})
}
