package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// stepEnv is a service on one store with an online water tap (0.50 EUR
// per litre) whose device authorizes every grant, a payer with 20.00 EUR
// and a clock the test moves.
type stepEnv struct {
	t     *testing.T
	ctx   context.Context
	clk   *payClock
	st    *store.Store
	svc   *service.Service
	key   proxid.Key
	user  string
	other string
}

func newStepEnv(t *testing.T, dsn string, opts service.StepUpOptions) *stepEnv {
	t.Helper()
	e := &stepEnv{t: t, ctx: context.Background(), clk: &payClock{}}
	e.clk.ns.Store(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	st, err := store.Open(e.ctx, dsn, &store.Opts{BcryptCost: 4, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	op, err := st.CreateOperator(e.ctx, "op")
	if err != nil {
		t.Fatal(err)
	}
	rand.Read(e.key[:])
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := st.CreateDevice(e.ctx, store.Device{ID: "wd-1", OperatorID: op.ID, Name: "w", IdentityKey: e.key, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDeviceStatus(e.ctx, "wd-1", true, nil, e.clk.Now()); err != nil {
		t.Fatal(err)
	}
	for i, email := range []string{"payer@example.com", "other@example.com"} {
		u, err := st.CreateUser(e.ctx, email, "password-123")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.TopUp(e.ctx, u.ID, vend.Amount{Minor: 2000, Currency: "EUR"}, "sandbox_card", "seed-"+u.ID); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			e.user = u.ID
		} else {
			e.other = u.ID
		}
	}
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	pubr := &FakePublisher{}
	e.svc, err = service.New(e.ctx, service.Options{Store: st, Publisher: pubr, CloudKey: cloud, Now: e.clk.Now, StepUp: opts,
		ReplyTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pubr.Fn = func(device string, cmd mqttapi.Message) {
		if _, ok := cmd.(*mqttapi.Authorize); ok {
			e.svc.Handle(context.Background(), device, mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(e.clk.Now()), cmd.Head().ID, nil))
		}
	}
	return e
}

func (e *stepEnv) start(ctx context.Context, user, key string, units uint64) (store.Session, error) {
	return e.svc.StartSession(ctx, user, key, phoneapi.StartSessionRequest{Device: "wd-1", Machine: "tap1", Cap: phoneapi.Cap{Units: units},
		Source: "wallet", ProximityID: phoneapi.ProximityID(proxid.Compute(e.key, proxid.Counter(e.clk.Now()), 5).String())})
}

func (e *stepEnv) token(user, pin, scope string) string {
	e.t.Helper()
	tok, err := e.svc.StepUp(e.ctx, user, phoneapi.StepUpRequest{PIN: pin, Scope: scope})
	if err != nil {
		e.t.Fatalf("StepUp: %v", err)
	}
	return tok.Token
}

func (e *stepEnv) stop(id vend.SessionID) {
	e.t.Helper()
	if _, err := e.st.Fail(e.ctx, id, "test.done"); err != nil {
		e.t.Fatal(err)
	}
}

func wantStepCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if vend.CodeOf(err) != code {
		t.Fatalf("%s: %v (code %q), want %s", what, err, vend.CodeOf(err), code)
	}
}

func eur(m int64) *vend.Amount { return &vend.Amount{Minor: m, Currency: "EUR"} }

// A cap above the payer's threshold is refused without a step-up token
// and started with one; the token is the payer's, spent once (a retry of
// the same request may present it again), bounded in time and scope.
func TestStepUpSessionCap(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newStepEnv(t, dsn, service.StepUpOptions{})
		if err := e.svc.SetPIN(e.ctx, e.user, "4821", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SetStepUpThresholds(e.ctx, e.user, phoneapi.StepUpThresholds{SessionCapAbove: eur(50)}); vend.CodeOf(err) != "step_up.required" {
			t.Fatalf("thresholds without a token: %v", err)
		}
		set, err := e.svc.SetStepUpThresholds(service.WithStepUpToken(e.ctx, e.token(e.user, "4821", "settings")), e.user,
			phoneapi.StepUpThresholds{SessionCapAbove: eur(50)})
		if err != nil || !set.PINSet || set.SessionCapAbove == nil || *set.SessionCapAbove != *eur(50) || set.TokenTTLSeconds != 300 {
			t.Fatalf("SetStepUpThresholds = %+v, %v", set, err)
		}

		// At or under the threshold: no step-up.
		ss, err := e.start(e.ctx, e.user, "key-small-1", 1000) // 0.50 EUR
		if err != nil {
			t.Fatalf("cap at the threshold: %v", err)
		}
		e.stop(ss.ID)

		// Above it: refused, nothing held, the message names the amounts.
		_, err = e.start(e.ctx, e.user, "key-big-001", 2000) // 1.00 EUR
		wantStepCode(t, "no token", err, "step_up.required")
		if !strings.Contains(err.Error(), "1.00 EUR is above 0.50 EUR") {
			t.Fatalf("message %q does not name the amounts", err)
		}
		if w, _ := e.svc.Wallet(e.ctx, e.user); w.Held.Minor != 0 {
			t.Fatalf("held %d after a refusal", w.Held.Minor)
		}

		// Another user's token, and a token of another scope, are invalid.
		otherTok := func() string {
			if err := e.svc.SetPIN(e.ctx, e.other, "7305", ""); err != nil {
				t.Fatal(err)
			}
			return e.token(e.other, "7305", "")
		}()
		_, err = e.start(service.WithStepUpToken(e.ctx, otherTok), e.user, "key-big-001", 2000)
		wantStepCode(t, "another user's token", err, "step_up.invalid")
		_, err = e.start(service.WithStepUpToken(e.ctx, e.token(e.user, "4821", "top_up")), e.user, "key-big-001", 2000)
		wantStepCode(t, "a top-up token", err, "step_up.invalid")

		// With a token: started; the same request again finds its session.
		tok := e.token(e.user, "4821", "session")
		ctx := service.WithStepUpToken(e.ctx, tok)
		ss, err = e.start(ctx, e.user, "key-big-001", 2000)
		if err != nil || ss.State != store.Authorized || ss.Hold != 100 {
			t.Fatalf("with a token: %+v, %v", ss, err)
		}
		again, err := e.start(ctx, e.user, "key-big-001", 2000)
		if err != nil || again.ID != ss.ID {
			t.Fatalf("retry: %+v, %v; want session %s", again, err, ss.ID)
		}
		e.stop(ss.ID)
		// ...but the spent token starts nothing else.
		_, err = e.start(ctx, e.user, "key-big-002", 2000)
		wantStepCode(t, "token reuse", err, "step_up.invalid")

		// Expired on the cloud's clock.
		tok = e.token(e.user, "4821", "")
		e.clk.Add(service.DefaultStepUpTTL)
		_, err = e.start(service.WithStepUpToken(e.ctx, tok), e.user, "key-big-003", 2000)
		wantStepCode(t, "expired token", err, "step_up.invalid")
		if imb, _ := e.st.LedgerImbalance(e.ctx); len(imb) != 0 {
			t.Fatalf("imbalance %v", imb)
		}
	})
}

// Above the operator's limit a payer without a PIN is told to set one;
// with a PIN a step-up is needed whatever the payer chose. The payer's
// own lower withdrawal threshold applies too.
func TestStepUpTopUpAndWithdrawal(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newStepEnv(t, dsn, service.StepUpOptions{TopUpAbove: map[vend.Currency]int64{"EUR": 5000}})
		topUp := func(ctx context.Context, key string, minor int64) (phoneapi.Payment, error) {
			return e.svc.TopUp(ctx, e.user, key, phoneapi.TopUpRequest{Amount: vend.Amount{Minor: minor, Currency: "EUR"}, Source: "card_sandbox"})
		}
		if _, err := topUp(e.ctx, "top-small-1", 5000); err != nil {
			t.Fatalf("top-up at the limit: %v", err)
		}
		_, err := topUp(e.ctx, "top-big-001", 6000)
		wantStepCode(t, "no pin above the limit", err, "step_up.pin_required")
		if err := e.svc.SetPIN(e.ctx, e.user, "4821", ""); err != nil {
			t.Fatal(err)
		}
		_, err = topUp(e.ctx, "top-big-001", 6000)
		wantStepCode(t, "pin, no token", err, "step_up.required")
		p, err := topUp(service.WithStepUpToken(e.ctx, e.token(e.user, "4821", "top_up")), "top-big-001", 6000)
		if err != nil || p.State != phoneapi.PaymentPaid {
			t.Fatalf("top-up with a token: %+v, %v", p, err)
		}
		// A retry of the paid order needs nothing (it opens nothing).
		if q, err := topUp(e.ctx, "top-big-001", 6000); err != nil || q.Order != p.Order {
			t.Fatalf("retry: %+v, %v", q, err)
		}

		// The payer's own withdrawal threshold (no operator limit on withdrawals).
		if _, err := e.svc.SetStepUpThresholds(service.WithStepUpToken(e.ctx, e.token(e.user, "4821", "")), e.user,
			phoneapi.StepUpThresholds{WithdrawalAbove: eur(1000)}); err != nil {
			t.Fatal(err)
		}
		withdraw := func(ctx context.Context, key string, minor int64) (phoneapi.Withdrawal, error) {
			return e.svc.Withdraw(ctx, e.user, key, phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: minor, Currency: "EUR"}})
		}
		if _, err := withdraw(e.ctx, "wd-small-1", 1000); err != nil {
			t.Fatalf("withdrawal at the threshold: %v", err)
		}
		_, err = withdraw(e.ctx, "wd-big-001", 3000)
		wantStepCode(t, "withdrawal without a token", err, "step_up.required")
		tok := e.token(e.user, "4821", "withdrawal")
		w, err := withdraw(service.WithStepUpToken(e.ctx, tok), "wd-big-001", 3000)
		if err != nil || w.Amount.Minor != 3000 {
			t.Fatalf("withdrawal with a token: %+v, %v", w, err)
		}
		_, err = withdraw(service.WithStepUpToken(e.ctx, tok), "wd-big-002", 3000)
		wantStepCode(t, "withdrawal token reuse", err, "step_up.invalid")
		// The exported check for other callers (checkouts).
		wantStepCode(t, "RequireStepUp", e.svc.RequireStepUp(e.ctx, e.user, service.StepUpCheckout, *eur(100)), "")
		if err := e.svc.RequireStepUp(e.ctx, e.user, service.StepUpTopUp, *eur(5001)); vend.CodeOf(err) != "step_up.required" {
			t.Fatalf("RequireStepUp above the operator limit: %v", err)
		}
		if err := e.svc.RequireStepUp(e.ctx, e.user, service.StepUpTopUp, vend.Amount{Minor: 5001, Currency: "CNY"}); err != nil {
			t.Fatalf("a currency without a limit: %v", err)
		}
		if imb, _ := e.st.LedgerImbalance(e.ctx); len(imb) != 0 {
			t.Fatalf("imbalance %v", imb)
		}
	})
}

// Setting a PIN: weak and malformed ones are refused with clear errors;
// a change needs the current PIN (a wrong one counts) or a step-up token.
func TestSetPIN(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newStepEnv(t, dsn, service.StepUpOptions{})
		for pin, code := range map[string]string{
			"0000": "step_up.pin_weak", "1234": "step_up.pin_weak", "98765": "step_up.pin_weak", "1212": "step_up.pin_weak",
			"90123456": "step_up.pin_weak", "123": "step_up.pin_format", "123456789": "step_up.pin_format", "12a4": "step_up.pin_format",
			"12.4": "step_up.pin_format", "": "step_up.pin_format",
		} {
			err := e.svc.SetPIN(e.ctx, e.user, pin, "")
			if vend.CodeOf(err) != code || vend.KindOf(err) != vend.Invalid || !strings.HasPrefix(err.Error(), "stepup: ") {
				t.Errorf("SetPIN(%q) = %v, want %s", pin, err, code)
			}
		}
		_, err := e.svc.StepUp(e.ctx, e.user, phoneapi.StepUpRequest{PIN: "4821"})
		wantStepCode(t, "step-up without a pin", err, "step_up.pin_required")
		if err := e.svc.SetPIN(e.ctx, e.user, "4821", ""); err != nil {
			t.Fatal(err)
		}
		wantStepCode(t, "change without proof", e.svc.SetPIN(e.ctx, e.user, "5930", ""), "step_up.required")
		err = e.svc.SetPIN(e.ctx, e.user, "5930", "1111")
		wantStepCode(t, "wrong current pin", err, "step_up.wrong_pin")
		if !strings.Contains(err.Error(), "4 of 5 guesses left") {
			t.Fatalf("message %q does not count the guesses", err)
		}
		if err := e.svc.SetPIN(e.ctx, e.user, "5930", "4821"); err != nil {
			t.Fatalf("change with the current pin: %v", err)
		}
		if err := e.svc.SetPIN(service.WithStepUpToken(e.ctx, e.token(e.user, "5930", "pin")), e.user, "6047", ""); err != nil {
			t.Fatalf("change with a token: %v", err)
		}
		_, err = e.svc.StepUp(e.ctx, e.user, phoneapi.StepUpRequest{PIN: "6047", Scope: "everything"})
		wantStepCode(t, "unknown scope", err, "request.field")
		st, err := e.svc.StepUpSettings(e.ctx, e.user)
		if err != nil || !st.PINSet {
			t.Fatalf("settings = %+v, %v", st, err)
		}
	})
}

// Twenty concurrent wrong PINs get five guesses; the rest, and then the
// right PIN too, are locked until the window ends.
func TestStepUpLockout(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newStepEnv(t, dsn, service.StepUpOptions{})
		if err := e.svc.SetPIN(e.ctx, e.user, "4821", ""); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		codes := map[string]int{}
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.svc.StepUp(e.ctx, e.user, phoneapi.StepUpRequest{PIN: "5555"})
				mu.Lock()
				codes[vend.CodeOf(err)]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		// The fifth wrong guess answers locked itself: it used up the window.
		if codes["step_up.wrong_pin"] != 4 || codes["step_up.locked"] != 16 || len(codes) != 2 {
			t.Fatalf("answers %v, want 4 wrong_pin and 16 locked", codes)
		}
		_, err := e.svc.StepUp(e.ctx, e.user, phoneapi.StepUpRequest{PIN: "4821"})
		var le *service.PINLockedError
		if !errors.As(err, &le) || vend.CodeOf(err) != "step_up.locked" || !le.Until.Equal(e.clk.Now().Add(service.DefaultPINWindow)) {
			t.Fatalf("right pin while locked: %v", err)
		}
		e.clk.Add(service.DefaultPINWindow)
		if _, err := e.svc.StepUp(e.ctx, e.user, phoneapi.StepUpRequest{PIN: "4821"}); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	})
}

// CheckPINFormat never panics, and accepts only 4-8 ASCII digits.
func FuzzCheckPINFormat(f *testing.F) {
	for _, s := range []string{"4821", "0000", "1234", "12a4", "", "１２３４", "9999999999", "1212", "90123456"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pin string) {
		err := service.CheckPINFormat(pin)
		if err == nil {
			if len(pin) < 4 || len(pin) > 8 || strings.Trim(pin, "0123456789") != "" {
				t.Fatalf("accepted %q", pin)
			}
			return
		}
		if c := vend.CodeOf(err); c != "step_up.pin_format" && c != "step_up.pin_weak" {
			t.Fatalf("%q: code %s", pin, c)
		}
	})
}
