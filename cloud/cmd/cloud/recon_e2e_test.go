package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/alipay/alipaytest"
	"beaconvend/cloud/payments/wechatpay/wechattest"
	"beaconvend/cloud/store"
)

// TestReconcileEndToEnd reconciles a day of each channel through the real
// parts: the cloud's records are made by `cloud serve` (top-ups paid
// through the providers' loopback peers and their notifications, a
// withdrawal refunded to the original order), each statement is
// downloaded by the real channel from its peer (WeChat Pay's
// backtick-celled CSV with its SHA1 digest, Alipay's zip of GBK CSVs),
// and `cloud reconcile -config … -channel C -day D -csv FILE` compares,
// stores and reports. A clean day is all matched with totals equal and
// the command succeeds; then each discrepancy the peer can inject is
// reported exactly once with its kind and the command fails with
// recon.discrepancies; an order we issued whose notification never
// arrived is missing in ours, queried and credited once by the hook, and
// a re-run changes nothing. Runs on SQLite and PostgreSQL.
func TestReconcileEndToEnd(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { reconEndToEnd(t, "") })
	t.Run("postgres", func(t *testing.T) { reconEndToEnd(t, svctest.PostgresDSN(t, "recone2e")) })
}

// reconDay is a day whose statement the reconciler accepts now: the
// provider's (China Standard Time) yesterday, or the day before while
// the first grace hour of today has not passed.
func reconDay(now time.Time) (payments.Day, time.Time) {
	cst := time.FixedZone("CST", 8*3600)
	t := now.In(cst).Add(-time.Hour).AddDate(0, 0, -1)
	noon := time.Date(t.Year(), t.Month(), t.Day(), 12, 0, 0, 0, cst)
	return payments.Day{Year: t.Year(), Month: t.Month(), Day: t.Day()}, noon
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type reconRig struct {
	t        *testing.T
	cfg      string // the cloud configuration file
	data     string
	dsn      string // -db, "" for SQLite under data
	day      payments.Day
	noon     time.Time
	wx       *wechattest.Peer
	ali      *alipaytest.Peer
	cancel   context.CancelFunc
	done     chan error
	api      *phoneapi.Client
	serveURL string
}

func reconEndToEnd(t *testing.T, dsn string) {
	r := &reconRig{t: t, data: t.TempDir(), dsn: dsn, wx: wechattest.Start(t), ali: alipaytest.Start(t)}
	r.day, r.noon = reconDay(time.Now())
	addr := freeLoopback(t)
	ak := r.ali.Keys
	cfg := map[string]any{"development": true, "payments": map[string]any{
		"currency":   "CNY",
		"public_url": "http://" + addr,
		"channels": []map[string]any{
			{"name": "wechatpay", "priority": 1, "base_url": r.wx.URL, "params": r.wx.Params(), "credentials": r.wx.Credentials(),
				"limits": map[string]any{"min": "0.01", "max": "500.00", "currencies": []string{"CNY"}}},
			{"name": "alipay", "priority": 2, "base_url": r.ali.URL + "/gateway.do", "params": map[string]string{"app_id": alipaytest.AppID},
				"credentials": map[string]string{"app_private_key": "file:" + ak.AppPrivateKeyFile, "alipay_public_key": "file:" + ak.AlipayPublicKeyFile},
				"limits":      map[string]any{"min": "0.01", "max": "500.00"}},
		},
	}}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg = filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(r.cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-config", r.cfg, "-data", r.data, "-http", addr}
	if dsn != "" {
		args = append(args, "-db", dsn)
	}
	m := r.serve(args)
	r.serveURL = m.HTTPURL
	r.api = phoneapi.New(m.HTTPURL, nil)
	ctx := context.Background()
	if _, err := r.api.SignUp(ctx, &phoneapi.SignUpRequest{Email: "payer@test.example", Password: "payer-password-1"}); err != nil {
		t.Fatal(err)
	}

	// The day's records, the same on both channels: five top-ups paid at
	// the provider on the day (their notifications credit them), an
	// order issued whose payment comes later, and a withdrawal of 3.00
	// refunded against the oldest order.
	amounts := []int64{1000, 2000, 500, 700, 800}
	orders := map[string][]string{}
	unseen := map[string]string{}
	unpaid := map[string]string{} // issued, never paid
	for _, ch := range []string{"wechatpay", "alipay"} {
		for i, a := range amounts {
			no := r.topUp(ch, a)
			r.pay(ch, no, r.noon.Add(time.Duration(i+10*(1-len(orders)))*time.Minute), true)
			orders[ch] = append(orders[ch], no)
		}
		unseen[ch] = r.topUp(ch, 900)
		unpaid[ch] = r.topUp(ch, 600)
	}
	// The withdrawal refunds the oldest paid orders first (Alipay's,
	// paid before WeChat Pay's), in full, then 3.00 of the first WeChat
	// Pay one;
	// each refund is dated on the day at its provider.
	refunds := map[string]string{}
	var aliTotal int64
	for _, a := range amounts {
		aliTotal += a
	}
	if err := r.ali.SetClock(r.noon.Add(30 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	wd, err := r.api.Withdraw(ctx, "withdraw-1", &phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: aliTotal + 300, Currency: "CNY"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ali.SetClock(time.Time{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range wd.Refunds {
		if p.Source == "wechatpay" {
			r.wx.RefundSuccessAt(p.RefundNo, r.noon.Add(time.Duration(30+len(refunds))*time.Minute))
		}
		refunds[p.RefundNo] = p.Source
	}
	if len(wd.Refunds) != len(amounts)+1 {
		t.Fatalf("withdrawal %+v: want one refund per Alipay order and one from WeChat Pay", wd)
	}
	st := m.Store
	eventually(t, "refunds succeeded", func() bool {
		for no := range refunds {
			if f, err := st.GetRefund(ctx, no); err != nil || f.State != store.RefundSucceeded {
				return false
			}
		}
		return true
	})
	r.stop()

	for _, ch := range []string{"wechatpay", "alipay"} {
		t.Run(ch, func(t *testing.T) {
			parent := r.t
			r.t = t
			defer func() { r.t = parent }()
			r.channelCase(ch, orders[ch], unseen[ch], unpaid[ch])
		})
	}
}

// channelCase runs the clean day and the injected discrepancies of one channel.
func (r *reconRig) channelCase(ch string, orders []string, unseen, unpaid string) {
	t := r.t
	// Today is refused: the provider's day is not over.
	today := time.Now().In(time.FixedZone("CST", 8*3600))
	if _, out, err := r.reconcileDay(ch, payments.Day{Year: today.Year(), Month: today.Month(), Day: today.Day()}); vend.CodeOf(err) != "recon.too_early" {
		t.Errorf("reconciling today: %v (code %q), want recon.too_early\n%s", err, vend.CodeOf(err), out)
	}

	// A clean day: every row matched, totals equal, the command succeeds.
	rep, out, err := r.reconcile(ch)
	if err != nil {
		t.Fatalf("clean day: %v\n%s", err, out)
	}
	if !strings.Contains(out, "totals: equal") || !strings.Contains(out, ": balanced (") {
		t.Errorf("clean day summary:\n%s", out)
	}
	if len(rep) != len(orders)+refundRows(ch) {
		t.Errorf("clean day: %d outcomes, want %d:\n%s", len(rep), len(orders)+refundRows(ch), out)
	}
	for _, o := range rep {
		if o["kind"] != "matched" {
			t.Errorf("clean day: outcome %v, want matched", o)
		}
	}

	// The payer pays the order issued earlier, but its notification
	// never reaches us (the cloud is down): paid at the provider,
	// pending in ours.
	r.pay(ch, unseen, r.noon.Add(40*time.Minute), false)

	// One injected discrepancy of each kind the bill can carry.
	want := map[string]string{unseen: "missing_in_ours"} // order → kind
	injected := ""
	switch ch {
	case "wechatpay":
		injected = "x" + strings.Repeat("7", 20)
		r.wx.InjectBill(map[string]any{"kind": "missing_in_ours", "out_trade_no": injected, "total": 4321})
		r.wx.InjectBill(map[string]any{"kind": "status", "out_trade_no": orders[1], "status": "REVOKED"})
		r.wx.InjectBill(map[string]any{"kind": "amount", "out_trade_no": orders[2], "delta": 1})
		r.wx.InjectBill(map[string]any{"kind": "currency", "out_trade_no": orders[3], "currency": "USD"})
		r.wx.InjectBill(map[string]any{"kind": "missing_in_theirs", "out_trade_no": orders[4]})
		r.wx.InjectBill(map[string]any{"kind": "duplicate", "out_trade_no": orders[0]})
		want[orders[1]], want[orders[2]], want[orders[3]], want[orders[4]] = "status_mismatch", "amount_mismatch", "currency_mismatch", "missing_in_theirs"
	case "alipay":
		// Alipay's domestic trade bill has no currency column: a
		// currency mismatch cannot be carried by it. Its status
		// injection is a paid row for an order we issued and the payer
		// never paid; by the provider's own word it is unpaid, so the
		// hook's query credits nothing.
		injected = "X" + strings.Repeat("7", 16)
		for kind, no := range map[string]string{"missing_in_ours": injected, "amount": orders[2], "missing_in_theirs": orders[4],
			"duplicate": orders[0], "status": unpaid} {
			if err := r.ali.InjectBill(r.day, kind, no); err != nil {
				t.Fatal(err)
			}
		}
		want[orders[2]], want[orders[4]], want[unpaid] = "amount_mismatch", "missing_in_theirs", "missing_in_ours"
	}
	want[injected] = "missing_in_ours"

	check := func(run string, creditedUnseen bool) {
		t.Helper()
		rep, out, err := r.reconcile(ch)
		if vend.CodeOf(err) != "recon.discrepancies" {
			t.Fatalf("%s: error %v (code %q), want recon.discrepancies\n%s", run, err, vend.CodeOf(err), out)
		}
		got := map[string][]string{}
		dups := 0
		for _, o := range rep {
			if o["row_kind"] != "payment" {
				if o["kind"] != "matched" {
					t.Errorf("%s: refund outcome %v, want matched", run, o)
				}
				continue
			}
			if o["kind"] == "duplicate" {
				dups++
				if o["order_no"] != orders[0] {
					t.Errorf("%s: duplicate %v, want order %s", run, o, orders[0])
				}
				continue
			}
			got[o["order_no"]] = append(got[o["order_no"]], o["kind"])
		}
		if dups != 1 {
			t.Errorf("%s: %d duplicate outcomes, want 1:\n%s", run, dups, out)
		}
		for no, kinds := range got {
			w, ok := want[no]
			if !ok {
				w = "matched"
			}
			if no == unseen && creditedUnseen {
				w = "matched"
			}
			if len(kinds) != 1 || kinds[0] != w {
				t.Errorf("%s: order %s: outcomes %v, want one %s\n%s", run, no, kinds, w, out)
			}
		}
		for no := range want {
			if len(got[no]) == 0 {
				t.Errorf("%s: no outcome for order %s\n%s", run, no, out)
			}
		}
	}
	check("first run", false)

	// The hook queried the unseen order and credited it, once.
	ctx := context.Background()
	st := r.open()
	p, err := st.GetPayment(ctx, unseen)
	if err != nil || p.State != store.PaymentPaid {
		t.Fatalf("the unseen order after the run: %+v %v, want paid", p, err)
	}
	before := r.ledger(st)
	// The order the statement says paid and the provider's query says
	// unpaid is not credited; an operator is told.
	if p, err := st.GetPayment(ctx, unpaid); err != nil || p.State != store.PaymentPending {
		t.Errorf("the unpaid order after the run: %+v %v, want pending", p, err)
	}
	alerts := map[string]int{}
	for _, no := range []string{injected, unpaid, orders[4]} {
		as, err := st.ChannelAlerts(ctx, no)
		if err != nil {
			t.Fatal(err)
		}
		alerts[no] = len(as)
	}
	if alerts[injected] != 1 || alerts[orders[4]] != 1 || (ch == "alipay" && alerts[unpaid] != 1) {
		t.Errorf("alerts after the first run: %v, want one for %s, %s and (Alipay) %s", alerts, injected, orders[4], unpaid)
	}
	st.Close()

	check("re-run", true)
	check("third run", true)
	st = r.open()
	defer st.Close()
	if after := r.ledger(st); after != before {
		t.Errorf("a re-run moved money: %s, before %s", after, before)
	}
	for no, n := range alerts {
		if as, err := st.ChannelAlerts(ctx, no); err != nil || len(as) != n {
			t.Errorf("alerts about %s after re-runs: %d %v, want %d (a re-run alerts no one again)", no, len(as), err, n)
		}
	}
	if ch == "wechatpay" {
		r.wx.ResetBill()
	}
}

func refundRows(ch string) int {
	if ch == "alipay" {
		return 5
	}
	return 1
}

// ledger checks the ledger balances and returns a summary of the money
// that moved: every top-up credit and its count.
func (r *reconRig) ledger(st *store.Store) string {
	t := r.t
	t.Helper()
	ctx := context.Background()
	imb, err := st.LedgerImbalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for cur, v := range imb {
		if v != 0 {
			t.Errorf("ledger imbalance %s = %d, want 0", cur, v)
		}
	}
	var b strings.Builder
	for _, ch := range []string{"wechatpay", "alipay"} {
		c, err := st.Balance(ctx, store.ChannelClearing, ch, "CNY")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s clearing %d; ", ch, c.Minor)
	}
	return b.String()
}

func (r *reconRig) open() *store.Store {
	r.t.Helper()
	dsn := r.dsn
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(r.data, "cloud.db")
	}
	st, err := store.Open(context.Background(), dsn, &store.Opts{BcryptCost: 4})
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// reconcile runs `cloud reconcile -config … -channel ch -day D -csv F`
// in process and returns the CSV's outcomes, what it printed, and its error.
func (r *reconRig) reconcile(ch string) ([]map[string]string, string, error) {
	r.t.Helper()
	return r.reconcileDay(ch, r.day)
}

// reconcileDay is reconcile of another day; no CSV is read when the
// command refused the day.
func (r *reconRig) reconcileDay(ch string, day payments.Day) ([]map[string]string, string, error) {
	t := r.t
	t.Helper()
	csvFile := filepath.Join(t.TempDir(), "recon.csv")
	var out bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, io.Discard
	args := []string{"reconcile", "-config", r.cfg, "-data", r.data, "-channel", ch, "-day", day.String(), "-csv", csvFile}
	if r.dsn != "" {
		args = append(args, "-db", r.dsn)
	}
	if err := m.ParseFlags(args); err != nil {
		t.Fatalf("cloud reconcile: %v", err)
	}
	err := m.Run(context.Background())
	if cerr := m.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if day != r.day {
		return nil, out.String(), err
	}
	f, ferr := os.Open(csvFile)
	if ferr != nil {
		t.Fatalf("cloud reconcile wrote no CSV (%v): %v\n%s", ferr, err, out.String())
	}
	defer f.Close()
	recs, cerr := csv.NewReader(f).ReadAll()
	if cerr != nil || len(recs) == 0 {
		t.Fatalf("the CSV: %v", cerr)
	}
	var rows []map[string]string
	for _, rec := range recs[1:] {
		row := map[string]string{}
		for i, h := range recs[0] {
			row[h] = rec[i]
		}
		if row["channel"] != ch || row["day"] != r.day.String() {
			t.Errorf("CSV row %v: want channel %s, day %s", row, ch, r.day)
		}
		rows = append(rows, row)
	}
	return rows, out.String(), err
}

// serve runs `cloud serve -dev` with the configuration in process.
func (r *reconRig) serve(args []string) *Main {
	t := r.t
	m := NewMain()
	m.Stdout, m.Stderr = io.Discard, io.Discard
	m.StoreOpts = store.Opts{BcryptCost: 4}
	if err := m.ParseFlags(append([]string{"serve", "-dev"}, args...)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { err := m.Run(ctx); m.Close(); r.done <- err }()
	t.Cleanup(r.stop)
	select {
	case <-m.Ready:
	case err := <-r.done:
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	return m
}

func (r *reconRig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil && err != context.Canceled {
		r.t.Errorf("serve: %v", err)
	}
}

// topUp creates a top-up order of amount fen through ch.
func (r *reconRig) topUp(ch string, amount int64) string {
	r.t.Helper()
	p, err := r.api.TopUp(context.Background(), fmt.Sprintf("topup-%s-%d-%d", ch, amount, time.Now().UnixNano()),
		&phoneapi.TopUpRequest{Amount: vend.Amount{Minor: amount, Currency: "CNY"}, Source: ch})
	if err != nil {
		r.t.Fatalf("top-up through %s: %v", ch, err)
	}
	return p.Order
}

// pay has the payer pay order at the provider at `at`; when delivered,
// the notification must have been accepted.
func (r *reconRig) pay(ch, order string, at time.Time, delivered bool) {
	t := r.t
	t.Helper()
	switch ch {
	case "wechatpay":
		n := r.wx.PayAt(order, at)
		if delivered && n.Status != 200 && n.Status != 204 {
			t.Fatalf("WeChat Pay notification of %s answered %d", order, n.Status)
		}
	case "alipay":
		var res alipaytest.NotifyResult
		err := r.ali.Control("pay", map[string]any{"out_trade_no": order, "at": at.Format(time.RFC3339)}, &res)
		if delivered && (err != nil || res.Notify.Status != 200 || res.Notify.Body != "success") {
			t.Fatalf("Alipay notification of %s: %+v %v", order, res, err)
		}
	}
}
