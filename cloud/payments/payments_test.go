package payments_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/paytest"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func eur(m int64) vend.Amount { return vend.Amount{Minor: m, Currency: "EUR"} }

func TestLimitsCheck(t *testing.T) {
	l := payments.Limits{Min: 100, Max: 5000, PerUserDay: 8000, PerDay: 20000, Currencies: []vend.Currency{"EUR"}}
	for _, c := range []struct {
		amount    vend.Amount
		user, all int64
		ok        bool
	}{
		{eur(100), 0, 0, true},
		{eur(99), 0, 0, false},
		{eur(5000), 0, 0, true},
		{eur(5001), 0, 0, false},
		{vend.Amount{Minor: 1000, Currency: "CNY"}, 0, 0, false},
		{eur(3000), 5000, 0, true},
		{eur(3001), 5000, 0, false},
		{eur(1000), 0, 19000, true},
		{eur(1001), 0, 19000, false},
	} {
		err := l.Check(c.amount, c.user, c.all)
		if (err == nil) != c.ok || (err != nil && vend.CodeOf(err) != "source.limit") {
			t.Errorf("Check(%s, %d, %d) = %v, want ok=%v", c.amount, c.user, c.all, err, c.ok)
		}
	}
}

func TestBreakerOpensAndRecovers(t *testing.T) {
	clk := newClock()
	boom := vend.Errorf(payments.ErrProvider, "503")
	var fail atomic.Bool
	ch := &paytest.Channel{ID: "wechatpay", Fail: func(op, _ string) error {
		if fail.Load() {
			return boom
		}
		return nil
	}}
	g := payments.Guard(ch, payments.Limits{}, 0, payments.NewBreaker(payments.BreakerOpts{Failures: 3, Cooldown: 30 * time.Second, Now: clk.Now}))
	ctx := context.Background()
	fail.Store(true)
	for i := 0; i < 3; i++ {
		if _, err := g.Query(ctx, "x"); !errors.Is(err, payments.ErrProvider) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if g.Healthy() {
		t.Fatal("healthy after 3 technical failures")
	}
	// Open: refused without reaching the provider.
	before := ch.Count("query")
	if _, err := g.Query(ctx, "x"); vend.CodeOf(err) != "channel.unhealthy" {
		t.Fatalf("open breaker let a call through: %v", err)
	}
	if ch.Count("query") != before {
		t.Fatal("open breaker reached the provider")
	}
	// Cool-down over: one probe; it fails, open again.
	clk.Add(30 * time.Second)
	if !g.Healthy() {
		t.Fatal("not half-open after the cool-down")
	}
	if _, err := g.Query(ctx, "x"); !errors.Is(err, payments.ErrProvider) {
		t.Fatalf("probe: %v", err)
	}
	if g.Healthy() {
		t.Fatal("a failed probe did not reopen it")
	}
	// Next probe succeeds (a business refusal counts as an answer): closed.
	clk.Add(30 * time.Second)
	fail.Store(false)
	if _, err := g.Query(ctx, "unknown"); vend.CodeOf(err) != "channel.refused" {
		t.Fatalf("probe: %v", err)
	}
	if !g.Healthy() {
		t.Fatal("a successful probe did not close it")
	}
	// Business refusals never open it.
	for i := 0; i < 10; i++ {
		_, _ = g.Query(ctx, "unknown")
	}
	if !g.Healthy() {
		t.Fatal("business refusals opened the breaker")
	}
}

func TestBreakerHalfOpenLetsOneProbe(t *testing.T) {
	clk := newClock()
	b := payments.NewBreaker(payments.BreakerOpts{Failures: 1, Cooldown: time.Second, Now: clk.Now})
	if b.Open() {
		t.Fatal("a new breaker reads open")
	}
	b.Record(errors.New("timeout"))
	if !b.Open() {
		t.Fatal("a tripped breaker reads closed")
	}
	clk.Add(time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the cool-down")
	}
	if b.Allow() {
		t.Fatal("a second probe while the first is out")
	}
	if !b.Open() {
		t.Fatal("a half-open breaker with its probe out reads closed")
	}
	b.Record(nil)
	if b.Open() {
		t.Fatal("a breaker closed by its probe reads open")
	}
	if !b.Allow() || !b.Allow() {
		t.Fatal("closed breaker refuses")
	}
}

func TestRouterPick(t *testing.T) {
	clk := newClock()
	wx := &paytest.Channel{ID: "wechatpay"}
	ali := &paytest.Channel{ID: "alipay"}
	bw := payments.NewBreaker(payments.BreakerOpts{Failures: 1, Now: clk.Now})
	gw := payments.Guard(wx, payments.Limits{Max: 1000}, 1, bw)
	ga := payments.Guard(ali, payments.Limits{Max: 5000, PerUserDay: 6000}, 2, nil)
	today := map[string]int64{}
	totals := func(_ context.Context, ch, user string, since time.Time) (int64, error) {
		if !since.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
			return 0, fmt.Errorf("since %s, want the day's midnight", since)
		}
		return today[ch+"/"+user], nil
	}
	r := payments.NewRouter([]*payments.Guarded{ga, gw}, totals, time.UTC, clk.Now)
	ctx := context.Background()
	pick := func(amount int64, chosen string) (string, error) {
		g, err := r.Pick(ctx, "u1", eur(amount), chosen)
		if err != nil {
			return "", err
		}
		return g.Name(), nil
	}
	if n, err := pick(500, ""); err != nil || n != "wechatpay" {
		t.Fatalf("priority pick = %s, %v; want wechatpay", n, err)
	}
	if n, err := pick(2000, ""); err != nil || n != "alipay" {
		t.Fatalf("over wechatpay's max = %s, %v; want alipay", n, err)
	}
	if n, err := pick(500, "alipay"); err != nil || n != "alipay" {
		t.Fatalf("chosen = %s, %v; want alipay", n, err)
	}
	// The chosen channel does not fit: no silent switch, the error lists
	// what would.
	_, err := pick(2000, "wechatpay")
	var le *payments.LimitError
	if !errors.As(err, &le) || vend.CodeOf(err) != "source.limit" || len(le.Alternatives) != 1 || le.Alternatives[0] != "alipay" {
		t.Fatalf("chosen over its limit = %v, want source.limit listing alipay", err)
	}
	// Per-user day on alipay used up: nothing fits 2000.
	today["alipay/u1"] = 5000
	if _, err := pick(2000, ""); !errors.As(err, &le) || len(le.Alternatives) != 0 {
		t.Fatalf("nothing fits = %v", err)
	}
	// wechatpay unhealthy: skipped before an order exists.
	bw.Record(errors.New("timeout"))
	today["alipay/u1"] = 0
	if n, err := pick(500, ""); err != nil || n != "alipay" {
		t.Fatalf("unhealthy first = %s, %v; want alipay", n, err)
	}
	if _, err := pick(500, "nope"); vend.CodeOf(err) != "source.not_found" {
		t.Fatalf("unknown source = %v", err)
	}
}

// holdFake is a HoldChannel whose Capture fails with a provider error.
type holdFake struct {
	payments.Sandbox
	captures int
}

func (h *holdFake) Authorize(context.Context, payments.Order) (payments.Action, error) {
	return payments.Action{}, nil
}

func (h *holdFake) Capture(context.Context, string, vend.Amount) (payments.Status, error) {
	h.captures++
	return payments.Status{}, vend.Errorf(payments.ErrProvider, "fake: 500")
}

func (h *holdFake) Cancel(context.Context, string) (payments.Status, error) {
	return payments.Status{}, nil
}

func (h *holdFake) AuthorizationValidity() time.Duration { return 7 * 24 * time.Hour }

// Hold calls go through the breaker: once it opens, a capture is refused
// without reaching the provider.
func TestGuardedHoldsUseTheBreaker(t *testing.T) {
	inner := &holdFake{}
	g := payments.Guard(inner, payments.Limits{}, 0, payments.NewBreaker(payments.BreakerOpts{Failures: 2, Cooldown: time.Hour}))
	h, ok := g.Holds()
	if !ok {
		t.Fatal("a HoldChannel is not seen as one")
	}
	amt := vend.Amount{Minor: 100, Currency: "CNY"}
	for range 2 {
		if _, err := h.Capture(context.Background(), "o1", amt); vend.KindOf(err) != vend.Transient {
			t.Fatalf("capture = %v, want the provider's transient error", err)
		}
	}
	if _, err := h.Capture(context.Background(), "o1", amt); vend.CodeOf(err) != payments.ErrUnhealthy.Code {
		t.Fatalf("capture with the breaker open = %v, want %s", err, payments.ErrUnhealthy.Code)
	}
	if inner.captures != 2 {
		t.Fatalf("provider saw %d captures, want 2", inner.captures)
	}
	if _, ok := payments.Guard(&payments.Sandbox{}, payments.Limits{}, 0, nil).Holds(); ok {
		t.Fatal("the sandbox claims to hold")
	}
}
