package phoneapi

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// StepUpHeader is the request header that carries a step-up token (from
// StepUp) on a call that needs one.
const StepUpHeader = "X-Step-Up-Token"

// Step-up PIN bounds: 4-8 ASCII digits.
const (
	MinPINLen = 4
	MaxPINLen = 8
)

// SetPINRequest sets or changes the payer's step-up PIN (schema
// SetPINRequest). A first PIN needs only the bearer token; a change needs
// CurrentPIN or a step-up token (header X-Step-Up-Token). Weak PINs (one
// digit repeated, a run such as 1234, a repeated pair such as 1212) are
// refused with step_up.pin_weak.
type SetPINRequest struct {
	PIN        string `json:"pin"`
	CurrentPIN string `json:"current_pin,omitempty"`
}

// Validate returns an error of kind invalid naming the bad field: a PIN
// is 4-8 ASCII digits.
func (r *SetPINRequest) Validate() error {
	if err := validatePIN(r.PIN); err != nil {
		return prefix("pin", err)
	}
	if r.CurrentPIN != "" {
		if err := validatePIN(r.CurrentPIN); err != nil {
			return prefix("current_pin", err)
		}
	}
	return nil
}

func validatePIN(p string) error {
	if len(p) < MinPINLen || len(p) > MaxPINLen {
		return fmt.Errorf("want %d-%d digits, have %d characters", MinPINLen, MaxPINLen, len(p))
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return fmt.Errorf("character %d is not a digit 0-9", i+1)
		}
	}
	return nil
}

// StepUpThresholds are the payer's own step-up thresholds (schema
// StepUpThresholds), in the wallet currency: a session or checkout cap,
// a top-up or a withdrawal above its threshold needs a step-up token.
// null: no step-up by the payer's choice (the operator's limits still
// apply). PUT replaces all three.
type StepUpThresholds struct {
	SessionCapAbove *Amount `json:"session_cap_above,omitempty"`
	TopUpAbove      *Amount `json:"top_up_above,omitempty"`
	WithdrawalAbove *Amount `json:"withdrawal_above,omitempty"`
}

// Validate returns an error of kind invalid naming the bad field.
func (r *StepUpThresholds) Validate() error {
	for _, f := range []struct {
		name string
		a    *Amount
	}{{"session_cap_above", r.SessionCapAbove}, {"top_up_above", r.TopUpAbove}, {"withdrawal_above", r.WithdrawalAbove}} {
		if f.a == nil {
			continue
		}
		if err := f.a.Currency.Validate(); err != nil {
			return prefix(f.name+".currency", err)
		}
		if f.a.Minor < 0 {
			return fieldErr(f.name+".minor", "%d is negative", f.a.Minor)
		}
	}
	return nil
}

// StepUpLimits are the operator's limits (schema StepUpLimits): above
// them a step-up is always needed, and a payer without a PIN is refused
// (step_up.pin_required). null: no limit.
type StepUpLimits struct {
	CapAbove        *Amount `json:"cap_above,omitempty"`
	TopUpAbove      *Amount `json:"top_up_above,omitempty"`
	WithdrawalAbove *Amount `json:"withdrawal_above,omitempty"`
}

// StepUpSettings is what GetStepUpSettings answers (schema
// StepUpSettings): whether a PIN is set, the payer's thresholds, the
// operator's limits and how long a step-up token lives.
type StepUpSettings struct {
	PINSet          bool         `json:"pin_set"`
	SessionCapAbove *Amount      `json:"session_cap_above,omitempty"`
	TopUpAbove      *Amount      `json:"top_up_above,omitempty"`
	WithdrawalAbove *Amount      `json:"withdrawal_above,omitempty"`
	Limits          StepUpLimits `json:"limits"`
	TokenTTLSeconds int64        `json:"token_ttl_seconds"`
}

// Validate returns an error of kind invalid naming the bad field.
func (s *StepUpSettings) Validate() error {
	t := StepUpThresholds{SessionCapAbove: s.SessionCapAbove, TopUpAbove: s.TopUpAbove, WithdrawalAbove: s.WithdrawalAbove}
	if err := t.Validate(); err != nil {
		return err
	}
	l := StepUpThresholds{SessionCapAbove: s.Limits.CapAbove, TopUpAbove: s.Limits.TopUpAbove, WithdrawalAbove: s.Limits.WithdrawalAbove}
	if err := l.Validate(); err != nil {
		return prefix("limits", err)
	}
	if s.TokenTTLSeconds < 0 {
		return fieldErr("token_ttl_seconds", "%d is negative", s.TokenTTLSeconds)
	}
	return nil
}

// Step-up scopes (StepUpRequest.Scope): what a token may authorize.
const (
	ScopeSession    = "session"
	ScopeCheckout   = "checkout"
	ScopeTopUp      = "top_up"
	ScopeWithdrawal = "withdrawal"
	ScopePIN        = "pin"
	ScopeSettings   = "settings"
)

// StepUpRequest asks for a step-up token with the payer's PIN (schema
// StepUpRequest). Scope limits the token to one kind of call; empty: any.
type StepUpRequest struct {
	PIN   string `json:"pin"`
	Scope string `json:"scope,omitempty"`
}

// Validate returns an error of kind invalid naming the bad field.
func (r *StepUpRequest) Validate() error {
	if err := validatePIN(r.PIN); err != nil {
		return prefix("pin", err)
	}
	switch r.Scope {
	case "", ScopeSession, ScopeCheckout, ScopeTopUp, ScopeWithdrawal, ScopePIN, ScopeSettings:
		return nil
	}
	return fieldErr("scope", "%q: want session, checkout, top_up, withdrawal, pin or settings", clip(r.Scope))
}

// StepUpToken is a short-lived token from the PIN (schema StepUpToken):
// send it as X-Step-Up-Token on the one call that needs it; it is bound
// to the user and spent by that call (a retry of the same call with the
// same Idempotency-Key may send it again).
type StepUpToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Scope     string    `json:"scope,omitempty"`
}

// Validate returns an error of kind invalid naming the bad field.
func (t *StepUpToken) Validate() error {
	if t.Token == "" || len(t.Token) > 256 {
		return fieldErr("token", "want 1-256 characters")
	}
	if t.ExpiresAt.IsZero() {
		return fieldErr("expires_at", "missing")
	}
	return nil
}

type stepUpKey struct{}

// WithStepUpToken returns ctx whose requests carry token in the
// X-Step-Up-Token header (an empty token: none).
func WithStepUpToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, stepUpKey{}, token)
}

func stepUpTokenOf(ctx context.Context) string {
	t, _ := ctx.Value(stepUpKey{}).(string)
	return t
}

// SetPIN sets or changes the step-up PIN. Errors: invalid
// (step_up.pin_format, step_up.pin_weak, request.field), unauthorized
// (403 step_up.required for a change without current_pin or a token,
// step_up.wrong_pin, step_up.invalid), transient (429 step_up.locked).
func (c *Client) SetPIN(ctx context.Context, req *SetPINRequest) error {
	if err := req.Validate(); err != nil {
		return err
	}
	return c.do(ctx, http.MethodPut, "/v1/me/pin", "", req, nil)
}

// GetStepUpSettings returns the PIN state, thresholds and operator limits.
// Errors: unauthorized, transient.
func (c *Client) GetStepUpSettings(ctx context.Context) (*StepUpSettings, error) {
	var out StepUpSettings
	if err := c.do(ctx, http.MethodGet, "/v1/me/step-up", "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetStepUpThresholds replaces the payer's thresholds; it needs a PIN
// and a step-up token (WithStepUpToken). Errors: invalid, unauthorized
// (step_up.pin_required, step_up.required, step_up.invalid), transient.
func (c *Client) SetStepUpThresholds(ctx context.Context, req *StepUpThresholds) (*StepUpSettings, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out StepUpSettings
	if err := c.do(ctx, http.MethodPut, "/v1/me/step-up", "", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StepUp trades the PIN for a step-up token. Errors: invalid,
// unauthorized (403 step_up.wrong_pin naming the guesses left,
// step_up.pin_required), transient (429 step_up.locked with RetryAfter).
func (c *Client) StepUp(ctx context.Context, req *StepUpRequest) (*StepUpToken, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out StepUpToken
	if err := c.do(ctx, http.MethodPost, "/v1/auth/step-up", "", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
