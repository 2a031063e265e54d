package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, mqttapi.Message) error { return nil }

// stepUpCloud is the real cloud's phone API (service and HTTP layer on a
// SQLite store) in process; the sandbox card pays top-ups at once.
func stepUpCloud(t *testing.T) *httptest.Server {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: nopPublisher{}, CloudKey: key})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Options{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

// stepUpBearer is the bearer token of the account the runs share.
var stepUpBearer string

// runStepUpPhone runs the phone program against srv as one account (signed
// up by the first run), with stdin (nil: none).
func runStepUpPhone(t *testing.T, srv *httptest.Server, stdin io.Reader, args ...string) (*Main, string, error) {
	t.Helper()
	var out bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &out, Stdin: stdin}
	base := []string{"-api", srv.URL, "-token-file", "-"}
	if stepUpBearer == "" {
		base = append(base, "-email", "pin@test.example", "-password", "pin-password", "-signup")
	} else {
		base = append(base, "-token", stepUpBearer)
	}
	if err := m.ParseFlags(append(base, args...)); err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	err := m.Run(t.Context())
	m.Close()
	if stepUpBearer == "" && m.client != nil {
		stepUpBearer = m.client.Token()
	}
	return m, out.String(), err
}

func pinFile(t *testing.T, pin string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(p, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The phone program sets a PIN and thresholds (stepping up with the PIN
// for the thresholds), and a top-up above its threshold steps up on its
// own: with -pin-file, with the PIN typed, not at all without one, and
// not with a wrong one. A PIN change steps up with the current PIN.
func TestPhoneStepUp(t *testing.T) {
	srv := stepUpCloud(t)
	stepUpBearer = ""
	const pin, newPIN = "739146", "50281736"

	_, out, err := runStepUpPhone(t, srv, nil, "-set-pin", "-new-pin-file", pinFile(t, "1111"))
	if !errors.Is(err, ErrStepUp) || !strings.Contains(err.Error(), "step_up.pin_weak") {
		t.Fatalf("weak pin: %v\n%s", err, out)
	}
	m, out, err := runStepUpPhone(t, srv, nil, "-set-pin", "-new-pin-file", pinFile(t, pin), "-pin-file", pinFile(t, pin), "-step-up-topup", "5.00")
	if err != nil {
		t.Fatalf("set pin and threshold: %v\n%s", err, out)
	}
	if s := m.StepUpSettings; s == nil || !s.PINSet || s.TopUpAbove == nil || s.TopUpAbove.Minor != 500 || s.SessionCapAbove != nil {
		t.Fatalf("settings %+v\n%s", m.StepUpSettings, out)
	}
	if !strings.Contains(out, "top-ups above 5.00 EUR") {
		t.Fatalf("settings not shown:\n%s", out)
	}

	// Above the threshold without a PIN to give: refused, nothing paid.
	m, out, err = runStepUpPhone(t, srv, nil, "-topup", "20.00", "-topup-source", "card_sandbox", "-wallet")
	if !errors.Is(err, ErrStepUp) || !strings.Contains(err.Error(), "-pin-file") || m.Payment != nil {
		t.Fatalf("no pin: %v, payment %+v\n%s", err, m.Payment, out)
	}
	// A wrong PIN: refused with the guesses left, nothing paid.
	_, out, err = runStepUpPhone(t, srv, nil, "-pin-file", pinFile(t, "246813"), "-topup", "20.00", "-topup-source", "card_sandbox", "-wallet")
	if !errors.Is(err, ErrStepUp) || !strings.Contains(err.Error(), "4 of 5 guesses left") {
		t.Fatalf("wrong pin: %v\n%s", err, out)
	}
	// The PIN typed when asked.
	m, out, err = runStepUpPhone(t, srv, strings.NewReader(pin+"\n"), "-topup", "20.00", "-topup-source", "card_sandbox", "-wallet")
	if err != nil || m.WalletAfter == nil || m.WalletAfter.Available.Minor != 2000 {
		t.Fatalf("typed pin: %v, wallet %+v\n%s", err, m.WalletAfter, out)
	}
	if !strings.Contains(out, "step-up needed: a top-up of 20.00 EUR is above 5.00 EUR") {
		t.Fatalf("the phone did not say why it asks:\n%s", out)
	}
	// The PIN from a file; under the threshold nothing is asked.
	m, out, err = runStepUpPhone(t, srv, nil, "-pin-file", pinFile(t, pin), "-topup", "10.00", "-topup-source", "card_sandbox", "-wallet")
	if err != nil || m.WalletAfter.Available.Minor != 3000 {
		t.Fatalf("pin file: %v\n%s", err, out)
	}
	if m, out, err = runStepUpPhone(t, srv, nil, "-topup", "5.00", "-topup-source", "card_sandbox", "-wallet"); err != nil || m.WalletAfter.Available.Minor != 3500 {
		t.Fatalf("at the threshold: %v\n%s", err, out)
	}

	// A change of PIN steps up with the current one.
	if _, out, err = runStepUpPhone(t, srv, nil, "-set-pin", "-new-pin-file", pinFile(t, newPIN), "-pin-file", pinFile(t, pin)); err != nil {
		t.Fatalf("change pin: %v\n%s", err, out)
	}
	_, out, err = runStepUpPhone(t, srv, nil, "-pin-file", pinFile(t, pin), "-withdraw", "30.00", "-step-up-withdrawal", "off")
	if !errors.Is(err, ErrStepUp) || !strings.Contains(err.Error(), "step_up.wrong_pin") {
		t.Fatalf("old pin after the change: %v\n%s", err, out)
	}
	if vend.KindOf(err) != vend.Unauthorized || exitCode(err) != ExitError {
		t.Fatalf("exit %d for %v", exitCode(err), err)
	}
}
