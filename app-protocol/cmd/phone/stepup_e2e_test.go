package main

import (
	"errors"
	"strings"
	"testing"

	"beaconvend/app-protocol/vend"
)

// stepUpPurchase runs on the purchases rig (real cloud, controllers and
// boards as processes): the payer sets a PIN and a session threshold of
// 1.00 through the phone program; a 2.00 cap is refused while the phone
// has no PIN to give (nothing held, no session), and with -pin-file the
// phone steps up by itself and the session runs to its receipt.
func stepUpPurchase(t *testing.T, r *rig, with func(args ...string) []string) {
	pin := pinFile(t, "739146")
	m, out, err := r.phone(t, nil, with("-set-pin", "-new-pin-file", pin, "-pin-file", pin, "-step-up-session", "1.00")...)
	if err != nil || m.StepUpSettings == nil || m.StepUpSettings.SessionCapAbove == nil || m.StepUpSettings.SessionCapAbove.Minor != 100 {
		t.Fatalf("set pin and threshold: %v, %+v\n%s", err, m.StepUpSettings, out)
	}
	m, out, err = r.phone(t, nil, with("-device", "t-water", "-cap-amount", "2.00", "-stop-after-units", "500")...)
	if !errors.Is(err, ErrStepUp) || m.Session != nil || !strings.Contains(err.Error(), "session cap of 2.00 EUR is above 1.00 EUR") {
		t.Fatalf("without a pin: %v, session %+v\n%s", err, m.Session, out)
	}
	if w, err := m.wallet(t.Context()); err != nil || w.Held.Minor != 0 {
		t.Fatalf("held after the refusal: %+v, %v", w, err)
	}
	m, out, err = r.phone(t, nil, with("-pin-file", pin, "-device", "t-water", "-cap-amount", "2.00", "-stop-after-units", "500", "-json-receipt")...)
	if err != nil {
		t.Fatalf("with the pin: %v\n%s", err, out)
	}
	if rc := checkReceipt(t, m); rc.Held.Minor != 200 || rc.Outcome != vend.OutcomeUserStop {
		t.Errorf("receipt %+v: want a user stop of a 2.00 hold\n%s", rc, out)
	}
}
