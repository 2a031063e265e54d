package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments/alipay/alipaytest"
	"beaconvend/cloud/payments/wechatpay/wechattest"
	"beaconvend/cloud/store"
)

// orderLine finds the order number the phone prints once the order exists.
var orderLine = regexp.MustCompile(`(?m)^order (\S+): .* pay before `)

// codeLine finds the code_url the phone prints under the QR code.
var codeLine = regexp.MustCompile(`(?m)^or open: (\S+)$`)

// payPeers are the providers' loopback peers, each deciding its protocol
// and cryptography with the provider's own third-party code
// (scripts/paypeer-wechat on wechatpay-axios-plugin, scripts/paypeer-alipay
// on alipay-sdk).
type payPeers struct {
	wx  *wechattest.Peer
	ali *alipaytest.Peer
}

// payCloudConfig writes a cloud configuration whose payments section
// enables wechatpay and alipay against the peers, in CNY, with the
// credentials as file: references to the keys the peers were started
// with, and public_url http://{http} (the rig puts its listen address
// there). WeChat Pay is first in the operator's priority but takes at
// most 25.00 per payment, so an automatic top-up above that goes to
// Alipay. The sandbox card is not in it.
func payCloudConfig(t *testing.T, p payPeers) string {
	t.Helper()
	ali := p.ali.Keys
	cfg := map[string]any{"payments": map[string]any{
		"currency":   "CNY",
		"public_url": "http://{http}",
		"channels": []map[string]any{
			{"name": "wechatpay", "priority": 1, "base_url": p.wx.URL, "params": p.wx.Params(), "credentials": p.wx.Credentials(),
				"limits": map[string]any{"min": "0.01", "max": "25.00", "currencies": []string{"CNY"}}},
			{"name": "alipay", "priority": 2, "base_url": p.ali.URL + "/gateway.do", "params": map[string]string{"app_id": alipaytest.AppID},
				"credentials": map[string]string{"app_private_key": "file:" + ali.AppPrivateKeyFile, "alipay_public_key": "file:" + ali.AlipayPublicKeyFile},
				"limits":      map[string]any{"min": "0.01", "max": "500.00"}},
		},
	}}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPayChannelsEndToEnd runs the real cloud (its configuration enabling
// WeChat Pay and Alipay, pointed at the providers' loopback peers, no
// sandbox card), the controllers on emulated boards, and the phone
// program: the phone tops up through WeChat Pay and (routed by the
// operator's priority and WeChat Pay's limit) through Alipay, prints each
// QR code, the peer pays as a payer scanning it would, and the cloud
// credits each order exactly once (a replayed notification changes
// nothing); the phone buys water from the wallet, withdraws the rest to
// the original channels (the oldest paid order first, each refund with
// the provider's refund ID), and the operator refunds part of the water
// session to its original channel. The ledger balances, every clearing
// account holds what is still out at its channel, and the payments show
// what was refunded of each.
func TestPayChannelsEndToEnd(t *testing.T) {
	peers := payPeers{wx: wechattest.Start(t), ali: alipaytest.Start(t)}
	r := newRigWith(t, rigOpts{broker: "embedded", cloudConfig: payCloudConfig(t, peers), currency: "CNY"})
	user := []string{"-email", "payer@test.example", "-password", "payer-password", "-pay-timeout", "60s"}
	with := func(args ...string) []string { return append(append([]string{}, user...), args...) }
	ctx := context.Background()
	signup, out, err := r.phone(t, nil, with("-signup", "-wallet")...)
	if err != nil {
		t.Fatalf("sign-up: %v\n%s", err, out)
	}
	api := signup.client // logged in as the payer

	// The phone is offered the two channels and the wallet; no sandbox.
	src, err := api.ListPaymentSources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range src.Sources {
		ids = append(ids, s.ID)
		if s.Test {
			t.Errorf("source %+v is a test source", s)
		}
	}
	if slices.Sort(ids); !slices.Equal(ids, []string{"alipay", "wallet", "wechatpay"}) {
		t.Fatalf("payment sources %v, want wallet, wechatpay and alipay", ids)
	}

	// Top up through each channel: the phone prints the code and waits;
	// the peer pays; the phone sees the order paid and the wallet credited.
	orders := map[string]string{} // channel → order
	var wallet int64
	for _, tc := range []struct {
		source, amount string
		minor          int64
		channel        string // where the order must land
	}{
		{"wechatpay", "20.00", 2000, "wechatpay"},
		{"auto", "30.00", 3000, "alipay"}, // above WeChat Pay's 25.00
	} {
		ok := t.Run("topup "+tc.source+" "+tc.amount, func(t *testing.T) {
			type result struct {
				m   *Main
				out *syncBuffer
				err error
			}
			started := make(chan *syncBuffer, 1)
			done := make(chan result, 1)
			go func() {
				m, out, err := r.phoneWith(t, nil, started, with("-topup", tc.amount, "-topup-source", tc.source, "-wallet")...)
				done <- result{m, out, err}
			}()
			out := <-started
			out.waitMatch(t, orderLine, 30*time.Second)
			order := orderLine.FindStringSubmatch(out.String())[1]
			out.waitMatch(t, codeLine, 5*time.Second)
			codeURL := codeLine.FindStringSubmatch(out.String())[1]
			replay := peers.pay(t, tc.channel, order)
			res := <-done
			if res.err != nil {
				t.Fatalf("%v\n%s", res.err, res.out)
			}
			p := res.m.Payment
			if p.Order != order || p.State != PaymentPaid || p.Source != tc.channel || p.ProviderTxID == "" || p.Amount != cny(tc.minor) || p.Test {
				t.Errorf("payment %+v: want order %s, %d fen paid through %s with a provider transaction ID", p, order, tc.minor, tc.channel)
			}
			if want := map[string]string{"wechatpay": "weixin://wxpay/bizpayurl?pr=", "alipay": "https://qr.alipay.com/"}[tc.channel]; !strings.HasPrefix(codeURL, want) {
				t.Errorf("code_url %q, want the provider's %s…", codeURL, want)
			}
			if q := qrText(res.out.String()); q == "" || decodeQR(t, qrPixels(t, q), 4) != codeURL {
				t.Errorf("the printed QR code does not decode to %q:\n%s", codeURL, res.out)
			}
			wallet += tc.minor
			if got := res.m.WalletAfter.Available.Minor; got != wallet {
				t.Errorf("wallet %d after the top-up, want %d", got, wallet)
			}
			// The provider sends the same notification again: the cloud
			// acknowledges it and credits nothing more.
			replay()
			if w, err := api.GetWallet(ctx); err != nil || w.Available.Minor != wallet {
				t.Errorf("wallet after a replayed notification: %+v %v, want %d", w, err, wallet)
			}
			orders[tc.channel] = order
		})
		if !ok {
			t.FailNow()
		}
	}

	var water *phoneapi.Receipt
	if !t.Run("buy water", func(t *testing.T) {
		m, out, err := r.phone(t, nil, with("-device", "t-water", "-cap-amount", "2.00", "-stop-after-units", "1000", "-json-receipt")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		water = checkReceipt(t, m)
		if water.Currency != "CNY" || water.Captured.Minor <= 0 || water.Source != "wallet" {
			t.Errorf("receipt %+v: want water paid in CNY from the wallet", water)
		}
	}) {
		t.FailNow()
	}
	captured := water.Captured.Minor

	// Withdraw the rest: the oldest paid order (WeChat Pay, 20.00) is
	// refunded first and in full, the rest comes from the Alipay order.
	rest := wallet - captured
	want := map[string]int64{orders["wechatpay"]: 2000, orders["alipay"]: rest - 2000}
	if !t.Run("withdraw all", func(t *testing.T) {
		m, out, err := r.phone(t, nil, with("-withdraw", "all")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		wd := m.Withdrawal
		if wd.Amount.Minor != rest || (wd.State != phoneapi.WithdrawalSucceeded && wd.State != phoneapi.WithdrawalPending) {
			t.Fatalf("withdrawal %+v: want %d withdrawn", wd, rest)
		}
		peers.checkRefunds(t, wd.Refunds, orders, want)
		if w, err := api.GetWallet(ctx); err != nil || w.Available.Minor != 0 || w.Held.Minor != 0 {
			t.Errorf("wallet after withdrawing all: %+v %v", w, err)
		}
	}) {
		t.FailNow()
	}

	// The operator refunds part of the water session: the payer's WeChat
	// Pay order is refunded in full, so it goes back through Alipay.
	opRefund := (captured + 1) / 2
	want[orders["alipay"]] += opRefund
	if !t.Run("operator refund", func(t *testing.T) {
		op := operatorLogIn(t, r.API, "op@test.example", "test-operator-pw")
		key := phoneapi.NewIdempotencyKey()
		path := "/v1/operator/sessions/" + water.Session.String() + "/refund"
		body := map[string]any{"amount": cny(opRefund), "reason": "the water tasted of chlorine"}
		var got struct {
			Session vend.SessionID        `json:"session"`
			Amount  vend.Amount           `json:"amount"`
			Wallet  vend.Amount           `json:"wallet"`
			Refunds []phoneapi.RefundPart `json:"refunds"`
		}
		if st, b := apiPost(t, r.API+path, op, key, body, &got); st != http.StatusCreated {
			t.Fatalf("operator refund: %d %s", st, b)
		}
		if got.Session != water.Session || got.Amount != cny(opRefund) || got.Wallet.Minor != 0 || len(got.Refunds) != 1 {
			t.Fatalf("operator refund %+v: want %d fen back through one channel, none to the wallet", got, opRefund)
		}
		peers.checkRefunds(t, got.Refunds, orders, map[string]int64{orders["alipay"]: opRefund})
		// The same request again answers the same refund; more than
		// what is left of the session's charge is refused.
		var again struct {
			Refunds []phoneapi.RefundPart `json:"refunds"`
		}
		if st, b := apiPost(t, r.API+path, op, key, body, &again); st != http.StatusCreated || len(again.Refunds) != 1 || again.Refunds[0].RefundNo != got.Refunds[0].RefundNo {
			t.Errorf("the operator refund retried: %d %s, want refund %s again", st, b, got.Refunds[0].RefundNo)
		}
		over := map[string]any{"amount": cny(captured - opRefund + 1), "reason": "too much"}
		if st, b := apiPost(t, r.API+path, op, phoneapi.NewIdempotencyKey(), over, nil); st != http.StatusConflict || !strings.Contains(string(b), "refund.exceeds_refundable") {
			t.Errorf("refund above what is left: %d %s, want 409 refund.exceeds_refundable", st, b)
		}
		// The payer's receipt shows the refund and its channel.
		rc, err := api.GetReceipt(ctx, water.Session)
		if err != nil || rc.Refunded != cny(opRefund) || len(rc.Refunds) != 1 || rc.Refunds[0].Source != "alipay" || rc.Refunds[0].ProviderRefundID == "" {
			t.Errorf("receipt after the operator refund: %+v %v", rc, err)
		}
	}) {
		t.FailNow()
	}

	// The payments show what was refunded of each, with the provider's
	// transaction ID on each receipt.
	t.Run("payments", func(t *testing.T) {
		m, out, err := r.phone(t, nil, with("-payments")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		got := map[string]int64{}
		for _, p := range m.Payments {
			got[p.Order] = p.Refunded.Minor
			if p.ProviderTxID == "" || !strings.Contains(out.String(), "provider tx  "+p.ProviderTxID) {
				t.Errorf("payment %+v: receipt without the provider transaction ID\n%s", p, out)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("refunded per order %v, want %v\n%s", got, want, out)
		}
	})

	// The books: balanced, each order credited once, each refund posted
	// once, the clearing accounts holding what is still out at each
	// channel, the operator holding the water less the refund.
	t.Run("ledger", func(t *testing.T) {
		checkPayLedger(t, filepath.Join(r.dir, "cloud", "cloud.db"), orders, want, map[string]int64{
			"wechatpay": -(2000 - want[orders["wechatpay"]]),
			"alipay":    -(3000 - want[orders["alipay"]]),
		}, captured-opRefund)
	})
}

// pay has the channel's peer pay order as a payer scanning its code
// would; the peer POSTs its signed notification to the cloud before pay
// returns, and the cloud must have accepted it. The function returned
// sends that notification again and checks the cloud acknowledges it.
func (p payPeers) pay(t *testing.T, channel, order string) (replay func()) {
	t.Helper()
	switch channel {
	case "wechatpay":
		n := p.wx.Pay(order)
		if n.Status != http.StatusNoContent {
			t.Fatalf("the cloud answered WeChat Pay's notification with %d, want 204", n.Status)
		}
		return func() {
			t.Helper()
			if again := p.wx.Replay(n.ID); again.Status != http.StatusNoContent {
				t.Errorf("the cloud answered the replayed notification with %d, want 204", again.Status)
			}
		}
	case "alipay":
		n, err := p.ali.Pay(order)
		if err != nil || n.Notify.Status != http.StatusOK || n.Notify.Body != "success" {
			t.Fatalf("Alipay's notification: %+v %v; want the cloud to answer 200 success", n, err)
		}
		return func() {
			t.Helper()
			var again alipaytest.NotifyResult
			if err := p.ali.Control("replay", map[string]any{"out_trade_no": order}, &again); err != nil || again.Notify.Status != http.StatusOK || again.Notify.Body != "success" {
				t.Errorf("the replayed notification: %+v %v; want the cloud to answer 200 success", again, err)
			}
		}
	}
	t.Fatalf("no peer for %s", channel)
	return nil
}

// checkRefunds checks refunds against the orders they must come from
// (amount per order, each through the order's own channel, each with the
// provider's refund ID) and has WeChat Pay finish the refunds it holds as
// PROCESSING (it then notifies the cloud).
func (p payPeers) checkRefunds(t *testing.T, refunds []phoneapi.RefundPart, orders map[string]string, want map[string]int64) {
	t.Helper()
	channelOf := map[string]string{}
	for ch, o := range orders {
		channelOf[o] = ch
	}
	got := map[string]int64{}
	for _, rf := range refunds {
		got[rf.Order] += rf.Amount.Minor
		if rf.Source != channelOf[rf.Order] || rf.Amount.Currency != "CNY" {
			t.Errorf("refund %+v: want it through %s, the order's own channel", rf, channelOf[rf.Order])
		}
		if rf.ProviderRefundID == "" {
			t.Errorf("refund %+v without the provider's refund ID", rf)
		}
		switch {
		case rf.Source == "wechatpay" && rf.State == phoneapi.RefundPending:
			if n := p.wx.RefundSuccess(rf.RefundNo); n.Status != http.StatusNoContent {
				t.Errorf("the cloud answered WeChat Pay's refund notification with %d, want 204", n.Status)
			}
		case rf.State != phoneapi.RefundSucceeded:
			t.Errorf("refund %+v: want succeeded", rf)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("refunded per order %v, want %v", got, want)
	}
}

// operatorLogIn logs in to the operator API and returns the bearer token.
func operatorLogIn(t *testing.T, api, email, password string) string {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	if st, b := apiPost(t, api+"/v1/operator/auth/login", "", "", map[string]string{"email": email, "password": password}, &tok); st != http.StatusOK || tok.Token == "" {
		t.Fatalf("operator log-in: %d %s", st, b)
	}
	return tok.Token
}

// apiPost POSTs body as JSON with an optional bearer token and
// Idempotency-Key, decodes a 2xx answer into out (when not nil), and
// returns the status and the body.
func apiPost(t *testing.T, url, token, key string, body, out any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("POST %s: %s: %v", url, data, err)
		}
	}
	return resp.StatusCode, data
}

// checkPayLedger opens the cloud's SQLite store and checks the books
// after the payments: the ledger balances and every stored balance equals
// its entries; each order is paid, credited by exactly one chan:
// transaction of its amount, and refunded by refunded[order], every
// refund succeeded with the provider's refund ID and posted once;
// clearing[channel] is each channel's clearing balance; no wallet holds
// anything; the operator's revenue is revenue.
func checkPayLedger(t *testing.T, dbPath string, orders map[string]string, refunded, clearing map[string]int64, revenue int64) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	imb, err := st.LedgerImbalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for cur, v := range imb {
		if v != 0 {
			t.Errorf("ledger imbalance %s = %d, want 0", cur, v)
		}
	}
	if bad, err := st.CheckBalances(ctx); err != nil || len(bad) != 0 {
		t.Errorf("CheckBalances = %+v, %v; want none", bad, err)
	}
	// WeChat Pay's refund notifications are handled as they arrive; wait
	// (bounded) until no refund is pending.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pending int
		if err := st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM channel_refunds WHERE state = 'pending'`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d refunds still pending after 30 s", pending)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for ch, order := range orders {
		p, err := st.GetPayment(ctx, order)
		if err != nil {
			t.Fatal(err)
		}
		if p.Channel != ch || p.State != store.PaymentPaid || p.ProviderTxID == "" || p.Refunded != refunded[order] {
			t.Errorf("payment %+v: want paid through %s with a provider transaction ID, %d refunded", p, ch, refunded[order])
		}
		var n int
		var credited int64
		if err := st.DB().QueryRowContext(ctx, `SELECT COUNT(DISTINCT t.id), COALESCE(SUM(e.amount), 0) FROM ledger_tx t JOIN entries e ON e.tx_id = t.id
			JOIN accounts a ON a.id = e.account_id WHERE t.idem_key = $1 AND a.kind = 'user_wallet'`, "chan:"+ch+":"+order).Scan(&n, &credited); err != nil {
			t.Fatal(err)
		}
		if n != 1 || credited != p.Amount.Minor {
			t.Errorf("order %s: %d credit transactions of %d in all, want one of %d", order, n, credited, p.Amount.Minor)
		}
		var refunds, posted int
		if err := st.DB().QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN state = 'succeeded' AND provider_refund_id <> '' THEN 1 ELSE 0 END), 0)
			FROM channel_refunds WHERE order_no = $1`, order).Scan(&refunds, &posted); err != nil {
			t.Fatal(err)
		}
		if refunds == 0 || posted != refunds {
			t.Errorf("order %s: %d of %d refunds succeeded with the provider's refund ID", order, posted, refunds)
		}
		if err := st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM ledger_tx t JOIN channel_refunds f ON t.idem_key = 'chanrefund:' || f.channel || ':' || f.refund_no
			WHERE f.order_no = $1`, order).Scan(&posted); err != nil {
			t.Fatal(err)
		}
		if posted != refunds {
			t.Errorf("order %s: %d refunds posted to the ledger, want %d", order, posted, refunds)
		}
	}
	for ch, want := range clearing {
		if b, err := st.Balance(ctx, store.ChannelClearing, ch, "CNY"); err != nil || b.Minor != want {
			t.Errorf("channel_clearing(%s) = %v %v, want %d", ch, b, err, want)
		}
	}
	var wallets, rev int64
	if err := st.DB().QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN kind IN ('user_wallet', 'user_holds') THEN balance ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN kind = 'operator_revenue' THEN balance ELSE 0 END), 0) FROM accounts WHERE currency = 'CNY'`).Scan(&wallets, &rev); err != nil {
		t.Fatal(err)
	}
	if wallets != 0 || rev != revenue {
		t.Errorf("wallets and holds %d, operator revenue %d; want 0 and %d", wallets, rev, revenue)
	}
}
