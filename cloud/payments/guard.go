package payments

import (
	"context"
	"net/http"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// Instant is implemented by a channel whose orders are paid by Create
// itself (the development sandbox): the cloud queries such an order
// right after creating it instead of waiting for a notification.
type Instant interface {
	PaysAtOnce() bool
}

// Guarded wraps a Channel with its operator limits, its breaker and a
// per-call timeout. Calls to the provider (Create, Query, Close, Refund,
// QueryRefund, Statement) are refused with ErrUnhealthy while the breaker
// is open and feed it otherwise; notifications are verified locally and
// pass through untouched.
type Guarded struct {
	Channel
	Limits   Limits
	Priority int           // lower is tried first when the payer chose no channel
	Timeout  time.Duration // per provider call; 0: 15 s
	Breaker  *Breaker
}

var _ Channel = (*Guarded)(nil)

// Guard returns ch wrapped with its limits and breaker (a default breaker when b is nil).
func Guard(ch Channel, lim Limits, priority int, b *Breaker) *Guarded {
	if b == nil {
		b = NewBreaker(BreakerOpts{})
	}
	return &Guarded{Channel: ch, Limits: lim, Priority: priority, Breaker: b}
}

// Healthy reports whether the breaker lets calls through.
func (g *Guarded) Healthy() bool { return g.Breaker.Healthy() }

// PaysAtOnce reports whether the wrapped channel pays orders at Create.
func (g *Guarded) PaysAtOnce() bool {
	i, ok := g.Channel.(Instant)
	return ok && i.PaysAtOnce()
}

// Location is the time zone of the wrapped channel's statement days when
// it has its own (reconcile.Zoned), else nil.
func (g *Guarded) Location() *time.Location {
	if z, ok := g.Channel.(interface{ Location() *time.Location }); ok {
		return z.Location()
	}
	return nil
}

// Source describes the channel to the phone.
func (g *Guarded) Source() phoneapi.PaymentSource { return g.Channel.Source() }

func call[T any](g *Guarded, ctx context.Context, what string, f func(context.Context) (T, error)) (T, error) {
	var zero T
	if !g.Breaker.Allow() {
		return zero, vend.Errorf(ErrUnhealthy, "%s: %s refused while the channel rests", g.Name(), what)
	}
	t := g.Timeout
	if t <= 0 {
		t = 15 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	v, err := f(cctx)
	if err != nil && cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil && vend.KindOf(err) != vend.Transient {
		err = vend.Errorf(ErrProvider, "%s: %s timed out after %s: %v", g.Name(), what, t, err)
	}
	g.Breaker.Record(err)
	return v, err
}

// Create opens the order at the provider.
func (g *Guarded) Create(ctx context.Context, o Order) (Action, error) {
	return call(g, ctx, "create", func(ctx context.Context) (Action, error) { return g.Channel.Create(ctx, o) })
}

// Query asks the provider for an order's state.
func (g *Guarded) Query(ctx context.Context, orderNo string) (Status, error) {
	return call(g, ctx, "query", func(ctx context.Context) (Status, error) { return g.Channel.Query(ctx, orderNo) })
}

// Close closes an unpaid order at the provider.
func (g *Guarded) Close(ctx context.Context, orderNo string) error {
	_, err := call(g, ctx, "close", func(ctx context.Context) (struct{}, error) { return struct{}{}, g.Channel.Close(ctx, orderNo) })
	return err
}

// Refund asks the provider to refund.
func (g *Guarded) Refund(ctx context.Context, r RefundRequest) (RefundStatus, error) {
	return call(g, ctx, "refund", func(ctx context.Context) (RefundStatus, error) { return g.Channel.Refund(ctx, r) })
}

// QueryRefund asks the provider for a refund's state.
func (g *Guarded) QueryRefund(ctx context.Context, orderNo, refundNo string) (RefundStatus, error) {
	return call(g, ctx, "query refund", func(ctx context.Context) (RefundStatus, error) {
		return g.Channel.QueryRefund(ctx, orderNo, refundNo)
	})
}

// Statement downloads a day's statement.
func (g *Guarded) Statement(ctx context.Context, day Day) (Statement, error) {
	return call(g, ctx, "statement", func(ctx context.Context) (Statement, error) { return g.Channel.Statement(ctx, day) })
}

// ParseNotification verifies a notification (no provider call).
func (g *Guarded) ParseNotification(ctx context.Context, r *http.Request) (Notification, error) {
	return g.Channel.ParseNotification(ctx, r)
}

// AckNotification answers the provider.
func (g *Guarded) AckNotification(w http.ResponseWriter, err error) {
	g.Channel.AckNotification(w, err)
}

// ErrNoHolds is a hold asked of a channel that cannot authorize and
// capture later (WeChat Pay and Alipay are prepaid instead).
var ErrNoHolds = vend.E(vend.Invalid, "channel.no_holds", "payments: the channel cannot hold an amount for later capture")

// Holds returns the wrapped channel as a HoldChannel whose provider
// calls (Authorize, Capture, Cancel) go through the breaker and the
// timeout like the others, and whether it is one.
func (g *Guarded) Holds() (HoldChannel, bool) {
	if _, ok := g.Channel.(HoldChannel); !ok {
		return nil, false
	}
	return guardedHold{g}, true
}

// guardedHold is a Guarded HoldChannel.
type guardedHold struct{ *Guarded }

func (h guardedHold) inner() HoldChannel { return h.Channel.(HoldChannel) }

// Authorize opens an order with manual capture at the provider.
func (h guardedHold) Authorize(ctx context.Context, o Order) (Action, error) {
	return call(h.Guarded, ctx, "authorize", func(ctx context.Context) (Action, error) { return h.inner().Authorize(ctx, o) })
}

// Capture captures part or all of an authorization.
func (h guardedHold) Capture(ctx context.Context, orderNo string, amount vend.Amount) (Status, error) {
	return call(h.Guarded, ctx, "capture", func(ctx context.Context) (Status, error) { return h.inner().Capture(ctx, orderNo, amount) })
}

// Cancel releases an authorization.
func (h guardedHold) Cancel(ctx context.Context, orderNo string) (Status, error) {
	return call(h.Guarded, ctx, "cancel", func(ctx context.Context) (Status, error) { return h.inner().Cancel(ctx, orderNo) })
}

// AuthorizationValidity is the wrapped channel's.
func (h guardedHold) AuthorizationValidity() time.Duration { return h.inner().AuthorizationValidity() }
