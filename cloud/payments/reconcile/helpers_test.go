package reconcile_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/reconcile"
	"beaconvend/cloud/store"
)

const ch = "wechatpay"

var cst = reconcile.ChinaStandardTime

func TestMain(m *testing.M) {
	if os.Getenv("VEND_PG_DSN") == "" && os.Getenv("VEND_REQUIRE_SERVICES") == "" {
		fmt.Fprintln(os.Stderr, "!!!!!! cloud/payments/reconcile: VEND_PG_DSN is unset: the PostgreSQL half of this suite is SKIPPED. "+
			"Run `export \"$(scripts/pg.sh | tail -n1)\"` to run it. !!!!!!")
	}
	os.Exit(m.Run())
}

// clock is a settable test clock.
type clock struct{ ms atomic.Int64 }

func (c *clock) Now() time.Time      { return time.UnixMilli(c.ms.Load()).UTC() }
func (c *clock) Set(t time.Time)     { c.ms.Store(t.UnixMilli()) }
func (c *clock) Add(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// at returns the instant of day d at hh:mm:ss in China Standard Time.
func at(d payments.Day, hh, mm, ss int) time.Time {
	return time.Date(d.Year, d.Month, d.Day, hh, mm, ss, 0, cst)
}

var (
	day1 = payments.Day{Year: 2026, Month: 3, Day: 1}
	day2 = payments.Day{Year: 2026, Month: 3, Day: 2}
	day3 = payments.Day{Year: 2026, Month: 3, Day: 3}
)

// fixture is one test's store with a user, on one database.
type fixture struct {
	t      testing.TB
	ctx    context.Context
	s      *store.Store
	clk    *clock
	user   string
	sqlite bool
}

// forEachDB runs fn on SQLite and on PostgreSQL.
func forEachDB(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, newFixture(t, "sqlite:"+t.TempDir()+"/store.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, newFixture(t, svctest.PostgresDSN(t, "vend_recon_test"))) })
}

func newFixture(t testing.TB, dsn string) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: context.Background(), clk: &clock{}, sqlite: !strings.HasPrefix(dsn, "postgres")}
	f.clk.Set(at(day3, 10, 0, 0))
	s, err := store.Open(f.ctx, dsn, &store.Opts{Now: f.clk.Now, BcryptCost: 4})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	f.s = s
	u, err := s.CreateUser(f.ctx, "payer@example.com", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	f.user = u.ID
	return f
}

func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// conn runs fn on one connection in one transaction.
func (f *fixture) conn(fn func(tx *sql.Tx) error) error {
	c, err := f.s.DB().Conn(f.ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var tx *sql.Tx
	for i := 0; ; i++ {
		tx, err = c.BeginTx(f.ctx, nil)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func account(ctx context.Context, tx *sql.Tx, kind, owner string, cur vend.Currency) (int64, error) {
	neg := 0
	if kind == "channel_clearing" || kind == "fees" {
		neg = 1
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (kind, owner, currency, may_go_negative, created_ms)
		VALUES ($1, $2, $3, $4, 0) ON CONFLICT (kind, owner, currency) DO NOTHING`, kind, owner, string(cur), neg); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM accounts WHERE kind = $1 AND owner = $2 AND currency = $3`, kind, owner, string(cur)).Scan(&id)
	return id, err
}

// post writes one balanced ledger transaction under key, as the channel
// machinery does; false when the key exists.
func post(ctx context.Context, tx *sql.Tx, kind, key string, from, to [2]string, amt vend.Amount) (bool, error) {
	a, err := account(ctx, tx, from[0], from[1], amt.Currency)
	if err != nil {
		return false, err
	}
	b, err := account(ctx, tx, to[0], to[1], amt.Currency)
	if err != nil {
		return false, err
	}
	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO ledger_tx (kind, idem_key, created_ms) VALUES ($1, $2, 0)
		ON CONFLICT (idem_key) DO NOTHING RETURNING id`, kind, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range []struct {
		acct int64
		amt  int64
	}{{a, -amt.Minor}, {b, amt.Minor}} {
		if _, err := tx.ExecContext(ctx, `INSERT INTO entries (tx_id, account_id, amount, currency) VALUES ($1, $2, $3, $4)`,
			id, e.acct, e.amt, string(amt.Currency)); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET balance = balance + $1 WHERE id = $2`, e.amt, e.acct); err != nil {
			return false, err
		}
	}
	return true, nil
}

func cny(minor int64) vend.Amount { return vend.Amount{Minor: minor, Currency: "CNY"} }

// pay records a paid order at paidAt and, when credit, its ledger credit
// channel_clearing → user_wallet under chan:<channel>:<order>.
func (f *fixture) pay(order string, amt vend.Amount, paidAt time.Time, credit bool) {
	f.t.Helper()
	f.must(f.conn(func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(f.ctx, `INSERT INTO channel_payments (order_no, channel, user_id, purpose, amount_minor,
			currency, state, provider_tx_id, created_ms, expires_ms, paid_ms) VALUES ($1, $2, $3, 'topup', $4, $5, 'paid', $6, $7, $8, $9)`,
			order, ch, f.user, amt.Minor, string(amt.Currency), "tx-"+order, paidAt.Add(-time.Minute).UnixMilli(),
			paidAt.Add(time.Hour).UnixMilli(), paidAt.UnixMilli()); err != nil {
			return err
		}
		if !credit {
			return nil
		}
		_, err := post(f.ctx, tx, "topup", store.ChannelPaymentKey(ch, order), [2]string{"channel_clearing", ch},
			[2]string{"user_wallet", f.user}, amt)
		return err
	}))
}

// order records an order in a state other than paid.
func (f *fixture) order(order string, amt vend.Amount, state string, created time.Time) {
	f.t.Helper()
	_, err := f.s.DB().ExecContext(f.ctx, `INSERT INTO channel_payments (order_no, channel, user_id, purpose, amount_minor,
		currency, state, created_ms, expires_ms) VALUES ($1, $2, $3, 'topup', $4, $5, $6, $7, $8)`,
		order, ch, f.user, amt.Minor, string(amt.Currency), state, created.UnixMilli(), created.Add(time.Hour).UnixMilli())
	f.must(err)
}

// refund records a refund of order in state, done at done, with its
// ledger debit user_wallet → channel_clearing under
// chanrefund:<channel>:<refund_no> (booked when the refund is recorded).
func (f *fixture) refund(refundNo, order string, amt vend.Amount, state string, done time.Time) {
	f.t.Helper()
	f.must(f.conn(func(tx *sql.Tx) error {
		var doneMs *int64
		if state != "pending" {
			ms := done.UnixMilli()
			doneMs = &ms
		}
		if _, err := tx.ExecContext(f.ctx, `INSERT INTO channel_refunds (refund_no, order_no, channel, amount_minor, currency,
			purpose, reason, state, provider_refund_id, created_ms, done_ms) VALUES ($1, $2, $3, $4, $5, 'withdrawal', 'test', $6, $7, $8, $9)`,
			refundNo, order, ch, amt.Minor, string(amt.Currency), state, "rid-"+refundNo, done.Add(-time.Minute).UnixMilli(), doneMs); err != nil {
			return err
		}
		_, err := post(f.ctx, tx, "chan_refund", store.ChannelRefundKey(ch, refundNo), [2]string{"user_wallet", f.user},
			[2]string{"channel_clearing", ch}, amt)
		return err
	}))
}

var _ reconcile.FeePoster = (*store.Store)(nil)
var _ reconcile.FeeBatchPoster = (*store.Store)(nil)

func (f *fixture) checkLedger() {
	f.t.Helper()
	imb, err := f.s.LedgerImbalance(f.ctx)
	f.must(err)
	bad, err := f.s.CheckBalances(f.ctx)
	f.must(err)
	if len(imb) != 0 || len(bad) != 0 {
		f.t.Fatalf("ledger: imbalance %v, balance mismatches %+v", imb, bad)
	}
}

func (f *fixture) count(q string, args ...any) int {
	f.t.Helper()
	var n int
	f.must(f.s.DB().QueryRowContext(f.ctx, q, args...).Scan(&n))
	return n
}

// source is a channel's statements as published so far.
type source struct {
	mu    sync.Mutex
	days  map[payments.Day]payments.Statement
	calls map[payments.Day]int
}

func newSource(sts ...payments.Statement) *source {
	s := &source{days: map[payments.Day]payments.Statement{}, calls: map[payments.Day]int{}}
	for _, st := range sts {
		s.days[st.Day] = st
	}
	return s
}

func (s *source) publish(st payments.Statement) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.days[st.Day] = st
}

func (s *source) Statement(ctx context.Context, day payments.Day) (payments.Statement, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[day]++
	st, ok := s.days[day]
	if !ok {
		return payments.Statement{}, vend.Errorf(payments.ErrRefused, "NO_STATEMENT_EXIST: statement of %s not generated yet", day)
	}
	return st, nil
}

// stmt builds a statement whose summary is the sum of its rows.
func stmt(day payments.Day, rows ...payments.StatementRow) payments.Statement {
	st := payments.Statement{Channel: ch, Day: day, Rows: rows, Currency: "CNY"}
	for _, r := range rows {
		if r.Kind == payments.RowRefund {
			st.Refunds += r.Amount.Minor
		} else {
			st.Payments += r.Amount.Minor
		}
		st.Fees += r.Fee
	}
	return st
}

func payRow(order string, amt vend.Amount, t time.Time, fee int64) payments.StatementRow {
	return payments.StatementRow{Kind: payments.RowPayment, At: t, OrderNo: order, ProviderTxID: "tx-" + order,
		Amount: amt, Fee: fee, Status: "SUCCESS"}
}

func refundRow(refundNo, order string, amt vend.Amount, t time.Time, fee int64) payments.StatementRow {
	return payments.StatementRow{Kind: payments.RowRefund, At: t, OrderNo: order, ProviderTxID: "tx-" + order,
		RefundNo: refundNo, ProviderRefundID: "rid-" + refundNo, Amount: amt, Fee: fee, Status: "REFUND"}
}

// kinds returns "kind:ref" for each outcome, in order.
func kinds(outs []reconcile.Outcome) []string {
	var s []string
	for _, o := range outs {
		ref := o.OrderNo
		if o.RowKind == "refund" {
			ref = o.RefundNo
		}
		s = append(s, o.Kind+":"+ref)
	}
	return s
}
