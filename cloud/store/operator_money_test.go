package store_test

import (
	"fmt"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// settled starts a water session for user, runs it and settles units
// (50 EUR cents per 1000 ml).
func (e *env) settled(user, key string, units uint64) store.Session {
	e.t.Helper()
	ss, err := e.start(user, "w1", "", 20000, key)
	must(e.t, err)
	must(e.t, e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now()))
	u, sig := e.usage(ss, units, vend.OutcomeCompleted)
	_, err = e.s.Settle(e.ctx, u, sig)
	must(e.t, err)
	return ss
}

func TestSearchSessionsPagesWithoutCap(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 100000)
		var ids []vend.SessionID
		for i := 0; i < 7; i++ {
			ids = append(ids, e.settled(e.user.ID, fmt.Sprintf("s%d", i), 2000).ID)
			if i%2 == 0 {
				e.clk.Add(time.Second) // some share a creation time: the ID orders them
			}
		}
		// Pages of 3 walk all 7, newest first, each once.
		seen := map[vend.SessionID]bool{}
		cur, pages := "", 0
		var prev time.Time
		for {
			p, err := e.s.SearchSessions(e.ctx, e.opA.ID, store.SessionQuery{Cursor: cur, Limit: 3})
			must(t, err)
			pages++
			for _, ss := range p.Sessions {
				if seen[ss.ID] {
					t.Fatalf("session %s on two pages", ss.ID)
				}
				if !prev.IsZero() && ss.Created.After(prev) {
					t.Fatalf("page order: %v after %v", ss.Created, prev)
				}
				seen[ss.ID], prev = true, ss.Created
			}
			if p.Next == "" {
				break
			}
			cur = p.Next
		}
		if len(seen) != 7 || pages != 3 {
			t.Fatalf("walked %d sessions in %d pages, want 7 in 3", len(seen), pages)
		}
		// Another operator sees none of them.
		p, err := e.s.SearchSessions(e.ctx, "op_other", store.SessionQuery{})
		must(t, err)
		if len(p.Sessions) != 0 {
			t.Fatalf("another operator sees %d sessions", len(p.Sessions))
		}
		// Filters.
		p, err = e.s.SearchSessions(e.ctx, e.opA.ID, store.SessionQuery{Machine: "wash1"})
		must(t, err)
		if len(p.Sessions) != 0 {
			t.Fatalf("machine filter: %d sessions on wash1, want 0", len(p.Sessions))
		}
		p, err = e.s.SearchSessions(e.ctx, e.opA.ID, store.SessionQuery{State: store.Settled, Outcome: vend.OutcomeCompleted, Device: "dev-a"})
		must(t, err)
		if len(p.Sessions) != 7 {
			t.Fatalf("state+outcome filter: %d, want 7", len(p.Sessions))
		}
		// Payer references: the receipt number names one session.
		p, err = e.s.SearchSessions(e.ctx, e.opA.ID, store.SessionQuery{Payer: " R-" + ids[3].String() + " "})
		must(t, err)
		if len(p.Sessions) != 1 || p.Sessions[0].ID != ids[3] {
			t.Fatalf("receipt search = %v, want %s", p.Sessions, ids[3])
		}
		// A top-up's provider transaction ID names its payer's sessions.
		e.paidOrder("alipay", "p-other", 300)
		p, err = e.s.SearchSessions(e.ctx, e.opA.ID, store.SessionQuery{Payer: "tx-p-other"})
		must(t, err)
		if len(p.Sessions) != 7 {
			t.Fatalf("top-up search = %d sessions, want the payer's 7", len(p.Sessions))
		}
		p, err = e.s.SearchSessions(e.ctx, e.opA.ID, store.SessionQuery{Payer: "nobody"})
		must(t, err)
		if len(p.Sessions) != 0 {
			t.Fatalf("unknown reference found %d", len(p.Sessions))
		}
		// Bad input: a clear error.
		_, err = e.s.SearchSessions(e.ctx, e.opA.ID, store.SessionQuery{Cursor: "!!not a cursor"})
		wantCode(t, err, "request.cursor")
		_, err = e.s.SearchSessions(e.ctx, e.opA.ID, store.SessionQuery{State: "paid"})
		wantCode(t, err, "store.input")
	})
}

func TestRevenueAndAccountBook(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		must(t, e.s.SetDeviceLocation(e.ctx, e.opA.ID, "dev-a", "Station Road"))
		wantCode(t, e.s.SetDeviceLocation(e.ctx, "op_other", "dev-a", "x"), "device.not_found")
		e.topUp(e.user.ID, 10000)
		day1 := e.clk.Now()
		s1 := e.settled(e.user.ID, "s1", 4000) // 200
		e.clk.Add(24 * time.Hour)
		e.settled(e.user.ID, "s2", 3000) // 150
		_, err := e.s.RefundSession(e.ctx, e.opA.ID, s1.ID, eur(50), "short pour", "r1")
		must(t, err)
		from, to := day1.Add(-time.Hour), e.clk.Now().Add(time.Hour)

		days, err := e.s.RevenueBy(e.ctx, e.opA.ID, store.ByDay, from, to)
		must(t, err)
		want := []store.RevenueLine{
			{Key: day1.Format(time.DateOnly), Currency: "EUR", Gross: 200, Net: 200, Sessions: 1},
			{Key: e.clk.Now().Format(time.DateOnly), Currency: "EUR", Gross: 150, Refunds: 50, Net: 100, Sessions: 1},
		}
		if fmt.Sprint(days) != fmt.Sprint(want) {
			t.Fatalf("by day = %+v\nwant %+v", days, want)
		}
		locs, err := e.s.RevenueBy(e.ctx, e.opA.ID, store.ByLocation, from, to)
		must(t, err)
		if len(locs) != 1 || locs[0].Key != "Station Road" || locs[0].Net != 300 || locs[0].Sessions != 2 {
			t.Fatalf("by location = %+v", locs)
		}
		devs, err := e.s.RevenueBy(e.ctx, e.opA.ID, store.ByDevice, from, to)
		must(t, err)
		if len(devs) != 1 || devs[0].Key != "dev-a" || devs[0].Gross != 350 {
			t.Fatalf("by device = %+v", devs)
		}
		_, err = e.s.RevenueBy(e.ctx, e.opA.ID, "month", from, to)
		wantCode(t, err, "store.input")

		// The account book: each entry with the balance after it; a range
		// that starts after the first entry still carries its balance.
		var book []store.Movement
		must(t, e.s.Movements(e.ctx, e.opA.ID, from, to, func(m store.Movement) error { book = append(book, m); return nil }))
		var got []string
		for _, m := range book {
			got = append(got, fmt.Sprintf("%s %d %d", m.Kind, m.Amount.Minor, m.Balance.Minor))
		}
		if w := "[capture 200 200 capture 150 350 session_refund -50 300]"; fmt.Sprint(got) != w {
			t.Fatalf("book = %v, want %v", got, w)
		}
		var late []store.Movement
		must(t, e.s.Movements(e.ctx, e.opA.ID, day1.Add(time.Hour), to, func(m store.Movement) error { late = append(late, m); return nil }))
		if len(late) != 2 || late[0].Balance.Minor != 350 || late[0].Session.IsZero() {
			t.Fatalf("book from day 2 = %+v", late)
		}
		e.checkLedger()
	})
}

func TestRefundApprovals(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		_, ok, err := e.s.RefundThreshold(e.ctx, e.opA.ID)
		must(t, err)
		if ok {
			t.Fatal("a new operator has a refund threshold")
		}
		must(t, e.s.SetRefundThreshold(e.ctx, e.opA.ID, &vend.Amount{Minor: 100, Currency: "EUR"}))
		th, ok, err := e.s.RefundThreshold(e.ctx, e.opA.ID)
		must(t, err)
		if !ok || th.Minor != 100 {
			t.Fatalf("threshold = %v %v", th, ok)
		}
		e.topUp(e.user.ID, 10000)
		ss := e.settled(e.user.ID, "s1", 8000) // 400
		in := store.NewApproval{Operator: e.opA.ID, Session: ss.ID.String(), Amount: eur(300), Reason: "leak", Key: "k1",
			RequestedBy: "acc_manager", ReqByEmail: "m@example.com"}
		a, err := e.s.RequestRefundApproval(e.ctx, in)
		must(t, err)
		// A double submission is the same request.
		a2, err := e.s.RequestRefundApproval(e.ctx, in)
		must(t, err)
		if a2.ID != a.ID || !a2.Duplicate || a.State != store.ApprovalPending {
			t.Fatalf("second request = %+v, want the first (%s) again", a2, a.ID)
		}
		in2 := in
		in2.Amount = eur(301)
		_, err = e.s.RequestRefundApproval(e.ctx, in2)
		wantCode(t, err, "idempotency.conflict")
		in3 := in
		in3.Operator, in3.Key = "op_other", "k9"
		_, err = e.s.RequestRefundApproval(e.ctx, in3)
		wantCode(t, err, "session.not_found")
		open, err := e.s.RefundApprovals(e.ctx, e.opA.ID, vend.SessionID{}, true)
		must(t, err)
		if len(open) != 1 {
			t.Fatalf("open approvals = %d, want 1", len(open))
		}
		// The requester cannot approve or reject their own.
		_, err = e.s.ClaimRefundApproval(e.ctx, e.opA.ID, a.ID, "acc_manager", "m@example.com", "")
		wantCode(t, err, "refund.approval_self")
		_, err = e.s.RejectRefundApproval(e.ctx, e.opA.ID, a.ID, "acc_manager", "m@example.com", "no")
		wantCode(t, err, "refund.approval_self")
		// Another operator's owner cannot see it.
		_, err = e.s.ClaimRefundApproval(e.ctx, "op_other", a.ID, "acc_owner", "o@example.com", "")
		wantCode(t, err, "refund.approval_not_found")
		c, err := e.s.ClaimRefundApproval(e.ctx, e.opA.ID, a.ID, "acc_owner", "o@example.com", "ok")
		must(t, err)
		if c.State != store.ApprovalApproving || c.DecidedEmail != "o@example.com" {
			t.Fatalf("claimed = %+v", c)
		}
		// The same owner again (a crash before the refund) may finish it; a
		// second owner may not, nor may it be rejected now.
		_, err = e.s.ClaimRefundApproval(e.ctx, e.opA.ID, a.ID, "acc_owner", "o@example.com", "ok")
		must(t, err)
		_, err = e.s.ClaimRefundApproval(e.ctx, e.opA.ID, a.ID, "acc_owner2", "o2@example.com", "ok")
		wantCode(t, err, "refund.approval_state")
		_, err = e.s.RejectRefundApproval(e.ctx, e.opA.ID, a.ID, "acc_owner2", "o2@example.com", "no")
		wantCode(t, err, "refund.approval_state")
		f, err := e.s.FinishRefundApproval(e.ctx, e.opA.ID, a.ID, "rr_x")
		must(t, err)
		if f.State != store.ApprovalApproved || f.Refund != "rr_x" {
			t.Fatalf("finished = %+v", f)
		}
		// A rejected one, and an expired one.
		b1, err := e.s.RequestRefundApproval(e.ctx, store.NewApproval{Operator: e.opA.ID, Session: ss.ID.String(), Amount: eur(50),
			Reason: "x", Key: "k2", RequestedBy: "acc_manager", ReqByEmail: "m@example.com"})
		must(t, err)
		_, err = e.s.RejectRefundApproval(e.ctx, e.opA.ID, b1.ID, "acc_owner", "o@example.com", "")
		wantCode(t, err, "store.input")
		r, err := e.s.RejectRefundApproval(e.ctx, e.opA.ID, b1.ID, "acc_owner", "o@example.com", "not our fault")
		must(t, err)
		if r.State != store.ApprovalRejected {
			t.Fatalf("rejected = %+v", r)
		}
		_, err = e.s.ClaimRefundApproval(e.ctx, e.opA.ID, b1.ID, "acc_owner", "o@example.com", "")
		wantCode(t, err, "refund.approval_state")
		c1, err := e.s.RequestRefundApproval(e.ctx, store.NewApproval{Operator: e.opA.ID, Session: ss.ID.String(), Amount: eur(50),
			Reason: "x", Key: "k3", RequestedBy: "acc_manager", ReqByEmail: "m@example.com"})
		must(t, err)
		e.clk.Add(store.ApprovalTTL)
		got, err := e.s.RefundApproval(e.ctx, e.opA.ID, c1.ID)
		must(t, err)
		if got.State != store.ApprovalExpired {
			t.Fatalf("after its bound: %s, want expired", got.State)
		}
		_, err = e.s.ClaimRefundApproval(e.ctx, e.opA.ID, c1.ID, "acc_owner", "o@example.com", "")
		wantCode(t, err, "refund.approval_state")
		open, err = e.s.RefundApprovals(e.ctx, e.opA.ID, vend.SessionID{}, true)
		must(t, err)
		if len(open) != 0 {
			t.Fatalf("open approvals after all decided or expired = %d", len(open))
		}
		all, err := e.s.RefundApprovals(e.ctx, e.opA.ID, ss.ID, false)
		must(t, err)
		if len(all) != 3 {
			t.Fatalf("session's approvals = %d, want 3", len(all))
		}
	})
}

func TestPlanSessionRefundMatchesRefund(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.paidOrder("alipay", "p1", 300)
		e.topUp(e.user.ID, 1000)
		ss := e.settled(e.user.ID, "s1", 10000) // 500
		p, err := e.s.PlanSessionRefund(e.ctx, e.opA.ID, ss.ID, eur(400))
		must(t, err)
		if len(p.Channels) != 1 || p.Channels[0].Amount.Minor != 300 || p.Channels[0].ProviderTx != "tx-p1" || p.Wallet.Minor != 100 || p.Refundable.Minor != 500 {
			t.Fatalf("plan = %+v, want 3.00 to alipay and 1.00 to the wallet of 5.00", p)
		}
		r, err := e.s.RefundSession(e.ctx, e.opA.ID, ss.ID, eur(400), "leak", "r1")
		must(t, err)
		if r.Refunds[0].Amount.Minor != 300 || r.Wallet != 100 {
			t.Fatalf("refund = %+v, differs from its plan", r)
		}
		_, err = e.s.PlanSessionRefund(e.ctx, e.opA.ID, ss.ID, eur(101))
		wantCode(t, err, "refund.exceeds_refundable")
		_, err = e.s.PlanSessionRefund(e.ctx, "op_other", ss.ID, eur(1))
		wantCode(t, err, "session.not_found")
	})
}
