package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// payFake is a hand-written phone API for the payment steps, after the
// contract of the payment endpoints: POST /v1/wallet/topups (201 Payment,
// Idempotency-Key: the same key gives the same order), GET
// /v1/payments/{order}, GET /v1/payments?limit&cursor, POST
// /v1/wallet/withdrawals (201 Withdrawal), GET /v1/wallet. Each GET of an
// order first asks step, which moves it on (paid, closed, ...) by how
// often it has been asked.
type payFake struct {
	t            *testing.T
	mu           sync.Mutex
	cur          vend.Currency
	wallet       int64
	orders       map[string]*Payment
	created      []string          // order numbers, oldest first
	keys         map[string]string // idempotency key → order
	polls        map[string]int
	step         func(p *Payment, polls int) // moves an order on; nil: stays pending
	maxTopUp     int64                       // above: source.limit
	alt          []string                    // the alternatives source.limit names
	loseTopUps   int                         // answer this many top-ups 503 after creating the order (a lost answer)
	failGets     int                         // answer this many GETs of an order 503
	getDelay     time.Duration               // answer GETs of an order after this long
	withdraw     func(amount vend.Amount) (int, *Withdrawal)
	withdrawKeys []string
	now          func() time.Time
}

func newPayFake(t *testing.T) *payFake {
	return &payFake{t: t, cur: "CNY", orders: map[string]*Payment{}, keys: map[string]string{}, polls: map[string]int{},
		maxTopUp: 100000, now: time.Now}
}

func (f *payFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d := f.getDelay; d > 0 && r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/payments/") {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok-1" {
		writeAPIError(w, 401, vend.Unauthorized, "auth.token", nil)
		return
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/wallet":
		writeJSON(w, 200, phoneapi.Wallet{Available: vend.Amount{Minor: f.wallet, Currency: f.cur}, Held: vend.Amount{Currency: f.cur}})
	case r.Method == "POST" && r.URL.Path == "/v1/wallet/topups":
		f.topUp(w, r)
	case r.Method == "GET" && r.URL.Path == "/v1/payment-sources":
		writeJSON(w, 200, phoneapi.PaymentSourceList{Sources: []phoneapi.PaymentSource{
			{ID: "wallet", Kind: phoneapi.SourceWallet, Default: true}, {ID: "wechatpay", Kind: phoneapi.SourceWeChatPay}, {ID: "alipay", Kind: phoneapi.SourceAlipay}}})
	case r.Method == "GET" && r.URL.Path == "/v1/payments":
		f.list(w, r)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/payments/"):
		p, ok := f.orders[strings.TrimPrefix(r.URL.Path, "/v1/payments/")]
		if !ok {
			writeAPIError(w, 404, vend.NotFound, "payment.not_found", nil)
			return
		}
		if f.failGets > 0 {
			f.failGets--
			writeAPIError(w, 503, vend.Transient, "channel.unavailable", nil)
			return
		}
		f.polls[p.Order]++
		if f.step != nil && p.State == PaymentPending {
			f.step(p, f.polls[p.Order])
			if p.State == PaymentPaid {
				f.wallet += p.Amount.Minor
			}
		}
		writeJSON(w, 200, p)
	case r.Method == "POST" && r.URL.Path == "/v1/wallet/withdrawals":
		key := r.Header.Get("Idempotency-Key")
		if phoneapi.ValidateIdempotencyKey(key) != nil {
			writeAPIError(w, 400, vend.Invalid, "request.idempotency_key", nil)
			return
		}
		f.withdrawKeys = append(f.withdrawKeys, key)
		var req struct {
			Amount vend.Amount `json:"amount"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Amount.Minor <= 0 || req.Amount.Currency != f.cur {
			writeAPIError(w, 400, vend.Invalid, "request.field", nil)
			return
		}
		if req.Amount.Minor > f.wallet {
			writeAPIError(w, 409, vend.Conflict, "funds.insufficient", nil)
			return
		}
		status, wd := f.withdraw(req.Amount)
		for _, rf := range wd.Refunds {
			if rf.State != "failed" {
				f.wallet -= rf.Amount.Minor
			}
		}
		writeJSON(w, status, wd)
	default:
		http.Error(w, "not in the fake", 404)
	}
}

func (f *payFake) topUp(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	if phoneapi.ValidateIdempotencyKey(key) != nil || r.Header.Get("Content-Type") != "application/json" {
		writeAPIError(w, 400, vend.Invalid, "request.idempotency_key", nil)
		return
	}
	var req phoneapi.TopUpRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Validate() != nil || req.Amount.Currency != f.cur {
		writeAPIError(w, 400, vend.Invalid, "request.field", nil)
		return
	}
	if o, ok := f.keys[key]; ok {
		writeJSON(w, 201, f.orders[o])
		return
	}
	switch req.Source {
	case "wechatpay", "alipay", "card_sandbox":
	case "refusing":
		writeAPIError(w, 409, vend.Conflict, "channel.refused", nil)
		return
	default:
		writeAPIError(w, 404, vend.NotFound, "source.not_found", nil)
		return
	}
	if req.Amount.Minor > f.maxTopUp {
		writeAPIError(w, 409, vend.Conflict, "source.limit", map[string]any{"alternatives": f.alt})
		return
	}
	now := f.now().UTC()
	p := &Payment{Order: fmt.Sprintf("T%024d", len(f.created)+1), Source: req.Source, State: PaymentPending, Amount: req.Amount,
		CreatedAt: now, ExpiresAt: now.Add(5 * time.Minute), Refunded: vend.Amount{Currency: f.cur}}
	switch req.Source {
	case "wechatpay":
		p.CodeURL = "weixin://wxpay/bizpayurl?pr=" + p.Order[len(p.Order)-9:]
	case "alipay":
		p.CodeURL = "https://qr.alipay.com/bax" + p.Order[1:]
	case "card_sandbox":
		p.State, p.Test, p.PaidAt, p.ProviderTxID = PaymentPaid, true, now, "sandbox-"+p.Order
		f.wallet += p.Amount.Minor
	}
	f.orders[p.Order], f.keys[key] = p, p.Order
	f.created = append(f.created, p.Order)
	if f.loseTopUps > 0 {
		f.loseTopUps--
		writeAPIError(w, 503, vend.Transient, "channel.unavailable", nil)
		return
	}
	writeJSON(w, 201, p)
}

func (f *payFake) list(w http.ResponseWriter, r *http.Request) {
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit < 1 || limit > 100 {
		writeAPIError(w, 400, vend.Invalid, "request.field", nil)
		return
	}
	start := 0
	if c := r.URL.Query().Get("cursor"); c != "" {
		if start, err = strconv.Atoi(c); err != nil {
			writeAPIError(w, 400, vend.Invalid, "request.field", nil)
			return
		}
	}
	out := PaymentList{Payments: []Payment{}}
	for i := len(f.created) - 1 - start; i >= 0 && len(out.Payments) < limit; i-- { // newest first
		out.Payments = append(out.Payments, *f.orders[f.created[i]])
	}
	if next := start + len(out.Payments); next < len(f.created) {
		out.Next = strconv.Itoa(next)
	}
	writeJSON(w, 200, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeAPIError writes the error body, with extra fields merged into
// "error" (such as source.limit's alternatives).
func writeAPIError(w http.ResponseWriter, status int, kind vend.Kind, code string, extra map[string]any) {
	e := map[string]any{"kind": kind, "code": code, "message": "fake: " + code}
	for k, v := range extra {
		e[k] = v
	}
	writeJSON(w, status, map[string]any{"error": e})
}

// runPhone runs Main with args against srv, with a quick poll, and
// returns its output and error.
func runPhone(t *testing.T, srv *httptest.Server, ctx context.Context, args ...string) (*Main, string, error) {
	t.Helper()
	var out bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &out}
	if err := m.ParseFlags(append([]string{"-api", srv.URL, "-token", "tok-1", "-token-file", "-"}, args...)); err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	m.payPoll = 10 * time.Millisecond
	err := m.Run(ctx)
	m.Close()
	return m, out.String(), err
}

// qrText returns the lines of the first QR code in out.
func qrText(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if l != "" && strings.Trim(ansi.ReplaceAllString(l, ""), qrDarkDark+qrDarkLight+qrLightDark+qrLightLight) == "" {
			b.WriteString(l + "\n")
		} else if b.Len() > 0 {
			break
		}
	}
	return b.String()
}

// A QR top-up prints the code_url as a QR code that decodes back to it and
// as text, follows the order until the provider's payment is seen, prints
// the receipt (channel, provider transaction ID, order number) and the
// credited wallet. Both QR channels.
func TestTopUpFollowsToPaid(t *testing.T) {
	for _, src := range []string{"wechatpay", "alipay"} {
		t.Run(src, func(t *testing.T) {
			f := newPayFake(t)
			f.step = func(p *Payment, polls int) {
				if polls == 3 {
					now := time.Now().UTC()
					p.State, p.PaidAt, p.ProviderTxID = PaymentPaid, now, "4200001234"+p.Order[len(p.Order)-6:]
				}
			}
			srv := httptest.NewServer(f)
			defer srv.Close()
			m, out, err := runPhone(t, srv, context.Background(), "-topup", "20.00", "-topup-source", src, "-wallet")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			p := m.Payment
			if p == nil || p.State != PaymentPaid || f.polls[p.Order] != 3 {
				t.Fatalf("payment %+v after %v polls, want paid after 3\n%s", p, f.polls, out)
			}
			q := qrText(out)
			if q == "" {
				t.Fatalf("no QR code in the output:\n%s", out)
			}
			if got := decodeQR(t, qrPixels(t, q), 4); got != p.CodeURL {
				t.Errorf("printed QR decodes to %q, want the code_url %q", got, p.CodeURL)
			}
			if n := strings.Count(out, " pending "); n != 1 {
				t.Errorf("%d pending lines for 3 questions, want one (a line per state change off a terminal)\n%s", n, out)
			}
			for _, want := range []string{"or open: " + p.CodeURL, "payment " + p.Order, "channel      " + src,
				"provider tx  " + p.ProviderTxID, "amount       20.00 CNY", "refunded     nothing",
				"topped up 20.00 CNY through " + src + ": wallet 20.00 CNY", "wallet: 20.00 CNY available"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// The sandbox card pays at once: no code, no polling.
func TestTopUpSandboxCardPaysAtOnce(t *testing.T) {
	f := newPayFake(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	m, out, err := runPhone(t, srv, context.Background(), "-topup", "20.00", "-wallet")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if m.Payment.State != PaymentPaid || len(f.polls) != 0 || qrText(out) != "" || m.WalletAfter.Available.Minor != 2000 {
		t.Errorf("payment %+v, polls %v, wallet %+v: want paid at once without a code\n%s", m.Payment, f.polls, m.WalletAfter, out)
	}
	if !strings.Contains(out, "channel      card_sandbox (test)") {
		t.Errorf("the sandbox card is not marked test:\n%s", out)
	}
}

// An order the payer does not pay, closed by the cloud at its TTL: the
// client says it expired unpaid and that nothing was charged.
func TestTopUpClosedExpired(t *testing.T) {
	f := newPayFake(t)
	f.step = func(p *Payment, polls int) {
		if polls == 2 {
			p.State, p.ExpiresAt = PaymentClosed, time.Now().Add(-time.Second)
		}
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	m, out, err := runPhone(t, srv, context.Background(), "-topup", "5.00", "-topup-source", "alipay")
	if !errors.Is(err, ErrPayment) || !strings.Contains(err.Error(), "expired at") || !strings.Contains(err.Error(), "nothing was charged") {
		t.Fatalf("err %v, want ErrPayment saying the order expired and nothing was charged\n%s", err, out)
	}
	if m.Payment.State != PaymentClosed || exitCode(err) != ExitPayment {
		t.Errorf("payment %+v exit %d", m.Payment, exitCode(err))
	}
}

// A provider that refuses the payment (failed).
func TestTopUpFailed(t *testing.T) {
	f := newPayFake(t)
	f.step = func(p *Payment, polls int) { p.State = PaymentFailed }
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, out, err := runPhone(t, srv, context.Background(), "-topup", "5.00", "-topup-source", "wechatpay")
	if !errors.Is(err, ErrPayment) || !strings.Contains(err.Error(), "wechatpay refused the payment") {
		t.Fatalf("err %v\n%s", err, out)
	}
}

// An order still pending at -pay-timeout: the client stops following and
// says until when it can still be paid.
func TestTopUpTimeout(t *testing.T) {
	f := newPayFake(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	m, out, err := runPhone(t, srv, context.Background(), "-topup", "5.00", "-topup-source", "wechatpay", "-pay-timeout", "150ms")
	if !errors.Is(err, ErrPayment) || !strings.Contains(err.Error(), "still pending after 150ms") || !strings.Contains(err.Error(), "can still be paid until") {
		t.Fatalf("err %v, want still pending with the time it can be paid until\n%s", err, out)
	}
	if m.Payment.State != PaymentPending || f.polls[m.Payment.Order] == 0 {
		t.Errorf("payment %+v polled %d times", m.Payment, f.polls[m.Payment.Order])
	}
}

// A pending order past its expiry at the bound is called expired.
func TestTopUpTimeoutExpired(t *testing.T) {
	f := newPayFake(t)
	f.now = func() time.Time { return time.Now().Add(-10 * time.Minute) } // orders created 10 min ago expire 5 min ago
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, out, err := runPhone(t, srv, context.Background(), "-topup", "5.00", "-topup-source", "alipay", "-pay-timeout", "50ms")
	if !errors.Is(err, ErrPayment) || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("err %v, want an expired pending order\n%s", err, out)
	}
}

// Ctrl-C (the context ending) while waiting leaves the order as it is and
// says so, whether it comes between two questions or during one.
func TestTopUpInterrupted(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Minute} {
		f := newPayFake(t)
		f.getDelay = delay
		srv := httptest.NewServer(f)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, out, err := runPhone(t, srv, ctx, "-topup", "5.00", "-topup-source", "alipay")
		cancel()
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "stopped waiting for order") || !strings.Contains(err.Error(), "can still be paid until") {
			t.Errorf("answers after %s: err %v\n%s", delay, err, out)
		}
	}
}

// Over the channel's limit: the error names the alternatives the server
// names, exit status 5; no order was opened.
func TestTopUpSourceLimit(t *testing.T) {
	f := newPayFake(t)
	f.maxTopUp, f.alt = 50000, []string{"alipay", "card_sandbox"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, out, err := runPhone(t, srv, context.Background(), "-topup", "800.00", "-topup-source", "wechatpay")
	if !errors.Is(err, ErrLimit) || exitCode(err) != ExitFunds {
		t.Fatalf("err %v (exit %d), want ErrLimit (exit %d)\n%s", err, exitCode(err), ExitFunds, out)
	}
	if msg := err.Error(); !strings.Contains(msg, "try -topup-source alipay or -topup-source card_sandbox") || !strings.Contains(msg, "800.00 CNY through wechatpay") {
		t.Errorf("error %q does not name the amount, the source and the alternatives", msg)
	}
	f.alt = nil
	_, _, err = runPhone(t, srv, context.Background(), "-topup", "800.00", "-topup-source", "wechatpay")
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "names no other source for this amount") {
		t.Errorf("without alternatives: %v", err)
	}
	if len(f.created) != 0 {
		t.Errorf("orders opened: %v", f.created)
	}
}

// A top-up whose answer is lost (503 after the order was made) is retried
// with the same idempotency key: one order, followed to paid.
func TestTopUpRetryOpensOneOrder(t *testing.T) {
	f := newPayFake(t)
	f.loseTopUps = 1
	f.step = func(p *Payment, polls int) {
		now := time.Now().UTC()
		p.State, p.PaidAt, p.ProviderTxID = PaymentPaid, now, "2026120722001"
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	m, out, err := runPhone(t, srv, context.Background(), "-topup", "5.00", "-topup-source", "alipay", "-wallet")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(f.created) != 1 || len(f.keys) != 1 || m.WalletAfter.Available.Minor != 500 {
		t.Errorf("orders %v keys %v wallet %+v: want one order, credited once", f.created, f.keys, m.WalletAfter)
	}
}

// Transient errors while following are asked again; the order still
// reaches paid.
func TestTopUpFollowRidesOutTransientErrors(t *testing.T) {
	f := newPayFake(t)
	f.failGets = 3
	f.step = func(p *Payment, polls int) {
		now := time.Now().UTC()
		p.State, p.PaidAt, p.ProviderTxID = PaymentPaid, now, "4200009"
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	m, out, err := runPhone(t, srv, context.Background(), "-topup", "5.00", "-topup-source", "wechatpay", "-wallet")
	if err != nil || m.Payment.State != PaymentPaid {
		t.Fatalf("%v %+v\n%s", err, m.Payment, out)
	}
	if n := strings.Count(out, "asking again"); n != 3 {
		t.Errorf("%d transient errors shown, want 3\n%s", n, out)
	}
}

// An answer for another order, or in a state the client does not know,
// ends the wait with an error rather than trusting it.
func TestTopUpBadAnswers(t *testing.T) {
	for name, step := range map[string]func(p *Payment, polls int){
		"other order":   func(p *Payment, polls int) { p.Order = "T-someone-else" },
		"unknown state": func(p *Payment, polls int) { p.State = "refunding" },
	} {
		t.Run(name, func(t *testing.T) {
			f := newPayFake(t)
			f.step = func(p *Payment, polls int) {
				q := *p
				step(&q, polls)
				f.orders[p.Order] = &q
			}
			srv := httptest.NewServer(f)
			defer srv.Close()
			_, out, err := runPhone(t, srv, context.Background(), "-topup", "5.00", "-topup-source", "wechatpay")
			if !errors.Is(err, phoneapi.ErrResponse) {
				t.Fatalf("err %v, want a malformed response\n%s", err, out)
			}
		})
	}
}

// -withdraw returns the amount to the channels it came from and prints
// each refund with its order, channel and provider refund ID; "all" is
// the wallet's available money.
func TestWithdraw(t *testing.T) {
	f := newPayFake(t)
	f.wallet = 1750
	f.withdraw = func(a vend.Amount) (int, *Withdrawal) {
		return 201, &Withdrawal{ID: "W1", Amount: a, State: "succeeded", Refunds: []RefundPart{
			{RefundNo: "RF1", Order: "T01", Source: "wechatpay", Amount: vend.Amount{Minor: 1000, Currency: "CNY"}, State: "succeeded", ProviderRefundID: "50300001"},
			{RefundNo: "RF2", Order: "T02", Source: "alipay", Amount: vend.Amount{Minor: a.Minor - 1000, Currency: "CNY"}, State: "succeeded", ProviderRefundID: "2026120722009"},
		}}
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	m, out, err := runPhone(t, srv, context.Background(), "-withdraw", "all")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if m.Withdrawal.Amount.Minor != 1750 || f.wallet != 0 || len(f.withdrawKeys) != 1 {
		t.Errorf("withdrawal %+v wallet %d keys %v: want all 17.50 withdrawn once", m.Withdrawal, f.wallet, f.withdrawKeys)
	}
	for _, want := range []string{"withdrawal W1 succeeded: 17.50 CNY", "RF1", "T01", "50300001", "RF2", "alipay", "7.50 CNY", "2026120722009", "wallet now 0.00 CNY available"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Nothing left: a clear error, no request.
	_, _, err = runPhone(t, srv, context.Background(), "-withdraw", "all")
	if err == nil || !strings.Contains(err.Error(), "nothing to withdraw") || len(f.withdrawKeys) != 1 {
		t.Errorf("withdraw all of nothing: %v (requests %d)", err, len(f.withdrawKeys))
	}
	// More than there is: the server's funds.insufficient with the balance.
	f.wallet = 300
	_, _, err = runPhone(t, srv, context.Background(), "-withdraw", "5.00")
	if !errors.Is(err, ErrFunds) || !strings.Contains(err.Error(), "3.00 CNY available") {
		t.Errorf("withdraw above the wallet: %v", err)
	}
	// A partial withdrawal says how much is on its way and that the rest stays.
	f.withdraw = func(a vend.Amount) (int, *Withdrawal) {
		return 201, &Withdrawal{ID: "W2", Amount: a, State: "partial", Refunds: []RefundPart{
			{RefundNo: "RF3", Order: "T01", Source: "wechatpay", Amount: vend.Amount{Minor: 100, Currency: "CNY"}, State: "succeeded", ProviderRefundID: "50300002"},
			{RefundNo: "RF4", Order: "T02", Source: "alipay", Amount: vend.Amount{Minor: 200, Currency: "CNY"}, State: "failed"},
		}}
	}
	_, out, err = runPhone(t, srv, context.Background(), "-withdraw", "3.00")
	if !errors.Is(err, ErrWithdrawal) || !strings.Contains(err.Error(), "1.00 CNY of 3.00 CNY is on its way back") {
		t.Errorf("partial: %v\n%s", err, out)
	}
}

// -payments lists every payment as a receipt, following the pages.
func TestListPayments(t *testing.T) {
	f := newPayFake(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	for i := 0; i < 25; i++ {
		if _, out, err := runPhone(t, srv, context.Background(), "-topup", "1.00", "-wallet"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	first := f.orders[f.created[0]]
	first.Refunded.Minor = 40
	m, out, err := runPhone(t, srv, context.Background(), "-payments")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(m.Payments) != 25 || strings.Count(out, "payment T") != 25 {
		t.Fatalf("listed %d payments (%d printed), want 25\n%s", len(m.Payments), strings.Count(out, "payment T"), out)
	}
	if !strings.Contains(out, "provider tx  "+first.ProviderTxID) || !strings.Contains(out, "refunded     0.40 CNY") {
		t.Errorf("the first payment's receipt lacks its provider tx or refund:\n%s", out)
	}
}

// A provider that will not open the order: not paid, exit status 6.
func TestTopUpRefused(t *testing.T) {
	f := newPayFake(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, out, err := runPhone(t, srv, context.Background(), "-topup", "5.00", "-topup-source", "refusing")
	if !errors.Is(err, ErrPayment) || exitCode(err) != ExitPayment || !strings.Contains(err.Error(), "nothing was charged") {
		t.Errorf("err %v (exit %d), want not paid (exit %d)\n%s", err, exitCode(err), ExitPayment, out)
	}
}

// An unknown source: the error lists the sources there are.
func TestTopUpUnknownSource(t *testing.T) {
	f := newPayFake(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, out, err := runPhone(t, srv, context.Background(), "-topup", "5.00", "-topup-source", "paypal")
	if vend.CodeOf(err) != "source.not_found" || !strings.Contains(err.Error(), "the sources are: wechatpay, alipay") {
		t.Errorf("err %v, want source.not_found listing the sources\n%s", err, out)
	}
}

// Flags of the payment steps are checked before anything runs.
func TestPayFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-withdraw", "most"}, "phone: -withdraw: "},
		{[]string{"-withdraw", "1.234"}, "phone: -withdraw: "},
		{[]string{"-topup", "20.00", "-source", "wechatpay"}, "the channel of -topup is -topup-source"},
		{[]string{"-pay-timeout", "-1s"}, "phone: -pay-timeout"},
	} {
		m := &Main{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
		err := m.ParseFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFlags(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
	m := &Main{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	if err := m.ParseFlags([]string{"-topup", "20.00", "-topup-source", "alipay", "-withdraw", "all"}); err != nil {
		t.Errorf("valid flags: %v", err)
	}
}
