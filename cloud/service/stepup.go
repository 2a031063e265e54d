package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Errors of the step-up PIN. The phone API answers step_up.required,
// step_up.invalid, step_up.pin_required and step_up.wrong_pin with 403,
// step_up.locked with 429 and Retry-After, the PIN format errors with 400.
var (
	// ErrStepUpRequired: the call needs header X-Step-Up-Token (a token
	// from POST /v1/auth/step-up); the message names the action and the
	// threshold it is above.
	ErrStepUpRequired = vend.E(vend.Unauthorized, "step_up.required", "stepup: this needs a step-up token")
	// ErrStepUpInvalid: the step-up token is expired, spent, another
	// user's or of another scope.
	ErrStepUpInvalid = store.ErrStepUpToken
	// ErrPINRequired: the action is above the operator's limit and the
	// payer has no PIN to step up with; set one (PUT /v1/me/pin).
	ErrPINRequired = store.ErrPINNotSet
	// ErrWrongPIN: the PIN is not the payer's; the message says how many
	// guesses are left in the window.
	ErrWrongPIN = vend.E(vend.Unauthorized, "step_up.wrong_pin", "stepup: wrong pin")
	// ErrPINLocked: the window's guesses are used up (see *PINLockedError
	// for when it ends).
	ErrPINLocked = vend.E(vend.Transient, "step_up.locked", "stepup: too many wrong pins")
	// ErrPINFormat: a PIN is not 4-8 ASCII digits.
	ErrPINFormat = vend.E(vend.Invalid, "step_up.pin_format", "stepup: a pin is 4-8 digits")
	// ErrStepUpField: a step-up request names an unknown scope.
	ErrStepUpField = vend.E(vend.Invalid, "request.field", "stepup: invalid field")
	// ErrPINWeak: a new PIN is one of the guessable ones (all one digit,
	// a run up or down such as 1234 or 9876, a repeated pair such as
	// 1212).
	ErrPINWeak = vend.E(vend.Invalid, "step_up.pin_weak", "stepup: pin too easy to guess")
)

// PINLockedError is ErrPINLocked with the end of the lock.
type PINLockedError struct {
	Until time.Time // when PIN checks are allowed again (the cloud's clock)
}

// Error returns the message with the end of the lock.
func (e *PINLockedError) Error() string {
	return fmt.Sprintf("%s: try again after %s", ErrPINLocked.Msg, e.Until.UTC().Format(time.RFC3339))
}

// Unwrap returns ErrPINLocked.
func (e *PINLockedError) Unwrap() error { return ErrPINLocked }

// StepUpAction is what a step-up token is asked for, and a token's scope.
type StepUpAction string

// Step-up actions.
const (
	StepUpSession    StepUpAction = "session"    // a wallet session whose cap is above the threshold
	StepUpCheckout   StepUpAction = "checkout"   // a signed-in user's channel checkout whose cap is above the threshold
	StepUpTopUp      StepUpAction = "top_up"     // a top-up above the threshold or the operator's limit
	StepUpWithdrawal StepUpAction = "withdrawal" // a withdrawal above the threshold or the operator's limit
	StepUpPIN        StepUpAction = "pin"        // changing the PIN without the current one
	StepUpSettings   StepUpAction = "settings"   // changing the thresholds
)

// words names the action in messages: "session cap", "top-up", ….
func (a StepUpAction) words() string {
	switch a {
	case StepUpSession:
		return "session cap"
	case StepUpCheckout:
		return "checkout cap"
	case StepUpTopUp:
		return "top-up"
	}
	return string(a)
}

// Valid reports whether a is one of the actions.
func (a StepUpAction) Valid() bool {
	switch a {
	case StepUpSession, StepUpCheckout, StepUpTopUp, StepUpWithdrawal, StepUpPIN, StepUpSettings:
		return true
	}
	return false
}

// Step-up defaults (StepUpOptions).
const (
	DefaultStepUpTTL    = 5 * time.Minute
	DefaultPINFailures  = 5
	DefaultPINWindow    = 15 * time.Minute
	maxStepUpTokenBytes = 256
)

// StepUpOptions configure the step-up PIN (Options.StepUp).
type StepUpOptions struct {
	// TokenTTL is how long a step-up token is valid; DefaultStepUpTTL.
	TokenTTL time.Duration
	// MaxFailures is how many PIN checks a payer gets per Window
	// (DefaultPINFailures); then checks are refused (step_up.locked)
	// until the window, which starts at its first check, ends
	// (DefaultPINWindow). A right PIN starts the count again.
	MaxFailures int
	Window      time.Duration
	// Operator-wide limits, in minor units per currency: amounts above
	// them always need a step-up, whatever the payer chose; a payer
	// without a PIN is refused there with step_up.pin_required (set a
	// PIN first). A currency not listed has no limit. CapAbove applies
	// to sessions and signed-in checkouts.
	CapAbove        map[vend.Currency]int64
	TopUpAbove      map[vend.Currency]int64
	WithdrawalAbove map[vend.Currency]int64
}

func (o StepUpOptions) withDefaults() StepUpOptions {
	if o.TokenTTL <= 0 {
		o.TokenTTL = DefaultStepUpTTL
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultPINFailures
	}
	if o.Window <= 0 {
		o.Window = DefaultPINWindow
	}
	return o
}

type stepUpCtxKey struct{}

// WithStepUpToken returns ctx carrying the step-up token the request
// presented (header X-Step-Up-Token), for RequireStepUp. The HTTP layer
// sets it, so the service's signatures stay as they are.
func WithStepUpToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return context.WithValue(ctx, stepUpCtxKey{}, token)
}

// StepUpTokenFrom returns the step-up token ctx carries, or "".
func StepUpTokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(stepUpCtxKey{}).(string)
	return t
}

// CheckPINFormat returns ErrPINFormat unless pin is 4-8 ASCII digits,
// and ErrPINWeak when it is a guessable one: one digit repeated (0000),
// a run up or down (1234, 98765), or a repeated pair (1212, 4747).
func CheckPINFormat(pin string) error {
	if len(pin) < 4 || len(pin) > 8 {
		return vend.Errorf(ErrPINFormat, "have %d characters", len(pin))
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return vend.Errorf(ErrPINFormat, "character %d is not a digit", i+1)
		}
	}
	same, up, down, pair := true, true, true, true
	for i := 1; i < len(pin); i++ {
		same = same && pin[i] == pin[0]
		up = up && pin[i] == (pin[i-1]-'0'+1)%10+'0'
		down = down && pin[i] == (pin[i-1]-'0'+9)%10+'0'
		pair = pair && pin[i] == pin[i%2]
	}
	switch {
	case same:
		return vend.Errorf(ErrPINWeak, "one digit repeated")
	case up || down:
		return vend.Errorf(ErrPINWeak, "a run of digits")
	case pair:
		return vend.Errorf(ErrPINWeak, "a repeated pair of digits")
	}
	return nil
}

func (s *Service) stepUpOpts() StepUpOptions { return s.opts.StepUp.withDefaults() }

// StepUpSettings returns user's step-up settings as the phone API shows
// them, with the operator's limits in the wallet currency. Errors: the
// store's.
func (s *Service) StepUpSettings(ctx context.Context, user string) (phoneapi.StepUpSettings, error) {
	st, err := s.st.StepUpSettingsOf(ctx, user)
	if err != nil {
		return phoneapi.StepUpSettings{}, err
	}
	o := s.stepUpOpts()
	out := phoneapi.StepUpSettings{PINSet: st.PINSet, SessionCapAbove: st.SessionCapAbove, TopUpAbove: st.TopUpAbove,
		WithdrawalAbove: st.WithdrawalAbove, TokenTTLSeconds: int64(o.TokenTTL / time.Second)}
	lim := func(m map[vend.Currency]int64) *vend.Amount {
		if v, ok := m[s.opts.Currency]; ok {
			return &vend.Amount{Minor: v, Currency: s.opts.Currency}
		}
		return nil
	}
	out.Limits = phoneapi.StepUpLimits{CapAbove: lim(o.CapAbove), TopUpAbove: lim(o.TopUpAbove), WithdrawalAbove: lim(o.WithdrawalAbove)}
	return out, nil
}

// SetPIN sets or changes user's step-up PIN. The first PIN needs only
// the signed-in user; a change needs the current PIN (current, checked
// and counted like any PIN check: step_up.wrong_pin, step_up.locked) or
// a step-up token in ctx (scope pin). Errors: step_up.pin_format,
// step_up.pin_weak, step_up.required, step_up.invalid,
// step_up.wrong_pin, step_up.locked, the store's.
func (s *Service) SetPIN(ctx context.Context, user, pin, current string) error {
	if err := CheckPINFormat(pin); err != nil {
		return err
	}
	st, err := s.st.StepUpSettingsOf(ctx, user)
	if err != nil {
		return err
	}
	if st.PINSet {
		switch {
		case current != "":
			if err := s.checkPIN(ctx, user, current); err != nil {
				return err
			}
		case StepUpTokenFrom(ctx) != "":
			if err := s.spend(ctx, user, StepUpPIN, ""); err != nil {
				return err
			}
		default:
			return vend.Errorf(ErrStepUpRequired, "changing the pin needs current_pin or a step-up token")
		}
	}
	return s.st.SetStepUpPIN(ctx, user, pin)
}

// SetStepUpThresholds replaces user's thresholds (nil: none). It needs a
// PIN (step_up.pin_required) and a step-up token in ctx (scope
// settings): a stolen bearer token alone cannot lower the protection.
// Amounts must be in the wallet currency. Errors: request.field,
// money.currency_mismatch, step_up.pin_required, step_up.required,
// step_up.invalid, the store's.
func (s *Service) SetStepUpThresholds(ctx context.Context, user string, req phoneapi.StepUpThresholds) (phoneapi.StepUpSettings, error) {
	for _, a := range []*vend.Amount{req.SessionCapAbove, req.TopUpAbove, req.WithdrawalAbove} {
		if a != nil && a.Currency != s.opts.Currency {
			return phoneapi.StepUpSettings{}, vend.Errorf(vend.ErrMismatch, "thresholds are in the wallet currency %s", s.opts.Currency)
		}
	}
	st, err := s.st.StepUpSettingsOf(ctx, user)
	if err != nil {
		return phoneapi.StepUpSettings{}, err
	}
	if !st.PINSet {
		return phoneapi.StepUpSettings{}, vend.Errorf(ErrPINRequired, "set a pin before thresholds")
	}
	if StepUpTokenFrom(ctx) == "" {
		return phoneapi.StepUpSettings{}, vend.Errorf(ErrStepUpRequired, "changing the thresholds")
	}
	if err := s.spend(ctx, user, StepUpSettings, ""); err != nil {
		return phoneapi.StepUpSettings{}, err
	}
	if err := s.st.SetStepUpThresholds(ctx, user, req.SessionCapAbove, req.TopUpAbove, req.WithdrawalAbove); err != nil {
		return phoneapi.StepUpSettings{}, err
	}
	return s.StepUpSettings(ctx, user)
}

// StepUp checks user's PIN and returns a step-up token for scope ("":
// any action), valid for StepUpOptions.TokenTTL and spent by the first
// call it authorizes. The PIN itself is never logged or stored. Errors:
// step_up.pin_required (no PIN), step_up.wrong_pin (with the guesses
// left), step_up.locked (*PINLockedError), request.field (scope),
// the store's.
func (s *Service) StepUp(ctx context.Context, user string, req phoneapi.StepUpRequest) (phoneapi.StepUpToken, error) {
	if req.Scope != "" && !StepUpAction(req.Scope).Valid() {
		return phoneapi.StepUpToken{}, vend.Errorf(ErrStepUpField, "scope %q: want session, checkout, top_up, withdrawal, pin or settings", clipText(req.Scope))
	}
	if err := s.checkPIN(ctx, user, req.PIN); err != nil {
		return phoneapi.StepUpToken{}, err
	}
	tok, exp, err := s.st.IssueStepUpToken(ctx, user, req.Scope, s.stepUpOpts().TokenTTL)
	if err != nil {
		return phoneapi.StepUpToken{}, err
	}
	return phoneapi.StepUpToken{Token: tok, ExpiresAt: exp, Scope: req.Scope}, nil
}

func clipText(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// checkPIN counts one PIN check of user and answers its outcome.
func (s *Service) checkPIN(ctx context.Context, user, pin string) error {
	o := s.stepUpOpts()
	c, err := s.st.CheckPIN(ctx, user, pin, o.MaxFailures, o.Window)
	if err != nil {
		return err
	}
	switch {
	case c.OK:
		return nil
	case c.Locked:
		return &PINLockedError{Until: c.LockedUntil}
	case !c.LockedUntil.IsZero():
		s.log.Warn("service: step-up pin locked", "user", user, "until", c.LockedUntil)
		return &PINLockedError{Until: c.LockedUntil}
	}
	return vend.Errorf(ErrWrongPIN, "%d of %d guesses left", o.MaxFailures-c.Attempts, o.MaxFailures)
}

// spend spends ctx's step-up token on one call of user.
func (s *Service) spend(ctx context.Context, user string, what StepUpAction, idemKey string) error {
	tok := StepUpTokenFrom(ctx)
	if len(tok) > maxStepUpTokenBytes {
		return vend.Errorf(ErrStepUpInvalid, "token over %d bytes", maxStepUpTokenBytes)
	}
	usedFor := ""
	if idemKey != "" {
		usedFor = string(what) + ":" + idemKey
	}
	return s.st.UseStepUpToken(ctx, user, tok, string(what), usedFor)
}

// RequireStepUp decides whether amount, for action what of user, needs a
// step-up, and if so spends the step-up token ctx carries
// (WithStepUpToken). It needs one when amount is above the user's
// threshold for the action (sessions and checkouts: SessionCapAbove) or
// above the operator's limit (StepUpOptions); a threshold in another
// currency than amount counts as exceeded (the cloud converts nothing).
// A user without a PIN is never asked for a step-up, but above the
// operator's limit is refused with step_up.pin_required. The token is
// spent by this call: a retry of the same request needs a new one,
// unless it goes through the idempotent entry points (StartSession,
// TopUp, Withdraw) whose retries may present the same token again.
// Errors: step_up.required (no token; the message names the action and
// the threshold), step_up.invalid (expired, spent, another user's, other
// scope), step_up.pin_required, the store's.
func (s *Service) RequireStepUp(ctx context.Context, user string, what StepUpAction, amount vend.Amount) error {
	return s.requireStepUp(ctx, user, what, amount, "")
}

func (s *Service) requireStepUp(ctx context.Context, user string, what StepUpAction, amount vend.Amount, idemKey string) error {
	st, err := s.st.StepUpSettingsOf(ctx, user)
	if err != nil {
		return err
	}
	o := s.stepUpOpts()
	var mine *vend.Amount
	var limits map[vend.Currency]int64
	switch what {
	case StepUpSession, StepUpCheckout:
		mine, limits = st.SessionCapAbove, o.CapAbove
	case StepUpTopUp:
		mine, limits = st.TopUpAbove, o.TopUpAbove
	case StepUpWithdrawal:
		mine, limits = st.WithdrawalAbove, o.WithdrawalAbove
	default:
		return fmt.Errorf("service: step-up for %q: not an amount action", what)
	}
	var above *vend.Amount
	if lim, ok := limits[amount.Currency]; ok && amount.Minor > lim {
		above = &vend.Amount{Minor: lim, Currency: amount.Currency}
		if !st.PINSet {
			return vend.Errorf(ErrPINRequired, "a %s of %s is above the limit of %s: set a pin (PUT /v1/me/pin), then step up", what.words(), amount, above)
		}
	}
	if st.PINSet && mine != nil && (mine.Currency != amount.Currency || amount.Minor > mine.Minor) {
		if above == nil || mine.Currency == above.Currency && mine.Minor < above.Minor {
			above = mine
		}
	}
	if above == nil {
		return nil
	}
	if StepUpTokenFrom(ctx) == "" {
		return vend.Errorf(ErrStepUpRequired, "a %s of %s is above %s: send X-Step-Up-Token from POST /v1/auth/step-up", what.words(), amount, above)
	}
	err = s.spend(ctx, user, what, idemKey)
	if errors.Is(err, store.ErrStepUpToken) {
		return vend.Errorf(ErrStepUpInvalid, "for a %s of %s: get a new one from POST /v1/auth/step-up", what.words(), amount)
	}
	return err
}

// stepUpSession is StartSession's step-up check: the cap's cost at the
// machine's (or slot's) current price, or the money cap.
func (s *Service) stepUpSession(ctx context.Context, user, idemKey string, mach store.Machine, req phoneapi.StartSessionRequest) error {
	amount := vend.Amount{Currency: mach.Currency}
	if req.Cap.Amount != nil {
		amount = *req.Cap.Amount
	} else {
		price := mach.Price
		for _, sl := range mach.Slots {
			if sl.ID == string(req.Slot) {
				price = sl.Price
			}
		}
		c, err := price.Cost(req.Cap.Units)
		if err != nil {
			return err
		}
		amount.Minor = c
	}
	return s.requireStepUp(ctx, user, StepUpSession, amount, idemKey)
}
