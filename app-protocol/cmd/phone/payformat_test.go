package main

import (
	"bytes"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

func cny(minor int64) phoneapi.Amount { return vend.Amount{Minor: minor, Currency: "CNY"} }

// A payment's receipt names our order number, the channel, the
// provider's transaction ID and what was refunded of it, in each state.
func TestFormatPayment(t *testing.T) {
	t.Setenv("TZ", "UTC")
	created := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	paid := &Payment{Order: "T01", Source: "wechatpay", State: PaymentPaid, Amount: cny(2000), CreatedAt: created,
		ExpiresAt: created.Add(5 * time.Minute), PaidAt: created.Add(40 * time.Second), ProviderTxID: "4200001234", Refunded: cny(500)}
	for _, c := range []struct {
		name string
		p    func(p Payment) Payment
		now  time.Time
		want string
	}{
		{"paid, partly refunded", func(p Payment) Payment { return p }, created, `payment T01
  channel      wechatpay
  amount       20.00 CNY
  state        paid 2026-12-07 09:30:40 UTC
  created      2026-12-07 09:30:00 UTC
  provider tx  4200001234
  refunded     5.00 CNY
`},
		{"all refunded", func(p Payment) Payment { p.Refunded = cny(2000); return p }, created, "refunded     20.00 CNY (all of it)\n"},
		{"nothing refunded, test", func(p Payment) Payment { p.Refunded, p.Test = cny(0), true; return p }, created, "channel      wechatpay (test)\n"},
		{"pending", func(p Payment) Payment {
			p.State, p.PaidAt, p.ProviderTxID, p.Refunded = PaymentPending, time.Time{}, "", cny(0)
			return p
		}, created, "state        pending, payable until 2026-12-07 09:35:00 UTC\n  created"},
		{"pending past expiry", func(p Payment) Payment { p.State, p.ProviderTxID = PaymentPending, ""; return p }, created.Add(time.Hour),
			"state        pending, expired 2026-12-07 09:35:00 UTC\n"},
		{"closed", func(p Payment) Payment { p.State, p.ProviderTxID = PaymentClosed, ""; return p }, created, "state        closed unpaid, nothing charged\n  created      2026-12-07 09:30:00 UTC\n"},
	} {
		p := c.p(*paid)
		got := formatPayment(&p, c.now)
		if !strings.Contains(got, c.want) {
			t.Errorf("%s: formatPayment =\n%s\nwant it to contain\n%s", c.name, got, c.want)
		}
		if p.State != PaymentPaid && strings.Contains(got, "refunded") {
			t.Errorf("%s: an unpaid order shows a refund:\n%s", c.name, got)
		}
	}
}

func TestFormatWithdrawal(t *testing.T) {
	wd := &Withdrawal{ID: "W1", Amount: cny(1750), State: WithdrawalPending, Refunds: []RefundPart{
		{RefundNo: "RF1", Order: "T01", Source: "wechatpay", Amount: cny(1000), State: RefundSucceeded, ProviderRefundID: "50300001"},
		{RefundNo: "RF2", Order: "T02", Source: "alipay", Amount: cny(750), State: RefundPending},
	}}
	want := `withdrawal W1 pending: 17.50 CNY back to the channels it came from
  REFUND  ORDER  CHANNEL    AMOUNT     STATE      PROVIDER REFUND ID
  RF1     T01    wechatpay  10.00 CNY  succeeded  50300001
  RF2     T02    alipay     7.50 CNY   pending    -
`
	if got := formatWithdrawal(wd); got != want {
		t.Errorf("formatWithdrawal =\n%s\nwant\n%s", got, want)
	}
}

// An operator's refund of a session shows each part through a channel
// and the rest to the wallet.
func TestFormatOperatorRefund(t *testing.T) {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	formatOperatorRefund(tw, cny(300), []RefundPart{
		{RefundNo: "RF9", Order: "T01", Source: "alipay", Amount: cny(200), State: RefundSucceeded, ProviderRefundID: "2026120722009"},
	})
	formatOperatorRefund(tw, cny(0), nil) // nothing refunded: nothing printed
	tw.Flush()
	want := `  operator refund  3.00 CNY
                   2.00 CNY to alipay, order T01, refund RF9 (succeeded), provider refund ID 2026120722009
                   1.00 CNY to the wallet
`
	if b.String() != want {
		t.Errorf("formatOperatorRefund =\n%q\nwant\n%q", b.String(), want)
	}
}

// On a terminal the wait is one line redrawn in place; a note clears it
// first and Finish ends it.
func TestPayViewTerminal(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var b bytes.Buffer
	v := newPayView(&b, true, clock)
	p := &Payment{Order: "T01", State: PaymentPending, ExpiresAt: now.Add(5 * time.Minute)}
	v.Update(p)
	now = now.Add(2 * time.Second)
	v.Update(p)
	v.Note("asking again: x")
	now = now.Add(2 * time.Second)
	p.State = PaymentPaid
	v.Update(p)
	v.Finish()
	want := "\r\x1b[Korder T01 pending 0s, expires in 5m0s" +
		"\r\x1b[Korder T01 pending 2s, expires in 4m58s" +
		"\r\x1b[Kasking again: x\n" +
		"\r\x1b[Korder T01 paid    4s\n"
	if b.String() != want {
		t.Errorf("payView on a terminal wrote\n%q\nwant\n%q", b.String(), want)
	}
}
