package payments

import (
	"fmt"
	"slices"

	"beaconvend/app-protocol/vend"
)

// ErrLimit is an amount a channel's limits do not allow, and no channel
// that would: the phone API answers source.limit.
var ErrLimit = vend.E(vend.Conflict, "source.limit", "payments: the channel's limit is reached")

// ErrUnhealthy is a channel whose breaker is open: it failed technically
// (errors, timeouts) several times in a row and rests for a cool-down.
var ErrUnhealthy = vend.E(vend.Transient, "channel.unhealthy", "payments: the channel is failing and rests")

// Limits are the operator's bounds on one channel's payments, in minor
// units of the wallet currency. A zero bound is no bound.
type Limits struct {
	Min        int64           // per payment, at least
	Max        int64           // per payment, at most
	PerUserDay int64           // one payer's orders (pending or paid) per day, at most
	PerDay     int64           // every payer's orders on the channel per day (the merchant account's cap), at most
	Currencies []vend.Currency // accepted currencies; empty: any
}

// Check returns nil when amount fits, given what the payer (userToday)
// and everybody (allToday) ordered on the channel today, or ErrLimit
// naming the bound it breaks.
func (l Limits) Check(amount vend.Amount, userToday, allToday int64) error {
	a := amount.Minor
	switch {
	case len(l.Currencies) > 0 && !slices.Contains(l.Currencies, amount.Currency):
		return vend.Errorf(ErrLimit, "currency %s not accepted (%v)", amount.Currency, l.Currencies)
	case l.Min > 0 && a < l.Min:
		return vend.Errorf(ErrLimit, "%s is below the per-payment minimum %s", amount, vend.Amount{Minor: l.Min, Currency: amount.Currency})
	case l.Max > 0 && a > l.Max:
		return vend.Errorf(ErrLimit, "%s is above the per-payment maximum %s", amount, vend.Amount{Minor: l.Max, Currency: amount.Currency})
	case l.PerUserDay > 0 && userToday+a > l.PerUserDay:
		return vend.Errorf(ErrLimit, "%s would bring the payer's day to %s, above %s", amount,
			vend.Amount{Minor: userToday + a, Currency: amount.Currency}, vend.Amount{Minor: l.PerUserDay, Currency: amount.Currency})
	case l.PerDay > 0 && allToday+a > l.PerDay:
		return vend.Errorf(ErrLimit, "%s would bring the channel's day above %s", amount, vend.Amount{Minor: l.PerDay, Currency: amount.Currency})
	}
	return nil
}

// Validate reports bounds that contradict each other.
func (l Limits) Validate() error {
	for _, v := range []int64{l.Min, l.Max, l.PerUserDay, l.PerDay} {
		if v < 0 {
			return fmt.Errorf("payments: limits: negative bound %d", v)
		}
	}
	if l.Max > 0 && l.Min > l.Max {
		return fmt.Errorf("payments: limits: min %d above max %d", l.Min, l.Max)
	}
	for _, c := range l.Currencies {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("payments: limits: %w", err)
		}
	}
	return nil
}
