package main

import (
	"errors"
	"strings"
	"testing"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/hw/ble"
)

// Every refusal a board answers with (gattapi.ATTCodes) reads as words
// and names its code; the money sentence depends on how far the relay got.
func TestRefusalText(t *testing.T) {
	for code, att := range gattapi.ATTCodes {
		re := &ble.RefusedError{Op: "grant", ATT: att, Code: ble.ATTCodeName(att)}
		if re.Code != code {
			t.Errorf("ATTCodeName(0x%02X) = %q, want %q", att, re.Code, code)
		}
		got := refusalText(re)
		if !strings.HasPrefix(got, "the board refused the grant: ") || !strings.HasSuffix(got, "("+code+")") || strings.Contains(got, "the board refused it") {
			t.Errorf("refusalText(%s) = %q: want words and the code", code, got)
		}
	}
	for _, tc := range []struct {
		code, want string
	}{
		{"grant.replayed", "never runs a grant twice"},
		{"relay.nonce_reused", "already used this relay ticket"},
		{"grant.expired", "expired before the board took it"},
		{"grant.device", "different machine than the one paid for"},
		{"claim.open", "not sealed to this board's key"},
		{"gatt.chunk", "could not read what the phone wrote"},
	} {
		re := &ble.RefusedError{Op: "grant", ATT: gattapi.ATTCodes[tc.code], Code: tc.code}
		if got := refusalText(re); !strings.Contains(got, tc.want) {
			t.Errorf("refusalText(%s) = %q, want it to say %q", tc.code, got, tc.want)
		}
		if vend.CodeOf(re) != tc.code || vend.KindOf(re) != vend.Conflict {
			t.Errorf("%s: CodeOf %q KindOf %q", tc.code, vend.CodeOf(re), vend.KindOf(re))
		}
	}
	if got := refusalText(&ble.RefusedError{Op: "ack", ATT: 0x9E, Code: ble.ATTCodeName(0x9E)}); !strings.Contains(got, "att.0x9e") {
		t.Errorf("unknown code: %q", got)
	}
	if got := refusalText(errors.New("radio gone")); got != "radio gone" {
		t.Errorf("plain error: %q", got)
	}

	m := &Main{}
	s := &phoneapi.Session{ID: vend.NewSessionID(), Hold: vend.Amount{Minor: 50, Currency: "EUR"}}
	err := m.relayFailed(s, "grant", &ble.RefusedError{Op: "grant", ATT: 0x8D, Code: "grant.replayed"})
	if !errors.Is(err, ErrRelay) || exitCode(err) != ExitMachine || !strings.Contains(err.Error(), "0.50 EUR stays held") || !strings.Contains(oneLine(err), "grant.replayed") {
		t.Errorf("relayFailed(grant) = %v (exit %d)", err, exitCode(err))
	}
	err = m.relayFailed(s, "progress", vend.Errorf(ble.ErrDisconnected, "mid-session"))
	if !strings.Contains(err.Error(), "the board disconnected") || !strings.Contains(err.Error(), "charged only what the board's signed report says") {
		t.Errorf("relayFailed(progress) = %v", err)
	}
	if exitCode(vend.Errorf(ErrNoCentral, "x")) != ExitMachine {
		t.Error("no central: want exit status machine")
	}
}
