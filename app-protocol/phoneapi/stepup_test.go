package phoneapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// The step-up operations join the example-server test's calls.
func init() {
	calls["SetPIN"] = func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return nil, c.SetPIN(ctx, &phoneapi.SetPINRequest{PIN: "4821"})
	}
	calls["GetStepUpSettings"] = func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.GetStepUpSettings(ctx)
	}
	calls["SetStepUpThresholds"] = func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.SetStepUpThresholds(phoneapi.WithStepUpToken(ctx, "su_x"), &phoneapi.StepUpThresholds{
			SessionCapAbove: &vend.Amount{Minor: 500, Currency: "EUR"}, TopUpAbove: &vend.Amount{Minor: 2000, Currency: "EUR"}})
	}
	calls["StepUp"] = func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: "4821", Scope: phoneapi.ScopeSession})
	}
}

// A context's step-up token rides on every request made with it as
// X-Step-Up-Token, and only then; the 403 and 429 step-up answers decode
// to their codes with Retry-After.
func TestStepUpHeaderAndErrors(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get(phoneapi.StepUpHeader))
		switch r.URL.Path {
		case "/v1/auth/step-up":
			w.Header().Set("Retry-After", "600")
			w.WriteHeader(429)
			w.Write([]byte(`{"error":{"kind":"transient","code":"step_up.locked","message":"stepup: too many wrong pins"}}`))
		default:
			w.WriteHeader(403)
			w.Write([]byte(`{"error":{"kind":"unauthorized","code":"step_up.required","message":"stepup: this needs a step-up token"}}`))
		}
	}))
	defer srv.Close()
	c := phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken})
	req := &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 5000, Currency: "EUR"}, Source: "card_sandbox"}
	_, err := c.TopUp(t.Context(), "key-12345", req)
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != "step_up.required" || vend.KindOf(err) != vend.Unauthorized {
		t.Fatalf("TopUp = %v, want 403 step_up.required", err)
	}
	if h := got.Load().(string); h != "" {
		t.Fatalf("a request without a step-up token sent X-Step-Up-Token %q", h)
	}
	_, _ = c.TopUp(phoneapi.WithStepUpToken(t.Context(), "su_abc"), "key-12345", req)
	if h := got.Load().(string); h != "su_abc" {
		t.Fatalf("X-Step-Up-Token = %q, want su_abc", h)
	}
	_, err = c.StepUp(t.Context(), &phoneapi.StepUpRequest{PIN: "4821"})
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "step_up.locked" || ae.RetryAfter.Seconds() != 600 {
		t.Fatalf("StepUp = %v (%+v), want 429 step_up.locked after 600 s", err, ae)
	}
}

// Bad PINs and scopes are refused before anything is sent, naming the field.
func TestStepUpRequestsValidated(t *testing.T) {
	var sent atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { sent.Store(true) }))
	defer srv.Close()
	c := phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken})
	ctx := t.Context()
	for _, tt := range []struct {
		name, field string
		run         func() error
	}{
		{"letters", "pin", func() error { return c.SetPIN(ctx, &phoneapi.SetPINRequest{PIN: "12a4"}) }},
		{"too long", "pin", func() error { return c.SetPIN(ctx, &phoneapi.SetPINRequest{PIN: "123456789"}) }},
		{"too short", "pin", func() error { _, err := c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: "123"}); return err }},
		{"current", "current_pin", func() error {
			return c.SetPIN(ctx, &phoneapi.SetPINRequest{PIN: "4821", CurrentPIN: "12 34"})
		}},
		{"scope", "scope", func() error {
			_, err := c.StepUp(ctx, &phoneapi.StepUpRequest{PIN: "4821", Scope: "everything"})
			return err
		}},
		{"negative", "top_up_above.minor", func() error {
			_, err := c.SetStepUpThresholds(ctx, &phoneapi.StepUpThresholds{TopUpAbove: &vend.Amount{Minor: -1, Currency: "EUR"}})
			return err
		}},
	} {
		err := tt.run()
		if !errors.Is(err, phoneapi.ErrField) || !strings.Contains(err.Error(), "field: "+tt.field+":") {
			t.Errorf("%s: %v, want a request.field error naming %s", tt.name, err, tt.field)
		}
	}
	if sent.Load() {
		t.Error("an invalid request reached the server")
	}
}
