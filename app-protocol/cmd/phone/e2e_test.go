package main

import (
	"errors"
	"os"
	"regexp"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/hw/emu"
)

// checkReceipt checks a receipt's money against the session and the
// wallet: captured is units × price rounded down, held = captured +
// released, and the wallet went down by exactly the captured amount.
func checkReceipt(t *testing.T, m *Main) *phoneapi.Receipt {
	t.Helper()
	r := m.Receipt
	if r == nil {
		t.Fatal("no receipt")
	}
	if err := r.Validate(); err != nil {
		t.Errorf("receipt %+v: %v", r, err)
	}
	cost, err := r.Price.Cost(r.Units)
	if err != nil || r.Captured.Minor != cost {
		t.Errorf("captured %s for %d %s at %+v, want %d (%v)", r.Captured, r.Units, r.Unit, r.Price, cost, err)
	}
	if r.Held.Minor != r.Captured.Minor+r.Released.Minor {
		t.Errorf("held %s != captured %s + released %s", r.Held, r.Captured, r.Released)
	}
	if got := m.WalletBefore.Available.Minor - m.WalletAfter.Available.Minor; got != r.Captured.Minor {
		t.Errorf("wallet went down by %d, captured %s", got, r.Captured)
	}
	if m.WalletAfter.Held.Minor != 0 {
		t.Errorf("wallet still holds %s after the receipt", m.WalletAfter.Held)
	}
	if r.Session != m.Session.ID {
		t.Errorf("receipt for session %s, started %s", r.Session, m.Session.ID)
	}
	return r
}

// progressed matches a progress line with some units metered.
var progressed = regexp.MustCompile(`\]\s+\d+%\s+[1-9]\d*/`)

// TestPurchases runs the real programs (cloud, controllers, hwsim) as
// processes over real ptys and the simulated air, once with the cloud's
// embedded broker and once with Mosquitto on the ACL `cloud device add`
// wrote, and buys from each kind of machine through the phone client.
func TestPurchases(t *testing.T) {
	for _, b := range []string{"embedded", "mosquitto"} {
		t.Run(b, func(t *testing.T) { purchases(t, b) })
	}
}

func purchases(t *testing.T, brokerKind string) {
	r := newRig(t, brokerKind)
	user := []string{"-email", "alice@test.example", "-password", "alice-password"}
	with := func(args ...string) []string { return append(append([]string{}, user...), args...) }

	if m, out, err := r.phone(t, nil, with("-signup", "-topup", "20.00", "-wallet")...); err != nil || m.WalletAfter.Available.Minor != 2000 {
		t.Fatalf("sign-up and top-up: %v, wallet %+v\n%s", err, m.WalletAfter, out)
	}

	t.Run("water stopped after units", func(t *testing.T) {
		m, out, err := r.phone(t, nil, with("-device", "t-water", "-cap-amount", "2.00", "-stop-after-units", "1000", "-json-receipt")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		rc := checkReceipt(t, m)
		if rc.Outcome != vend.OutcomeUserStop || rc.Units < 1000 || rc.Units >= 4019 || rc.Held.Minor != 200 || rc.Released.Minor <= 0 {
			t.Errorf("receipt %+v: want user_stop after 1000-4018 ml of a 2.00 hold, the rest released\n%s", rc, out)
		}
	})

	t.Run("water busy then Ctrl-C", func(t *testing.T) {
		sig := make(chan os.Signal, 1)
		type result struct {
			m   *Main
			out *syncBuffer
			err error
		}
		done := make(chan result, 1)
		started := make(chan *syncBuffer, 1)
		go func() {
			m, out, err := r.phoneWith(t, sig, started, with("-device", "t-water", "-cap-amount", "3.00")...)
			done <- result{m, out, err}
		}()
		aOut := <-started
		aOut.waitMatch(t, progressed, 30*time.Second)

		// A second phone on the same tap: the cloud refuses, exit status 4.
		_, bOut, err := r.phone(t, nil, with("-device", "t-water", "-cap-units", "500")...)
		if !errors.Is(err, ErrMachineBusy) || exitCode(err) != ExitMachine {
			t.Errorf("second session: err %v (exit %d), want machine busy (exit %d)\n%s", err, exitCode(err), ExitMachine, bOut)
		}

		sig <- os.Interrupt // Ctrl-C: StopSession
		res := <-done
		if res.err != nil {
			t.Fatalf("%v\n%s", res.err, res.out)
		}
		rc := checkReceipt(t, res.m)
		if rc.Outcome != vend.OutcomeUserStop || rc.Units == 0 || rc.Held.Minor != 300 || rc.Released.Minor <= 0 {
			t.Errorf("receipt %+v: want a user stop with some water and the rest of 3.00 released\n%s", rc, res.out)
		}
	})

	t.Run("laundry cycle", func(t *testing.T) {
		m, out, err := r.phone(t, nil, with("-device", "t-laundry", "-machine", "washer2")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		rc := checkReceipt(t, m)
		if rc.Outcome != vend.OutcomeCompleted || rc.Units != 1 || rc.Captured.Minor != rc.Held.Minor || rc.Released.Minor != 0 {
			t.Errorf("receipt %+v: want one completed cycle, charged in full\n%s", rc, out)
		}
	})

	t.Run("vend", func(t *testing.T) {
		m, out, err := r.phone(t, nil, with("-device", "t-vending", "-slot", "A1")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		rc := checkReceipt(t, m)
		if rc.Outcome != vend.OutcomeCompleted || rc.Units != 1 || rc.Captured.Minor != 150 || rc.Released.Minor != 0 || rc.Slot != "A1" {
			t.Errorf("receipt %+v: want one item from A1 for 1.50\n%s", rc, out)
		}
	})

	t.Run("jammed vend refunded", func(t *testing.T) {
		c, err := emu.Dial(r.Sock["vending"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Jam("snacks", "B5", true); err != nil {
			t.Fatal(err)
		}
		m, out, err := r.phone(t, nil, with("-pick-nearest", "-machine", "vm1", "-slot", "B5")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		rc := checkReceipt(t, m)
		if m.Session.State != phoneapi.StateRefunded || rc.Outcome != vend.OutcomeVendFailed || rc.Units != 0 ||
			rc.Captured.Minor != 0 || rc.Held.Minor != 140 || rc.Released.Minor != 140 {
			t.Errorf("session %s, receipt %+v: want refunded vend_failed, 1.40 held and released\n%s", m.Session.State, rc, out)
		}
	})

	t.Run("not enough money", func(t *testing.T) {
		_, out, err := r.phone(t, nil, "-email", "bob@test.example", "-password", "bob-password", "-signup", "-token-file", "-",
			"-device", "t-vending", "-slot", "A1")
		if !errors.Is(err, ErrFunds) || exitCode(err) != ExitFunds {
			t.Errorf("err %v (exit %d), want not enough money (exit %d)\n%s", err, exitCode(err), ExitFunds, out)
		}
	})

	t.Run("step-up PIN", func(t *testing.T) { stepUpPurchase(t, r, with) })

	t.Run("no machine in range", func(t *testing.T) {
		_, out, err := r.phone(t, nil, with("-air", "239.255.3.3:3333", "-scan", "500ms", "-pick-nearest")...)
		if !errors.Is(err, ErrNoMachine) || exitCode(err) != ExitNoMachine {
			t.Errorf("err %v (exit %d), want no machine (exit %d)\n%s", err, exitCode(err), ExitNoMachine, out)
		}
	})
}
