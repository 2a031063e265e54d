package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/service"
)

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantAPI(t *testing.T, what string, err error, status int, code string) *phoneapi.APIError {
	t.Helper()
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code {
		t.Fatalf("%s: %v, want %d %s", what, err, status, code)
	}
	return ae
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Through the HTTP API and the Go client, every answer checked against
// openapi.yaml: a cap above the payer's threshold is refused with 403
// step_up.required (not stored under the Idempotency-Key), and the same
// request with a step-up token is accepted; another user's, a spent and
// an expired token are 403 step_up.invalid; bad PINs are clear 400s; the
// PIN is neither logged nor stored in clear.
func TestStepUpOverHTTP(t *testing.T) {
	var logs syncBuffer
	e := newAPIEnv(t, func(o *httpapi.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	const pin = "739146"
	c, other := e.phone(), e.phone()
	ctx := e.ctx

	wantAPI(t, "weak pin", c.SetPIN(ctx, &phoneapi.SetPINRequest{PIN: "1111"}), 400, "step_up.pin_weak")
	for body, field := range map[string]string{`{"pin":"12a4"}`: "pin", `{"pin":"123456789"}`: "pin", `{"pin":4821}`: "pin",
		`{"pin":"4821","current_pin":"x"}`: "current_pin"} {
		req, _ := http.NewRequest("PUT", e.url+"/v1/me/pin", strings.NewReader(body))
		resp := e.do(req, c.Token())
		ae := phoneapi.DecodeError(resp.StatusCode, readAll(t, resp))
		if ae.Status != 400 || ae.Code != "request.field" || !strings.Contains(ae.Message, field) {
			t.Errorf("PUT /v1/me/pin %s = %d %s %q, want 400 request.field naming %s", body, ae.Status, ae.Code, ae.Message, field)
		}
	}
	if err := c.SetPIN(ctx, &phoneapi.SetPINRequest{PIN: pin}); err != nil {
		t.Fatal(err)
	}
	wantAPI(t, "change without proof", c.SetPIN(ctx, &phoneapi.SetPINRequest{PIN: "502817"}), 403, "step_up.required")
	_, err := c.SetStepUpThresholds(ctx, &phoneapi.StepUpThresholds{SessionCapAbove: &vend.Amount{Minor: 50, Currency: "EUR"}})
	wantAPI(t, "thresholds without a token", err, 403, "step_up.required")
	_, err = c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: "502817"})
	if ae := wantAPI(t, "wrong pin", err, 403, "step_up.wrong_pin"); !strings.Contains(ae.Message, "4 of 5 guesses left") {
		t.Fatalf("wrong pin message %q", ae.Message)
	}
	tok, err := c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: pin, Scope: phoneapi.ScopeSettings})
	if err != nil || !tok.ExpiresAt.Equal(e.clock().Add(service.DefaultStepUpTTL).Truncate(time.Millisecond)) {
		t.Fatalf("StepUp = %+v, %v", tok, err)
	}
	set, err := c.SetStepUpThresholds(phoneapi.WithStepUpToken(ctx, tok.Token), &phoneapi.StepUpThresholds{SessionCapAbove: &vend.Amount{Minor: 50, Currency: "EUR"}})
	if err != nil || !set.PINSet || set.SessionCapAbove.Minor != 50 {
		t.Fatalf("SetStepUpThresholds = %+v, %v", set, err)
	}
	if got, err := c.GetStepUpSettings(ctx); err != nil || got.SessionCapAbove == nil || got.TokenTTLSeconds != 300 {
		t.Fatalf("GetStepUpSettings = %+v, %v", got, err)
	}

	start := func(ctx context.Context, key string, machine, slot phoneapi.MachineID, units uint64) error {
		_, err := c.StartSession(ctx, key, &phoneapi.StartSessionRequest{Device: "wd-1", Machine: machine, Slot: slot, Cap: phoneapi.Cap{Units: units},
			Source: "wallet", ProximityID: e.proximityID(0)})
		return err
	}
	key := phoneapi.NewIdempotencyKey()
	wantAPI(t, "cap above the threshold", start(ctx, key, "tap1", "", 2000), 403, "step_up.required")
	if w, _ := c.GetWallet(ctx); w.Held.Minor != 0 {
		t.Fatalf("held %d after a refusal", w.Held.Minor)
	}
	if err := other.SetPIN(ctx, &phoneapi.SetPINRequest{PIN: "840361"}); err != nil {
		t.Fatal(err)
	}
	otherTok, err := other.StepUp(ctx, &phoneapi.StepUpRequest{PIN: "840361"})
	if err != nil {
		t.Fatal(err)
	}
	wantAPI(t, "another user's token", start(phoneapi.WithStepUpToken(ctx, otherTok.Token), key, "tap1", "", 2000), 403, "step_up.invalid")

	// The same request (same key) with a token goes through: the hold is
	// placed (the test device never answers, so the session is pending).
	tok, err = c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: pin, Scope: phoneapi.ScopeSession})
	if err != nil {
		t.Fatal(err)
	}
	sctx := phoneapi.WithStepUpToken(ctx, tok.Token)
	ae := wantAPI(t, "with a token", start(sctx, key, "tap1", "", 2000), 503, "device.no_reply")
	if ae.Session == nil || ae.Session.Hold.Minor != 100 {
		t.Fatalf("accepted start: %+v", ae)
	}
	wantAPI(t, "spent token", start(sctx, phoneapi.NewIdempotencyKey(), "vm1", "A1", 1), 403, "step_up.invalid")
	tok, err = c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: pin})
	if err != nil {
		t.Fatal(err)
	}
	e.advance(service.DefaultStepUpTTL)
	wantAPI(t, "expired token", start(phoneapi.WithStepUpToken(ctx, tok.Token), phoneapi.NewIdempotencyKey(), "vm1", "A1", 1), 403, "step_up.invalid")

	// Lock-out: the fifth wrong PIN locks, with Retry-After to the window's end.
	for i := 1; i <= 4; i++ {
		_, err := c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: "502817"})
		wantAPI(t, "wrong pin "+strconv.Itoa(i), err, 403, "step_up.wrong_pin")
	}
	_, err = c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: "502817"})
	if ae := wantAPI(t, "fifth wrong pin", err, 429, "step_up.locked"); ae.RetryAfter < 14*time.Minute || ae.RetryAfter > 16*time.Minute {
		t.Fatalf("Retry-After %v, want about 15 min", ae.RetryAfter)
	}
	_, err = c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: pin})
	wantAPI(t, "right pin while locked", err, 429, "step_up.locked")

	var h string
	if err := e.st.DB().QueryRowContext(ctx, `SELECT pin_hash FROM step_up_pins LIMIT 1`).Scan(&h); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, pin) || !strings.HasPrefix(h, "$2") {
		t.Fatalf("stored pin %q", h)
	}
	if strings.Contains(logs.String(), pin) || strings.Contains(logs.String(), "502817") {
		t.Fatalf("a pin reached the log:\n%s", logs.String())
	}
}
