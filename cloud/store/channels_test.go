package store_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

func eur(m int64) vend.Amount { return vend.Amount{Minor: m, Currency: "EUR"} }

// order records a pending order of minor on channel for the env's user.
func (e *env) order(channel, no string, minor int64) store.Payment {
	e.t.Helper()
	p, created, err := e.s.CreatePayment(e.ctx, store.NewPayment{OrderNo: no, Channel: channel, User: e.user.ID, Amount: eur(minor),
		IdemKey: "k-" + no, Expires: e.clk.Now().Add(15 * time.Minute)})
	must(e.t, err)
	if !created || p.State != store.PaymentPending {
		e.t.Fatalf("CreatePayment(%s) = %+v, created %v; want a new pending order", no, p, created)
	}
	return p
}

// paidOrder records an order and marks it paid by a notification.
func (e *env) paidOrder(channel, no string, minor int64) store.Payment {
	e.t.Helper()
	e.order(channel, no, minor)
	p, credited, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: channel, OrderNo: no, ProviderTxID: "tx-" + no, Amount: eur(minor),
		PaidAt: e.clk.Now(), EventID: "ev-" + no})
	must(e.t, err)
	if !credited {
		e.t.Fatalf("MarkPaid(%s) did not credit", no)
	}
	e.clk.Add(time.Second) // paid orders are ordered by time
	return p
}

func TestPaymentPaidExactlyOnce(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.order("wechatpay", "o1", 1234)
		e.checkLedger()
		if w := e.wallet(e.user.ID); w != 0 {
			t.Fatalf("wallet after a pending order = %d, want 0", w)
		}
		paid := store.Paid{Channel: "wechatpay", OrderNo: "o1", ProviderTxID: "4200001", Amount: eur(1234), PaidAt: e.clk.Now(), EventID: "ev1"}
		p, credited, err := e.s.MarkPaid(e.ctx, paid)
		must(t, err)
		if !credited || p.State != store.PaymentPaid || p.ProviderTxID != "4200001" {
			t.Fatalf("MarkPaid = %+v credited %v", p, credited)
		}
		e.checkLedger()
		// The same notification again, a later one with another event
		// ID, and the query's answer: nothing more is credited.
		for i, again := range []store.Paid{paid, {Channel: "wechatpay", OrderNo: "o1", ProviderTxID: "4200001", Amount: eur(1234), EventID: "ev2"},
			{Channel: "wechatpay", OrderNo: "o1", ProviderTxID: "4200001", Amount: eur(1234)}} {
			_, credited, err := e.s.MarkPaid(e.ctx, again)
			must(t, err)
			if credited {
				t.Fatalf("repeat %d credited again", i)
			}
			e.checkLedger()
		}
		if w := e.wallet(e.user.ID); w != 1234 {
			t.Fatalf("wallet = %d, want 1234", w)
		}
		if c, err := e.s.Balance(e.ctx, store.ChannelClearing, "wechatpay", "EUR"); err != nil || c.Minor != -1234 {
			t.Fatalf("clearing = %v, %v; want -1234", c, err)
		}
		// Another channel naming our order is refused.
		_, _, err = e.s.MarkPaid(e.ctx, store.Paid{Channel: "alipay", OrderNo: "o1", ProviderTxID: "x", Amount: eur(1234), EventID: "a1"})
		wantCode(t, err, "payment.not_found")
		e.checkLedger()
	})
}

func TestPaymentMismatchRefusedAndAlerted(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.order("alipay", "o2", 1000)
		for i, bad := range []vend.Amount{eur(999), {Minor: 1000, Currency: "CNY"}} {
			_, credited, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: "alipay", OrderNo: "o2", ProviderTxID: "t2", Amount: bad, EventID: fmt.Sprintf("m%d", i)})
			wantCode(t, err, "payment.mismatch")
			if credited {
				t.Fatal("a mismatched amount was credited")
			}
			e.checkLedger()
		}
		p, err := e.s.GetPayment(e.ctx, "o2")
		must(t, err)
		if p.State != store.PaymentPending || e.wallet(e.user.ID) != 0 {
			t.Fatalf("after mismatches: %+v wallet %d", p, e.wallet(e.user.ID))
		}
		al, err := e.s.ChannelAlerts(e.ctx, "o2")
		must(t, err)
		if len(al) != 2 || al[0].Code != "payment.mismatch" {
			t.Fatalf("alerts = %+v, want two payment.mismatch", al)
		}
		// The right amount still credits.
		_, credited, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: "alipay", OrderNo: "o2", ProviderTxID: "t2", Amount: eur(1000), EventID: "ok"})
		must(t, err)
		if !credited {
			t.Fatal("the right amount did not credit")
		}
		// A second transaction ID for a paid order is an alert, not a credit.
		_, credited, err = e.s.MarkPaid(e.ctx, store.Paid{Channel: "alipay", OrderNo: "o2", ProviderTxID: "t3", Amount: eur(1000), EventID: "dup"})
		wantCode(t, err, "payment.mismatch")
		if credited || e.wallet(e.user.ID) != 1000 {
			t.Fatalf("second transaction credited: wallet %d", e.wallet(e.user.ID))
		}
		e.checkLedger()
	})
}

func TestPaymentConcurrentNotifyAndQueryCreditOnce(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.order("wechatpay", "o3", 500)
		var wg sync.WaitGroup
		var n atomic.Int32
		for i := 0; i < 12; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ev := ""
				if i%2 == 0 {
					ev = fmt.Sprintf("ev%d", i%4) // duplicates among notifications, queries without
				}
				_, credited, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: "wechatpay", OrderNo: "o3", ProviderTxID: "T", Amount: eur(500), EventID: ev})
				if err != nil {
					t.Error(err)
				}
				if credited {
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		if n.Load() != 1 || e.wallet(e.user.ID) != 500 {
			t.Fatalf("credited %d times, wallet %d; want once, 500", n.Load(), e.wallet(e.user.ID))
		}
		e.checkLedger()
	})
}

func TestPaymentTTLCloseAndPaidAfterClose(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.order("wechatpay", "o4", 700)
		e.order("wechatpay", "o5", 800)
		exp, err := e.s.ExpiredPayments(e.ctx, 10)
		must(t, err)
		if len(exp) != 0 {
			t.Fatalf("expired before the TTL: %+v", exp)
		}
		e.clk.Add(15*time.Minute + time.Millisecond)
		exp, err = e.s.ExpiredPayments(e.ctx, 10)
		must(t, err)
		if len(exp) != 2 {
			t.Fatalf("expired = %d orders, want 2", len(exp))
		}
		for _, p := range exp {
			q, changed, err := e.s.ClosePayment(e.ctx, p.OrderNo, false)
			must(t, err)
			if !changed || q.State != store.PaymentClosed || q.Closed.IsZero() {
				t.Fatalf("ClosePayment = %+v %v", q, changed)
			}
		}
		if _, changed, err := e.s.ClosePayment(e.ctx, "o4", false); err != nil || changed {
			t.Fatalf("second close changed %v, %v", changed, err)
		}
		// The payer paid just before the close reached the provider: the
		// money arrived and is credited.
		_, credited, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: "wechatpay", OrderNo: "o5", ProviderTxID: "T5", Amount: eur(800), EventID: "late"})
		must(t, err)
		if !credited || e.wallet(e.user.ID) != 800 {
			t.Fatalf("paid-after-close credited %v wallet %d", credited, e.wallet(e.user.ID))
		}
		exp, err = e.s.ExpiredPayments(e.ctx, 10)
		must(t, err)
		if len(exp) != 0 {
			t.Fatalf("closed orders still expire: %+v", exp)
		}
		e.checkLedger()
	})
}

func TestPaymentIdempotentCreate(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		p := e.order("alipay", "o6", 300)
		again, created, err := e.s.CreatePayment(e.ctx, store.NewPayment{OrderNo: "other", Channel: "alipay", User: e.user.ID, Amount: eur(300),
			IdemKey: "k-o6", Expires: e.clk.Now().Add(time.Minute)})
		must(t, err)
		if created || again.OrderNo != p.OrderNo {
			t.Fatalf("retry made %+v created %v, want the first order", again, created)
		}
		_, _, err = e.s.CreatePayment(e.ctx, store.NewPayment{OrderNo: "other", Channel: "alipay", User: e.user.ID, Amount: eur(301),
			IdemKey: "k-o6", Expires: e.clk.Now().Add(time.Minute)})
		wantCode(t, err, "idempotency.conflict")
		_, _, err = e.s.CreatePayment(e.ctx, store.NewPayment{OrderNo: "neg", Channel: "alipay", User: e.user.ID, Amount: eur(-1),
			Expires: e.clk.Now().Add(time.Minute)})
		wantCode(t, err, "money.amount")
		if n := e.count("channel_payments"); n != 1 {
			t.Fatalf("%d orders, want 1", n)
		}
	})
}

func TestWithdrawOldestFirstBoundedUnderConcurrency(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.paidOrder("wechatpay", "p1", 1000)
		e.paidOrder("alipay", "p2", 500)
		e.topUp(e.user.ID, 10000) // wallet money that came through no order: only the orders bound the refunds
		// Four concurrent withdrawals of 6.00 against 15.00 of orders: two fit.
		var wg sync.WaitGroup
		var ok atomic.Int32
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := e.s.Withdraw(e.ctx, e.user.ID, eur(600), fmt.Sprintf("w%d", i))
				switch {
				case err == nil:
					ok.Add(1)
					var sum int64
					for _, f := range r.Refunds {
						sum += f.Amount.Minor
					}
					if sum != 600 {
						t.Errorf("withdrawal parts sum to %d", sum)
					}
				case errors.Is(err, store.ErrRefundable), errors.Is(err, store.ErrFunds):
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 2 {
			t.Fatalf("%d withdrawals of 6.00 from 15.00 went through, want 2", ok.Load())
		}
		e.checkLedger()
		p1, _ := e.s.GetPayment(e.ctx, "p1")
		p2, _ := e.s.GetPayment(e.ctx, "p2")
		if p1.Refunded != 1000 || p2.Refunded != 200 || e.wallet(e.user.ID) != 10300 {
			t.Fatalf("refunded p1 %d p2 %d wallet %d; want 1000 (oldest first), 200, 10300", p1.Refunded, p2.Refunded, e.wallet(e.user.ID))
		}
		// A retry with a used key returns the first withdrawal.
		r, err := e.s.Withdraw(e.ctx, e.user.ID, eur(600), "w-again")
		wantCode(t, err, "refund.exceeds_refundable")
		_ = r
	})
}

func TestRefundOutcomeOnceAndReversal(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.paidOrder("wechatpay", "p1", 1000)
		r, err := e.s.Withdraw(e.ctx, e.user.ID, eur(400), "w1")
		must(t, err)
		if len(r.Refunds) != 1 || r.Refunds[0].OrderNo != "p1" || r.Refunds[0].State != store.RefundPending {
			t.Fatalf("withdrawal = %+v", r)
		}
		dup, err := e.s.Withdraw(e.ctx, e.user.ID, eur(400), "w1")
		must(t, err)
		if !dup.Duplicate || dup.ID != r.ID || e.wallet(e.user.ID) != 600 {
			t.Fatalf("retry = %+v wallet %d", dup, e.wallet(e.user.ID))
		}
		_, err = e.s.Withdraw(e.ctx, e.user.ID, eur(401), "w1")
		wantCode(t, err, "idempotency.conflict")
		no := r.Refunds[0].RefundNo
		// The refund notification comes; then again; then a late
		// duplicate of the payment notification: nothing moves twice.
		_, changed, err := e.s.ApplyRefund(e.ctx, store.RefundUpdate{Channel: "wechatpay", RefundNo: no, State: store.RefundSucceeded,
			ProviderRefundID: "50001", Amount: eur(400), EventID: "rev1"})
		must(t, err)
		if !changed {
			t.Fatal("refund success not recorded")
		}
		_, changed, err = e.s.ApplyRefund(e.ctx, store.RefundUpdate{Channel: "wechatpay", RefundNo: no, State: store.RefundSucceeded, EventID: "rev1"})
		must(t, err)
		if changed {
			t.Fatal("duplicate refund notification changed something")
		}
		_, credited, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: "wechatpay", OrderNo: "p1", ProviderTxID: "tx-p1", Amount: eur(1000), EventID: "ev-p1"})
		must(t, err)
		if credited {
			t.Fatal("late payment notification credited again")
		}
		// A failure reported after success is refused and alerted.
		_, _, err = e.s.ApplyRefund(e.ctx, store.RefundUpdate{Channel: "wechatpay", RefundNo: no, State: store.RefundFailed, EventID: "rev2"})
		wantCode(t, err, "refund.state")
		e.checkLedger()
		if e.wallet(e.user.ID) != 600 {
			t.Fatalf("wallet %d, want 600", e.wallet(e.user.ID))
		}

		// A second refund fails at the provider: reversed exactly once.
		r2, err := e.s.Withdraw(e.ctx, e.user.ID, eur(250), "w2")
		must(t, err)
		no2 := r2.Refunds[0].RefundNo
		for i := 0; i < 3; i++ {
			_, changed, err := e.s.ApplyRefund(e.ctx, store.RefundUpdate{Channel: "wechatpay", RefundNo: no2, State: store.RefundFailed, EventID: fmt.Sprintf("f%d", i)})
			must(t, err)
			if changed != (i == 0) {
				t.Fatalf("failure %d changed %v", i, changed)
			}
			e.checkLedger()
		}
		p1, _ := e.s.GetPayment(e.ctx, "p1")
		if e.wallet(e.user.ID) != 600 || p1.Refunded != 400 {
			t.Fatalf("after a failed refund: wallet %d refunded %d; want 600, 400", e.wallet(e.user.ID), p1.Refunded)
		}
		// A forged refund number of another channel changes nothing.
		_, _, err = e.s.ApplyRefund(e.ctx, store.RefundUpdate{Channel: "alipay", RefundNo: no2, State: store.RefundSucceeded, EventID: "x"})
		wantCode(t, err, "refund.not_found")
	})
}

func TestRefundSessionToChannelThenWallet(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.paidOrder("alipay", "p1", 300)
		e.topUp(e.user.ID, 1000) // money that did not come through a recorded order
		ss, err := e.start(e.user.ID, "w1", "", 20000, "s1")
		must(t, err)
		must(t, e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now()))
		u, sig := e.usage(ss, 10000, vend.OutcomeCompleted) // 500
		_, err = e.s.Settle(e.ctx, u, sig)
		must(t, err)
		e.checkLedger()
		_, err = e.s.RefundSession(e.ctx, e.opA.ID, ss.ID, eur(100), "", "r0")
		wantCode(t, err, "store.input")
		_, err = e.s.RefundSession(e.ctx, "op_other", ss.ID, eur(100), "wet floor", "r0")
		wantCode(t, err, "session.not_found")
		r, err := e.s.RefundSession(e.ctx, e.opA.ID, ss.ID, eur(400), "machine leaked", "r1")
		must(t, err)
		if len(r.Refunds) != 1 || r.Refunds[0].Amount.Minor != 300 || r.Refunds[0].Channel != "alipay" || r.Wallet != 100 {
			t.Fatalf("session refund = %+v, want 3.00 to alipay and 1.00 to the wallet", r)
		}
		if rev := e.revenue(e.opA.ID); rev != 100 {
			t.Fatalf("revenue %d, want 100", rev)
		}
		e.checkLedger()
		_, err = e.s.RefundSession(e.ctx, e.opA.ID, ss.ID, eur(101), "more", "r2")
		wantCode(t, err, "refund.exceeds_refundable")
		// The channel refund fails: the operator's revenue gets it back,
		// and it can be refunded again.
		_, _, err = e.s.ApplyRefund(e.ctx, store.RefundUpdate{Channel: "alipay", RefundNo: r.Refunds[0].RefundNo, State: store.RefundFailed})
		must(t, err)
		if rev := e.revenue(e.opA.ID); rev != 400 {
			t.Fatalf("revenue after failure %d, want 400", rev)
		}
		e.checkLedger()
		_, err = e.s.RefundSession(e.ctx, e.opA.ID, ss.ID, eur(400), "again", "r3")
		must(t, err)
		e.checkLedger()
		list, err := e.s.SessionRefunds(e.ctx, ss.ID)
		must(t, err)
		if len(list) != 2 {
			t.Fatalf("session refunds = %d, want 2", len(list))
		}
	})
}

func TestPostChannelFeeOnce(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.paidOrder("wechatpay", "p1", 1000)
		for i := 0; i < 2; i++ {
			posted, err := e.s.PostChannelFee(e.ctx, "wechatpay", "chanfee:wechatpay:2026-03-01:1", eur(6))
			must(t, err)
			if posted != (i == 0) {
				t.Fatalf("fee post %d posted %v", i, posted)
			}
		}
		posted, err := e.s.PostChannelFee(e.ctx, "wechatpay", "chanfee:wechatpay:2026-03-01:2", eur(-2))
		must(t, err)
		if !posted {
			t.Fatal("returned fee not posted")
		}
		f, err := e.s.Balance(e.ctx, store.Fees, "wechatpay", "EUR")
		must(t, err)
		if f.Minor != -4 {
			t.Fatalf("fees = %d, want -4", f.Minor)
		}
		e.checkLedger()
	})
}

func TestRefundSessionBoundedUnderConcurrency(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.paidOrder("wechatpay", "p1", 2000)
		ss, err := e.start(e.user.ID, "w1", "", 20000, "s1")
		must(t, err)
		must(t, e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now()))
		u, sig := e.usage(ss, 10000, vend.OutcomeCompleted) // 500 captured
		_, err = e.s.Settle(e.ctx, u, sig)
		must(t, err)
		e.topUp(e.user.ID, 1) // unrelated wallet money
		var wg sync.WaitGroup
		var ok atomic.Int32
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.s.RefundSession(e.ctx, e.opA.ID, ss.ID, eur(300), "leak", fmt.Sprintf("k%d", i))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, store.ErrRefundable):
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Fatalf("%d refunds of 3.00 of a 5.00 session went through, want 1", ok.Load())
		}
		if rev := e.revenue(e.opA.ID); rev != 200 {
			t.Fatalf("revenue %d, want 200", rev)
		}
		e.checkLedger()
	})
}
