package main_test

import (
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/controller/internal/testrig"
)

// A power cut after the first coin pulse and before the washer is seen
// running, with a board that does not answer at the restart: the credit
// may be in the washer and cannot be completed, so the recovered session
// is billed (one cycle, outcome interrupted), never refunded as not
// started. (With a board that answers, the credit is completed instead:
// TestKillInCoinPulseTrainCompletesTheCredit.)
func TestPowerCutAfterFirstCoinPulseBills(t *testing.T) {
	r := newProcRig(t)
	r.start()
	g, gb := r.cloud.Grant("dev-pc", "w1", "", vend.UnitCycle, vend.Price{Minor: 350, Per: 1}, 1, time.Minute)
	r.cloud.Authorize("dev-pc", "w1", gb)
	testrig.Eventually(t, "first coin pulse", func() bool { return r.washer().CoinPulses >= 1 })
	r.kill()
	w := r.washer()
	t.Logf("killed with %d coin pulses given, credit %d banked, %d cycles started", w.CoinPulses, w.Credit, w.CyclesStarted)
	if err := r.ctl.NoReplyProbability(1); err != nil {
		t.Fatal(err)
	}
	r.start()
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	if err := r.ctl.ClearFaults(); err != nil {
		t.Fatal(err)
	}
	if u.Units != 1 || u.Amount != 350 {
		t.Errorf("recovered session after a coin pulse: %+v, want 1 cycle billed (350)", u)
	}
	if u.Outcome != vend.OutcomeInterrupted {
		t.Errorf("outcome %s, want interrupted", u.Outcome)
	}
}

func (r *procRig) washer() (w struct{ CoinPulses, Credit, CyclesStarted int }) {
	for _, m := range r.status().Machines {
		if m.Washer != nil {
			w.CoinPulses, w.Credit, w.CyclesStarted = m.Washer.CoinPulses, m.Washer.Credit, m.Washer.CyclesStarted
		}
	}
	return w
}
