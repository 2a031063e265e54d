package payments

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
)

// Totals tells the router what counts against a channel's daily limits:
// the sum of the orders (pending or paid) of channel created since since,
// of user alone, or of everybody when user is "". *store.Store's
// PaymentTotal has this shape.
type Totals func(ctx context.Context, channel, user string, since time.Time) (int64, error)

// Router picks the channel an order is opened on: the payer's chosen
// channel, else the configured priority; a channel whose limits the amount
// breaks, or whose breaker is open, is skipped. It picks before the order
// exists and never again for the same order: once Create succeeded, the
// payer holds that channel's QR and re-routing would risk a double charge.
type Router struct {
	chans  []*Guarded // by priority, then name
	totals Totals
	now    func() time.Time
	loc    *time.Location
}

// NewRouter returns a router over chans. totals may be nil (no daily
// limits are checked then); loc is the zone whose midnight starts a day
// (UTC when nil); now is the clock (time.Now when nil).
func NewRouter(chans []*Guarded, totals Totals, loc *time.Location, now func() time.Time) *Router {
	cs := append([]*Guarded(nil), chans...)
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].Priority != cs[j].Priority {
			return cs[i].Priority < cs[j].Priority
		}
		return cs[i].Name() < cs[j].Name()
	})
	if loc == nil {
		loc = time.UTC
	}
	if now == nil {
		now = time.Now
	}
	return &Router{chans: cs, totals: totals, now: now, loc: loc}
}

// Channels returns the channels in priority order.
func (r *Router) Channels() []*Guarded { return append([]*Guarded(nil), r.chans...) }

// Lookup returns the channel whose payment source ID or name is id.
func (r *Router) Lookup(id string) (*Guarded, bool) {
	for _, c := range r.chans {
		if c.Source().ID == id || c.Name() == id {
			return c, true
		}
	}
	return nil, false
}

// LimitError is ErrLimit with the payment sources that would take the
// amount now (Alternatives, in priority order; empty when none would).
type LimitError struct {
	Reasons      []string // per channel tried: why it does not fit
	Alternatives []string // payment source IDs that would fit
}

// Error names every reason.
func (e *LimitError) Error() string {
	s := ErrLimit.Msg + ": " + strings.Join(e.Reasons, "; ")
	if len(e.Alternatives) > 0 {
		s += "; would fit: " + strings.Join(e.Alternatives, ", ")
	}
	return s
}

// Unwrap returns ErrLimit.
func (e *LimitError) Unwrap() error { return ErrLimit }

// Fits returns nil when c takes amount from user now, or why not
// (ErrLimit, ErrUnhealthy).
func (r *Router) Fits(ctx context.Context, c *Guarded, user string, amount vend.Amount) error {
	if !c.Healthy() {
		return vend.Errorf(ErrUnhealthy, "%s", c.Name())
	}
	var mine, all int64
	if r.totals != nil && (c.Limits.PerUserDay > 0 || c.Limits.PerDay > 0) {
		n := r.now().In(r.loc)
		day := time.Date(n.Year(), n.Month(), n.Day(), 0, 0, 0, 0, r.loc)
		var err error
		if c.Limits.PerUserDay > 0 {
			if mine, err = r.totals(ctx, c.Name(), user, day); err != nil {
				return err
			}
		}
		if c.Limits.PerDay > 0 {
			if all, err = r.totals(ctx, c.Name(), "", day); err != nil {
				return err
			}
		}
	}
	if err := c.Limits.Check(amount, mine, all); err != nil {
		return fmt.Errorf("%s: %w", c.Name(), err)
	}
	return nil
}

// Pick returns the channel to open an order of amount for user on:
// chosen (a payment source ID or channel name) when given, else the
// first by priority that fits. A chosen channel that does not fit is not
// replaced by another behind the payer's back: the answer is a
// *LimitError naming the alternatives that would fit. Errors:
// ErrNoChannel (chosen is unknown), *LimitError (nothing fits; errors.Is
// ErrLimit), the totals' errors.
func (r *Router) Pick(ctx context.Context, user string, amount vend.Amount, chosen string) (*Guarded, error) {
	le := &LimitError{}
	if chosen != "" && chosen != "auto" {
		c, ok := r.Lookup(chosen)
		if !ok {
			return nil, vend.Errorf(ErrNoChannel, "%q", chosen)
		}
		err := r.Fits(ctx, c, user, amount)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, ErrLimit) && !errors.Is(err, ErrUnhealthy) {
			return nil, err
		}
		le.Reasons = append(le.Reasons, err.Error())
		for _, o := range r.chans {
			if o != c && r.Fits(ctx, o, user, amount) == nil {
				le.Alternatives = append(le.Alternatives, o.Source().ID)
			}
		}
		return nil, le
	}
	for _, c := range r.chans {
		err := r.Fits(ctx, c, user, amount)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, ErrLimit) && !errors.Is(err, ErrUnhealthy) {
			return nil, err
		}
		le.Reasons = append(le.Reasons, err.Error())
	}
	if len(r.chans) == 0 {
		le.Reasons = append(le.Reasons, "no payment channel is configured")
	}
	return nil, le
}

// ErrNoChannel is a payment source the cloud does not offer.
var ErrNoChannel = vend.E(vend.NotFound, "source.not_found", "payments: no such payment source")
