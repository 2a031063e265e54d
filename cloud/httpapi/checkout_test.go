package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
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

// answeringPublisher answers every Authorize with ok through the
// service's uplink handler, as the board does, and records what it sent.
type answeringPublisher struct {
	mu   sync.Mutex
	svc  *service.Service
	sent []mqttapi.Message
}

func (p *answeringPublisher) Publish(_ context.Context, device string, cmd mqttapi.Message) error {
	p.mu.Lock()
	p.sent = append(p.sent, cmd)
	svc := p.svc
	p.mu.Unlock()
	if _, ok := cmd.(*mqttapi.Authorize); ok && svc != nil {
		go svc.Handle(context.Background(), device, mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), cmd.Head().ID, nil))
	}
	return nil
}

func (p *answeringPublisher) sentStop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.sent {
		if _, ok := m.(*mqttapi.Stop); ok {
			return true
		}
	}
	return false
}

// A guest pays a water session over the phone API with a QR prepayment
// (no account, the checkout token), stops early and reads the receipt
// link with the unused part refunded to the same order; a signed-in payer
// pays one by card, captured for exactly what was delivered; a machine
// whose web checkout is off refuses a checkout without a proximity ID;
// guests are limited per address. On SQLite and PostgreSQL; every answer
// is checked against openapi.yaml.
func TestCheckoutsOverHTTP(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "c.db")
			if db == "postgres" {
				if os.Getenv("VEND_PG_DSN") == "" {
					svctest.Missing(t, "PostgreSQL (VEND_PG_DSN) for the PostgreSQL half of the checkout API tests", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
				}
				dsn = svctest.PostgresDSN(t, "vend_httpapi_co")
			}
			checkoutFlow(t, dsn)
		})
	}
}

func checkoutFlow(t *testing.T, dsn string) {
	ctx := context.Background()
	clk := &opClock{t: time.Now()}
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
	if err := st.SetDeviceStatus(ctx, "dev-1", true, nil, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.SetWebCheckout(ctx, "dev-1", "tap1", true); err != nil {
		t.Fatal(err)
	}
	wx := &paytest.Channel{ID: "wechatpay", Secret: []byte("platform"), Now: clk.Now}
	card := &paytest.Card{Channel: paytest.Channel{ID: "card", Secret: []byte("card"), Now: clk.Now}}
	pub := &answeringPublisher{}
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: pub, CloudKey: ck, Now: clk.Now, PublicURL: "https://cloud.example",
		ReplyTimeout: 2 * time.Second, Channels: []*payments.Guarded{payments.Guard(wx, payments.Limits{Max: 50000}, 0, nil),
			payments.Guard(card, payments.Limits{Max: 50000}, 1, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.WaitBackground)
	pub.mu.Lock()
	pub.svc = svc
	pub.mu.Unlock()
	api, err := httpapi.New(httpapi.Options{Service: svc, Now: clk.Now,
		Limits: httpapi.Limits{SignUpPerIP: httpapi.RateLimit{Per: time.Hour, Burst: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	hc := &http.Client{Transport: newSpecChecker(t)}
	var seq atomic.Uint64
	report := func(id vend.SessionID, units uint64) {
		t.Helper()
		ss, err := st.GetSession(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		cost, _ := ss.Price.Cost(units)
		n := seq.Add(1)
		u := signed.Usage{Device: ss.Device, Seq: n, Session: ss.ID, Machine: ss.Machine, Unit: ss.Unit, Units: units, Price: ss.Price,
			Currency: ss.Currency, Amount: cost, StartedAt: clk.Now(), EndedAt: clk.Now().Add(time.Second), MeterEnd: units, Outcome: vend.OutcomeUserStop}
		raw, err := signed.SignUsage(devPriv, u)
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Handle(ctx, "dev-1", mqttapi.LeafUsage, &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(time.Now()), Session: ss.ID, Seq: n, Report: raw}); err != nil {
			t.Fatal(err)
		}
	}
	waitState := func(c *phoneapi.Client, id, token string, want phoneapi.CheckoutState) *phoneapi.Checkout {
		t.Helper()
		end := time.Now().Add(10 * time.Second)
		for {
			svc.WaitBackground()
			got, err := c.GetCheckout(ctx, id, token)
			if err != nil {
				t.Fatal(err)
			}
			if got.State == want {
				return got
			}
			if time.Now().After(end) {
				t.Fatalf("checkout %s is %s (%s), want %s", id, got.State, got.FailCode, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// A guest: no bearer.
	guest := phoneapi.New(srv.URL, &phoneapi.Opts{HTTPClient: hc})
	req := &phoneapi.CheckoutRequest{Device: "dev-1", Machine: "tap1", Cap: phoneapi.Cap{Units: 4000}, Source: "wechatpay"}
	key := phoneapi.NewIdempotencyKey()
	co, err := guest.CreateCheckout(ctx, key, req)
	if err != nil || co.State != phoneapi.CheckoutAwaitingPayment || co.CodeURL == "" || co.Token == "" || co.Hold.Minor != 200 {
		t.Fatalf("CreateCheckout = %+v, %v", co, err)
	}
	// The retry (a lost answer) gets the same checkout and token.
	if again, err := guest.CreateCheckout(ctx, key, req); err != nil || again.ID != co.ID || again.Token != co.Token {
		t.Fatalf("retry = %+v, %v", again, err)
	}
	// Without the token: 401; with another's: 404.
	if _, err := guest.GetCheckout(ctx, co.ID, ""); vend.KindOf(err) != vend.Unauthorized {
		t.Fatalf("no token: %v", err)
	}
	if _, err := guest.GetCheckout(ctx, co.ID, "ct_"+strings.Repeat("0", 64)); vend.CodeOf(err) != "checkout.not_found" {
		t.Fatalf("wrong token: %v", err)
	}
	status, err := wx.Pay(co.Order)
	if err != nil {
		t.Fatal(err)
	}
	body, sig := wx.Notification(payments.Notification{EventID: "EV-1", Kind: payments.NotifyPayment, Payment: status})
	r, _ := http.NewRequest("POST", srv.URL+"/v1/channels/wechatpay/notify", bytes.NewReader(body))
	r.Header.Set(paytest.SignatureHeader, sig)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	got := waitState(guest, co.ID, co.Token, phoneapi.CheckoutInSession)
	if got.Session == nil || got.Token != "" {
		t.Fatalf("in session %+v", got)
	}
	balanced("in session")
	if err := st.Advance(ctx, *got.Session, store.Running, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if got, err = guest.StopCheckout(ctx, co.ID, co.Token); err != nil || !pub.sentStop() {
		t.Fatalf("stop = %+v, %v (stop sent %v)", got, err, pub.sentStop())
	}
	report(*got.Session, 600)
	got = waitState(guest, co.ID, co.Token, phoneapi.CheckoutDone)
	rt := got.ReceiptURL[strings.LastIndex(got.ReceiptURL, "/")+1:]
	if !strings.HasPrefix(got.ReceiptURL, "https://cloud.example/r/") {
		t.Fatalf("receipt url %q", got.ReceiptURL)
	}
	anyone := phoneapi.New(srv.URL, &phoneapi.Opts{HTTPClient: hc})
	rc, err := anyone.GetCheckoutReceipt(ctx, rt)
	if err != nil || rc.Captured.Minor != 30 || rc.Returned.Minor != 170 || len(rc.Refunds) != 1 || rc.Refunds[0].Order != co.Order ||
		rc.Refunds[0].State != phoneapi.RefundSucceeded {
		t.Fatalf("receipt %+v, %v", rc, err)
	}
	if _, err := anyone.GetCheckoutReceipt(ctx, "rc_nope"); vend.CodeOf(err) != "checkout.not_found" {
		t.Fatalf("unknown receipt: %v", err)
	}
	balanced("guest done")

	// A signed-in payer by card: captured exactly.
	payer := phoneapi.New(srv.URL, &phoneapi.Opts{HTTPClient: hc})
	if _, err := payer.SignUp(ctx, &phoneapi.SignUpRequest{Email: "payer@example.com", Password: "password-123"}); err != nil {
		t.Fatal(err)
	}
	cc, err := payer.CreateCheckout(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.CheckoutRequest{Device: "dev-1", Machine: "tap1",
		Cap: phoneapi.Cap{Amount: &vend.Amount{Minor: 300, Currency: "EUR"}}, Source: "card"})
	if err != nil || cc.Mode != phoneapi.HoldModeAuthorize {
		t.Fatalf("card checkout = %+v, %v", cc, err)
	}
	got = waitState(payer, cc.ID, "", phoneapi.CheckoutInSession)
	report(*got.Session, 1500)
	got = waitState(payer, cc.ID, "", phoneapi.CheckoutDone)
	if s, _ := card.Status(cc.Order); got.Captured.Minor != 75 || got.Returned.Minor != 225 || s.State != payments.PayPaid || s.Amount.Minor != 75 {
		t.Fatalf("card done %+v, provider %+v", got, s)
	}
	// The guest's token does not read the payer's checkout, nor the payer's bearer a guest's.
	if _, err := guest.GetCheckout(ctx, cc.ID, co.Token); vend.CodeOf(err) != "checkout.not_found" {
		t.Fatalf("guest token on another checkout: %v", err)
	}
	if _, err := payer.GetCheckout(ctx, co.ID, ""); vend.CodeOf(err) != "checkout.not_found" {
		t.Fatalf("payer bearer on a guest checkout: %v", err)
	}
	balanced("card done")

	// The operator turns the machine's web checkout off (another
	// operator cannot); then a checkout without a proximity ID is refused.
	opLogin := func(email, pw string) string {
		resp, err := hc.Post(srv.URL+"/v1/operator/auth/login", "application/json", strings.NewReader(`{"email":"`+email+`","password":"`+pw+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct{ Token string }
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
			t.Fatalf("operator login %d %v", resp.StatusCode, err)
		}
		return tok.Token
	}
	if _, _, err := st.CreateOperatorWithAccount(ctx, "Other", "ops@other.example", "other-password"); err != nil {
		t.Fatal(err)
	}
	switchWeb := func(tok, body string) (int, string) {
		r, _ := http.NewRequest("PUT", srv.URL+"/v1/operator/devices/dev-1/machines/tap1/web-checkout", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := switchWeb(opLogin("ops@other.example", "other-password"), `{"on":false}`); code != 404 || !strings.Contains(b, "device.not_found") {
		t.Fatalf("another operator: %d %s", code, b)
	}
	acme := opLogin("ops@acme.example", "acme-password")
	if code, b := switchWeb(acme, `{}`); code != 400 {
		t.Fatalf("no field: %d %s", code, b)
	}
	if code, b := switchWeb(acme, `{"on":false}`); code != 200 || !strings.Contains(b, `"web_checkout":false`) {
		t.Fatalf("switch off: %d %s", code, b)
	}
	_, err = guest.CreateCheckout(ctx, phoneapi.NewIdempotencyKey(), req)
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) || ae.Code != "checkout.web_off" || ae.Status != http.StatusConflict {
		t.Fatalf("web off: %v", err)
	}
	// The fifth guest request from one address within the hour (the sign-up shares the budget): 429.
	_, err = guest.CreateCheckout(ctx, phoneapi.NewIdempotencyKey(), req)
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests {
		t.Fatalf("fourth guest checkout: %v", err)
	}
	// A signed-in payer is not limited by the guests' budget.
	if _, err := payer.CreateCheckout(ctx, phoneapi.NewIdempotencyKey(), req); vend.CodeOf(err) != "checkout.web_off" {
		t.Fatalf("signed-in after the guests' limit: %v", err)
	}
}
