package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/paytest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// A phone tops up through a QR channel, the provider's notification
// credits it over the notification route, the payer buys water, an
// operator refunds part of the session to the original channel, the
// receipt shows it, and the payer withdraws the rest to the channel; on
// SQLite and on PostgreSQL, the ledger balanced at every step.
func TestChannelMoneyInAndOutOverHTTP(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "c.db")
			if db == "postgres" {
				if os.Getenv("VEND_PG_DSN") == "" {
					svctest.Missing(t, "PostgreSQL (VEND_PG_DSN) for the PostgreSQL half of the payment API tests", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
				}
				dsn = svctest.PostgresDSN(t, "vend_httpapi_pay")
			}
			channelFlow(t, dsn)
		})
	}
}

func channelFlow(t *testing.T, dsn string) {
	ctx := context.Background()
	clk := &opClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	balanced := func(step string) {
		t.Helper()
		if imb, err := st.LedgerImbalance(ctx); err != nil || len(imb) != 0 {
			t.Fatalf("%s: ledger imbalance %v %v", step, imb, err)
		}
		if bad, err := st.CheckBalances(ctx); err != nil || len(bad) != 0 {
			t.Fatalf("%s: balances %+v %v", step, bad, err)
		}
	}
	op, _, err := st.CreateOperatorWithAccount(ctx, "Acme", "ops@acme.example", "acme-password")
	if err != nil {
		t.Fatal(err)
	}
	devPub, devPriv, _ := ed25519.GenerateKey(rand.Reader)
	if err := st.CreateDevice(ctx, store.Device{ID: "dev-1", OperatorID: op.ID, Name: "lobby", IdentityKey: [16]byte{1}, K: 5, SignKey: devPub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	wx := &paytest.Channel{ID: "wechatpay", Secret: []byte("platform"), Now: clk.Now}
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: nopPublisher{}, CloudKey: ck, Now: clk.Now,
		Channels: []*payments.Guarded{payments.Guard(wx, payments.Limits{Max: 50000}, 0, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Options{Service: svc, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	phone := phoneapi.New(srv.URL, &phoneapi.Opts{HTTPClient: &http.Client{Transport: newSpecChecker(t)}})
	au, err := phone.SignUp(ctx, &phoneapi.SignUpRequest{Email: "payer@example.com", Password: "password-123"})
	if err != nil {
		t.Fatal(err)
	}

	// Top up 10.00 through the QR channel: pending, with a code_url.
	p, err := phone.TopUp(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 1000, Currency: "EUR"}, Source: "wechatpay"})
	if err != nil || p.State != phoneapi.PaymentPending || p.CodeURL == "" {
		t.Fatalf("TopUp = %+v, %v", p, err)
	}
	// Over the channel's limit: source.limit.
	_, err = phone.TopUp(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 60000, Currency: "EUR"}, Source: "wechatpay"})
	if vend.CodeOf(err) != "source.limit" {
		t.Fatalf("over the limit = %v", err)
	}
	status, err := wx.Pay(p.Order)
	if err != nil {
		t.Fatal(err)
	}
	post := func(channel string, body []byte, sig string) int {
		r, _ := http.NewRequest("POST", srv.URL+"/v1/channels/"+channel+"/notify", bytes.NewReader(body))
		r.Header.Set(paytest.SignatureHeader, sig)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	body, sig := wx.Notification(payments.Notification{EventID: "EV-1", Kind: payments.NotifyPayment, Payment: status})
	tampered := bytes.Replace(body, []byte(`"minor":1000`), []byte(`"minor":9000`), 1)
	if bytes.Equal(tampered, body) {
		t.Fatalf("cannot tamper %s", body)
	}
	if code := post("wechatpay", tampered, sig); code == 200 {
		t.Fatal("tampered notification accepted")
	}
	if code := post("nochannel", body, sig); code != 404 {
		t.Fatalf("unknown channel = %d", code)
	}
	for i := 0; i < 2; i++ {
		if code := post("wechatpay", body, sig); code != 200 {
			t.Fatalf("notification %d = %d", i, code)
		}
	}
	w, err := phone.GetWallet(ctx)
	if err != nil || w.Available.Minor != 1000 {
		t.Fatalf("wallet after the notification = %+v, %v", w, err)
	}
	got, err := phone.GetPayment(ctx, p.Order)
	if err != nil || got.State != phoneapi.PaymentPaid || got.ProviderTxID != status.ProviderTxID {
		t.Fatalf("GetPayment = %+v, %v", got, err)
	}
	list, err := phone.ListPayments(ctx, nil)
	if err != nil || len(list.Payments) != 1 || list.Payments[0].Order != p.Order {
		t.Fatalf("ListPayments = %+v, %v", list, err)
	}
	balanced("paid")

	// Buy 6 l of water (3.00).
	ss, err := st.StartSession(ctx, store.StartInput{User: au.User.ID, Device: "dev-1", Machine: "tap1", CapUnits: 10000, IdemKey: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Advance(ctx, ss.ID, store.Running, clk.Now()); err != nil {
		t.Fatal(err)
	}
	u := signed.Usage{Device: "dev-1", Seq: 1, Session: ss.ID, Machine: "tap1", Unit: ss.Unit, Units: 6000, Price: ss.Price, Currency: "EUR",
		Amount: 300, StartedAt: clk.Now(), EndedAt: clk.Now().Add(time.Second), MeterEnd: 6000, Outcome: vend.OutcomeUserStop}
	raw, err := signed.SignUsage(devPriv, u)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := signed.NewKeys(devPub)
	vu, err := signed.OpenUsage(raw, keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Settle(ctx, vu, raw); err != nil {
		t.Fatal(err)
	}
	balanced("settled")

	// The operator refunds 2.00 of it to the original channel, once per key.
	var tok httpapi.OperatorToken
	opCall := func(method, path, tok, key, body string, out any) (int, string) {
		r, _ := http.NewRequest(method, srv.URL+path, bytes.NewBufferString(body))
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		if key != "" {
			r.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			var er phoneapi.ErrorResponse
			_ = json.Unmarshal(b, &er)
			return resp.StatusCode, er.Error.Code
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s: %s", path, b)
			}
		}
		return resp.StatusCode, ""
	}
	if code, ec := opCall("POST", "/v1/operator/auth/login", "", "", `{"email":"ops@acme.example","password":"acme-password"}`, &tok); code != 200 {
		t.Fatalf("log-in %d %s", code, ec)
	}
	path := "/v1/operator/sessions/" + ss.ID.String() + "/refund"
	if code, ec := opCall("POST", path, tok.Token, "", `{"amount":{"minor":200,"currency":"EUR"},"reason":"slow flow"}`, nil); code != 400 || ec != "request.idempotency_key" {
		t.Fatalf("refund without a key = %d %s, want 400 request.idempotency_key", code, ec)
	}
	var ref service.SessionRefund
	for i := 0; i < 2; i++ {
		if code, ec := opCall("POST", path, tok.Token, "refund-key-1", `{"amount":{"minor":200,"currency":"EUR"},"reason":"slow flow"}`, &ref); code != 201 {
			t.Fatalf("refund %d = %d %s", i, code, ec)
		}
		if len(ref.Refunds) != 1 || ref.Refunds[0].Source != "wechatpay" || ref.Refunds[0].State != phoneapi.RefundSucceeded ||
			ref.Refunds[0].ProviderRefundID == "" || ref.Refunds[0].Order != p.Order || ref.Wallet.Minor != 0 {
			t.Fatalf("refund %d = %+v", i, ref)
		}
		balanced("refunded")
	}
	if code, ec := opCall("POST", path, tok.Token, "refund-key-2", `{"amount":{"minor":101,"currency":"EUR"},"reason":"more"}`, nil); code != 409 || ec != "refund.exceeds_refundable" {
		t.Fatalf("over-refund = %d %s", code, ec)
	}
	// Audited once (the retry with the same key changed nothing), as the
	// operator account's; the refused over-refund is not.
	if es, err := st.AuditLog(ctx, tok.Operator, store.AuditFilter{Action: "session.refund"}); err != nil || len(es) != 1 ||
		es[0].Account != tok.Account || !strings.Contains(string(es[0].After), `"reason":"slow flow"`) {
		t.Fatalf("audit of the refund = %+v, %v", es, err)
	}
	rc, err := phone.GetReceipt(ctx, ss.ID)
	if err != nil || rc.Refunded.Minor != 200 || len(rc.Refunds) != 1 || rc.Refunds[0].Source != "wechatpay" {
		t.Fatalf("receipt = %+v, %v", rc, err)
	}
	if w, _ := phone.GetWallet(ctx); w.Available.Minor != 700 {
		t.Fatalf("wallet after the channel refund = %+v (the refund goes to the channel, not the wallet)", w)
	}

	// The payer withdraws the rest (7.00) to the channel: 2.00 was already
	// refunded of the 10.00 order, 8.00 is left, 7.00 fits.
	wd, err := phone.Withdraw(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: 700, Currency: "EUR"}})
	if err != nil || wd.State != phoneapi.WithdrawalSucceeded || len(wd.Refunds) != 1 || wd.Refunds[0].Amount.Minor != 700 {
		t.Fatalf("Withdraw = %+v, %v", wd, err)
	}
	if w, _ := phone.GetWallet(ctx); w.Available.Minor != 0 {
		t.Fatalf("wallet after the withdrawal = %+v", w)
	}
	got, _ = phone.GetPayment(ctx, p.Order)
	if got.Refunded.Minor != 900 {
		t.Fatalf("order refunded %v, want 9.00", got.Refunded)
	}
	balanced("withdrawn")
}
