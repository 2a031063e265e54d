package server

import (
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/service"
)

// StepUp configures the step-up PIN (service.StepUpOptions): how long a
// step-up token lives, the lock-out after wrong PINs, and the operator's
// limits in the wallet currency as decimal amounts ("100.00"), above
// which a cap, a top-up or a withdrawal always needs a step-up (a payer
// without a PIN is refused there with step_up.pin_required). Empty: no
// limit; zero durations and counts keep the defaults.
type StepUp struct {
	TokenTTL        Duration `yaml:"token_ttl"`        // default 5m
	MaxFailures     int      `yaml:"max_failures"`     // PIN checks per window; default 5
	Window          Duration `yaml:"window"`           // the lock-out window, from its first check; default 15m
	CapAbove        string   `yaml:"cap_above"`        // sessions and signed-in checkouts
	TopUpAbove      string   `yaml:"top_up_above"`     // wallet top-ups
	WithdrawalAbove string   `yaml:"withdrawal_above"` // withdrawals
}

// StepUpOptions returns the service's step-up options from the step_up
// section. Errors: ErrConfig naming the field.
func (c *Config) StepUpOptions() (service.StepUpOptions, error) {
	s := c.StepUp
	o := service.StepUpOptions{TokenTTL: s.TokenTTL.D(), MaxFailures: s.MaxFailures, Window: s.Window.D()}
	if o.TokenTTL < 0 || o.Window < 0 || o.MaxFailures < 0 {
		return o, bad("step_up", "token_ttl, window and max_failures must not be negative")
	}
	cur := c.Payments.Currency
	if cur == "" {
		cur = "EUR"
	}
	for _, f := range []struct {
		name, text string
		dst        *map[vend.Currency]int64
	}{{"cap_above", s.CapAbove, &o.CapAbove}, {"top_up_above", s.TopUpAbove, &o.TopUpAbove}, {"withdrawal_above", s.WithdrawalAbove, &o.WithdrawalAbove}} {
		if f.text == "" {
			continue
		}
		v, err := payments.ParseMinor(f.text)
		if err != nil || v < 0 {
			return o, bad("step_up."+f.name, "%q: want a decimal amount such as 100.00", f.text)
		}
		*f.dst = map[vend.Currency]int64{cur: v}
	}
	return o, nil
}

func (c *Config) validateStepUp() error {
	_, err := c.StepUpOptions()
	return err
}

// mergeStepUp fills the zero fields of o (set by the program) from the
// configuration.
func mergeStepUp(o service.StepUpOptions, c *Config) (service.StepUpOptions, error) {
	f, err := c.StepUpOptions()
	if err != nil {
		return o, err
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = f.TokenTTL
	}
	if o.MaxFailures == 0 {
		o.MaxFailures = f.MaxFailures
	}
	if o.Window == 0 {
		o.Window = f.Window
	}
	if o.CapAbove == nil {
		o.CapAbove = f.CapAbove
	}
	if o.TopUpAbove == nil {
		o.TopUpAbove = f.TopUpAbove
	}
	if o.WithdrawalAbove == nil {
		o.WithdrawalAbove = f.WithdrawalAbove
	}
	return o, nil
}
