package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// ErrStepUp: the cloud asked for a step-up and none could be made (no PIN
// to read, a wrong PIN, PIN checks locked), or the PIN could not be set.
var ErrStepUp = vend.E(vend.Unauthorized, "phone.step_up", "phone: step-up failed")

// stepUpHints are the step-up refusals as the user reads them.
var stepUpHints = map[string]string{
	"step_up.pin_required": "above the operator's limit a PIN is needed: set one with -set-pin",
	"step_up.invalid":      "the step-up token was refused (expired or already used): run again",
	"step_up.required":     "this needs the step-up PIN: give -pin-file, or type it when asked",
	"step_up.wrong_pin":    "wrong PIN",
	"step_up.locked":       "too many wrong PINs",
	"step_up.pin_weak":     "choose a PIN that is not one digit repeated, a run such as 1234, or a repeated pair",
}

func init() {
	for code, hint := range stepUpHints {
		apiHint[code] = struct {
			err  *vend.Error
			hint string
		}{ErrStepUp, hint}
	}
}

// stepUpFlags registers the step-up flags.
func (m *Main) stepUpFlags(fs *flag.FlagSet) {
	fs.StringVar(&m.PINFile, "pin-file", "", "`file` whose first line is the step-up PIN, sent when the cloud asks for a step-up (default: asked on the terminal)")
	fs.BoolVar(&m.SetPIN, "set-pin", false, "set or change the step-up PIN (the new one from -new-pin-file or asked; a change steps up with the current one)")
	fs.StringVar(&m.NewPINFile, "new-pin-file", "", "`file` whose first line is the new PIN for -set-pin")
	fs.StringVar(&m.StepUpSession, "step-up-session", "", "ask for the PIN when a session's cap is above `AMOUNT` (2.00, 200 minor units, 0: always, off: never)")
	fs.StringVar(&m.StepUpTopUp, "step-up-topup", "", "ask for the PIN when a top-up is above `AMOUNT` (or 0, off)")
	fs.StringVar(&m.StepUpWithdrawal, "step-up-withdrawal", "", "ask for the PIN when a withdrawal is above `AMOUNT` (or 0, off)")
}

// parseThreshold reads a threshold flag: off (none), 0, or an amount.
func parseThreshold(s string) (minor int64, off bool, err error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "off", "none":
		return 0, true, nil
	case "0", "0.0", "0.00":
		return 0, false, nil
	}
	minor, err = parseAmount(s)
	return minor, false, err
}

// checkStepUp validates the step-up flags.
func (m *Main) checkStepUp() error {
	for name, v := range map[string]string{"step-up-session": m.StepUpSession, "step-up-topup": m.StepUpTopUp, "step-up-withdrawal": m.StepUpWithdrawal} {
		if v == "" {
			continue
		}
		if _, _, err := parseThreshold(v); err != nil {
			return fmt.Errorf("phone: -%s: %w (or 0, off)", name, err)
		}
	}
	if m.NewPINFile != "" && !m.SetPIN {
		return errors.New("phone: -new-pin-file is the new PIN of -set-pin; add -set-pin")
	}
	return nil
}

// thresholdsAsked reports whether a threshold flag was given.
func (m *Main) thresholdsAsked() bool {
	return m.StepUpSession != "" || m.StepUpTopUp != "" || m.StepUpWithdrawal != ""
}

// readPINFile returns the first line of path, trimmed.
func readPINFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// pin returns the step-up PIN: from -pin-file, else asked (without echo
// on a terminal). why is shown before asking.
func (m *Main) pin(ctx context.Context, why string) (string, error) {
	if m.PINFile != "" {
		p, err := readPINFile(m.PINFile)
		if err != nil {
			return "", fmt.Errorf("%w: -pin-file: %w", ErrStepUp, err)
		}
		return p, nil
	}
	fmt.Fprintf(m.out, "step-up needed: %s\n", why)
	p, err := m.prompt(ctx, "step-up PIN: ", true)
	if err != nil {
		return "", fmt.Errorf("%w: %s: give -pin-file or type the PIN", ErrStepUp, why)
	}
	return strings.TrimSpace(p), nil
}

// stepUpToken trades the PIN for a step-up token of scope. A wrong PIN
// or a lock ends here (ErrStepUp, with the cloud's message): no guess is
// repeated on the user's behalf.
func (m *Main) stepUpToken(ctx context.Context, scope, why string) (string, error) {
	pin, err := m.pin(ctx, why)
	if err != nil {
		return "", err
	}
	tok, err := m.client.StepUp(ctx, &phoneapi.StepUpRequest{PIN: pin, Scope: scope})
	if err != nil {
		var ae *phoneapi.APIError
		if errors.As(err, &ae) {
			msg := ae.Message
			if h, ok := stepUpHints[ae.Code]; ok {
				msg = h + ": " + msg
			}
			if ae.RetryAfter > 0 {
				msg += fmt.Sprintf(" (wait %s)", ae.RetryAfter)
			}
			return "", fmt.Errorf("%w: %s (%s)", ErrStepUp, msg, ae.Code)
		}
		return "", fmt.Errorf("%w: %w", ErrStepUp, err)
	}
	return tok.Token, nil
}

// steppedUp wraps one call (with its idempotency key fixed by the
// caller): when the cloud answers 403 step_up.required, it gets a
// step-up token of scope with the PIN and makes the call once more with
// X-Step-Up-Token. Later retries of the same call (transient errors,
// same key) send the same token, which the cloud accepts for the same
// request.
func steppedUp[T any](m *Main, scope string, f func(context.Context) (T, error)) func(context.Context) (T, error) {
	var tok string
	return func(ctx context.Context) (T, error) {
		if tok != "" {
			return f(phoneapi.WithStepUpToken(ctx, tok))
		}
		v, err := f(ctx)
		var ae *phoneapi.APIError
		if !errors.As(err, &ae) || ae.Code != "step_up.required" {
			return v, err
		}
		t, terr := m.stepUpToken(ctx, scope, strings.TrimPrefix(ae.Message, "stepup: this needs a step-up token: "))
		if terr != nil {
			var zero T
			return zero, terr
		}
		tok = t
		return f(phoneapi.WithStepUpToken(ctx, tok))
	}
}

// stepUpSetup runs -set-pin and the threshold flags, and prints the
// step-up settings. It reports done when nothing else was asked.
func (m *Main) stepUpSetup(ctx context.Context) (done bool, err error) {
	if !m.SetPIN && !m.thresholdsAsked() {
		return false, nil
	}
	if m.SetPIN {
		var pin string
		if m.NewPINFile != "" {
			if pin, err = readPINFile(m.NewPINFile); err != nil {
				return true, fmt.Errorf("%w: -new-pin-file: %w", ErrStepUp, err)
			}
		} else if pin, err = m.prompt(ctx, "new step-up PIN (4-8 digits): ", true); err != nil {
			return true, fmt.Errorf("%w: -set-pin needs -new-pin-file or the PIN typed", ErrStepUp)
		}
		req := &phoneapi.SetPINRequest{PIN: strings.TrimSpace(pin)}
		if _, err := retry(ctx, steppedUp(m, phoneapi.ScopePIN, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, m.client.SetPIN(ctx, req)
		})); err != nil {
			return true, mapAPIError(fmt.Errorf("phone: set pin: %w", err), nil)
		}
		fmt.Fprintln(m.out, "step-up PIN set")
	}
	st, err := retry(ctx, m.client.GetStepUpSettings)
	if err != nil {
		return true, fmt.Errorf("phone: step-up settings: %w", err)
	}
	if m.thresholdsAsked() {
		w, err := m.wallet(ctx)
		if err != nil {
			return true, err
		}
		cur := w.Available.Currency
		if cur == "" {
			cur = defaultCurrency
		}
		req := &phoneapi.StepUpThresholds{SessionCapAbove: st.SessionCapAbove, TopUpAbove: st.TopUpAbove, WithdrawalAbove: st.WithdrawalAbove}
		for _, f := range []struct {
			v   string
			dst **phoneapi.Amount
		}{{m.StepUpSession, &req.SessionCapAbove}, {m.StepUpTopUp, &req.TopUpAbove}, {m.StepUpWithdrawal, &req.WithdrawalAbove}} {
			if f.v == "" {
				continue
			}
			minor, off, _ := parseThreshold(f.v)
			*f.dst = nil
			if !off {
				*f.dst = &phoneapi.Amount{Minor: minor, Currency: cur}
			}
		}
		st, err = retry(ctx, steppedUp(m, phoneapi.ScopeSettings, func(ctx context.Context) (*phoneapi.StepUpSettings, error) {
			return m.client.SetStepUpThresholds(ctx, req)
		}))
		if err != nil {
			return true, mapAPIError(fmt.Errorf("phone: step-up thresholds: %w", err), nil)
		}
	}
	m.StepUpSettings = st
	fmt.Fprint(m.out, formatStepUp(st))
	return !m.more(), nil
}

// more reports whether anything besides the step-up settings was asked.
func (m *Main) more() bool {
	return m.TopUp != "" || m.Withdraw != "" || m.ListPays || m.ShowWallet || m.List || m.Device != "" || m.PickNearest
}

// formatStepUp describes the step-up settings in a few lines.
func formatStepUp(st *phoneapi.StepUpSettings) string {
	th := func(a *phoneapi.Amount) string {
		if a == nil {
			return "never"
		}
		return "above " + a.String()
	}
	var b strings.Builder
	if !st.PINSet {
		b.WriteString("step-up PIN: not set\n")
	} else {
		fmt.Fprintf(&b, "step-up PIN: set; asked for sessions %s, top-ups %s, withdrawals %s\n",
			th(st.SessionCapAbove), th(st.TopUpAbove), th(st.WithdrawalAbove))
	}
	if l := st.Limits; l.CapAbove != nil || l.TopUpAbove != nil || l.WithdrawalAbove != nil {
		fmt.Fprintf(&b, "operator limits (PIN always asked): sessions %s, top-ups %s, withdrawals %s\n",
			th(l.CapAbove), th(l.TopUpAbove), th(l.WithdrawalAbove))
	}
	return b.String()
}
