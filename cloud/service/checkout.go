package service

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/store"
)

// Errors of checkouts.
var (
	// ErrWebCheckoutOff is a checkout without a proximity ID on a machine
	// whose web checkout is off.
	ErrWebCheckoutOff = vend.E(vend.Conflict, "checkout.web_off", "checkout: the machine takes no web checkout")
	// ErrCheckoutKey is a guest's idempotency key too short to be a secret.
	ErrCheckoutKey = vend.E(vend.Invalid, "request.field", "checkout: invalid field: Idempotency-Key")
	// ErrFreeMachine is a checkout of a machine that charges nothing.
	ErrFreeMachine = vend.E(vend.Invalid, "request.field", "checkout: the machine charges nothing; start it without a payment")
)

// GuestKeyMin is the shortest idempotency key a guest may use: a guest's
// key alone names the checkout it opened (and gives its token back on a
// retry), so it must be a random secret.
const GuestKeyMin = 16

// Payer is who opens a checkout: a signed-in user, or a guest (User "").
type Payer struct {
	User     string // "" = guest: a guest user is made for the checkout
	ClientIP string // the payer's address, passed to providers that want it
}

// CheckoutAccess is who reads or stops a checkout: its signed-in owner,
// or anyone holding the checkout's token.
type CheckoutAccess struct {
	User  string
	Token string
}

// OfferSlot is one slot of a machine on offer.
type OfferSlot struct {
	ID, Name string
	Price    vend.Price
	Empty    bool // the slot cannot vend now (jammed, or sold out by the operator's count)
}

// MachineOffer is what the web checkout page shows of one machine.
type MachineOffer struct {
	Device, Machine, Name string
	Kind                  vend.MachineKind
	Unit                  vend.Unit
	Price                 vend.Price
	Currency              vend.Currency
	Slots                 []OfferSlot
	Online                bool
	State                 string // idle, busy, fault or offline
	WebCheckout           bool   // the machine takes checkouts without a proximity ID
	Sources               []phoneapi.PaymentSource
}

// checkoutRetry is how long a checkout whose next step failed waits
// before the sweep tries it again.
const checkoutRetry = 30 * time.Second

// holdOf returns the hold side of a channel, when it has one; its calls
// go through the channel's breaker and timeout (payments.Guarded.Holds).
func holdOf(ch *payments.Guarded) (payments.HoldChannel, bool) {
	return ch.Holds()
}

// callCtx bounds one provider call by the channel's timeout.
func callCtx(ctx context.Context, ch *payments.Guarded) (context.Context, context.CancelFunc) {
	t := ch.Timeout
	if t <= 0 {
		t = 15 * time.Second
	}
	return context.WithTimeout(ctx, t)
}

// checkoutToken is the access token of a checkout: an HMAC of its ID
// under a key derived from the cloud key, so that a retried request can
// be given it again; the store keeps only its SHA-256.
func (s *Service) checkoutToken(id string) string {
	k := sha256.Sum256(append([]byte("beaconvend checkout token\x00"), s.opts.CloudKey.Seed()...))
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte(id))
	return "ct_" + hex.EncodeToString(m.Sum(nil))
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func randomToken(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func checkoutReqHash(req phoneapi.CheckoutRequest) string {
	cap := fmt.Sprintf("u%d", req.Cap.Units)
	if req.Cap.Amount != nil {
		cap = fmt.Sprintf("a%d%s", req.Cap.Amount.Minor, req.Cap.Amount.Currency)
	}
	exp := ""
	if req.ExpectedPrice != nil {
		exp = fmt.Sprintf("%d/%d", req.ExpectedPrice.Minor, req.ExpectedPrice.Per)
	}
	return sha256Hex(strings.Join([]string{string(req.Device), string(req.Machine), string(req.Slot), cap, req.Source, exp,
		fmt.Sprint(req.ProximityID != "")}, "|"))
}

// Checkout opens a checkout: one session paid through a channel instead
// of the wallet, for a signed-in user or a guest (p.User ""). It checks
// the machine as a start does (presence by req.ProximityID resolved as
// StartSession resolves it, or, without one, the machine's web checkout
// must be on: checkout.web_off), the cap (cap.too_small), the price
// (price.changed with the price now), picks the channel (the router:
// source.not_found, source.limit), records the checkout and its order
// (purpose session, amount = the cap's cost) before calling the
// provider, then authorizes a card (mode authorize: a HoldChannel) or
// opens a QR order (prepay). Once the channel holds the money (a
// notification, a query or the sweep) the payer's wallet is credited
// exactly once and the session starts for the checkout's user with key
// checkout:<id>, without the proximity check; a refused start returns
// everything. A retry with the same key (scoped by the user, or the key
// alone for a guest, which must be at least GuestKeyMin long) returns the
// same checkout, with its token. Errors: the request's, request.field,
// idempotency.conflict, proximity.*, device.not_found,
// machine.not_found, machine.offline, machine.fault, slot.jammed,
// machine.busy, checkout.web_off, price.changed, cap.too_small,
// money.currency_mismatch, source.*, channel.refused (the checkout is
// recorded failed), channel.unavailable (it stays awaiting payment; a
// retry asks the provider again).
func (s *Service) Checkout(ctx context.Context, p Payer, idemKey string, req phoneapi.CheckoutRequest) (phoneapi.Checkout, error) {
	if err := req.Validate(); err != nil {
		return phoneapi.Checkout{}, err
	}
	scope := p.User
	if scope == "" {
		scope = "guest"
		if len(idemKey) < GuestKeyMin {
			return phoneapi.Checkout{}, errf(ErrCheckoutKey, "a payer without an account needs a random key of at least %d characters", GuestKeyMin)
		}
	}
	if idemKey == "" || len(idemKey) > 200 {
		return phoneapi.Checkout{}, errf(ErrCheckoutKey, "want 1-200 characters")
	}
	hash := checkoutReqHash(req)
	if prev, err := s.st.CheckoutByKey(ctx, scope, idemKey); err == nil {
		if prev.ReqHash != hash {
			return phoneapi.Checkout{}, errf(store.ErrIdemConflict, "checkout key %q holds another request", idemKey)
		}
		return s.resumeCheckout(ctx, prev)
	} else if !errors.Is(err, store.ErrCheckoutNotFound) {
		return phoneapi.Checkout{}, err
	}
	if req.ProximityID != "" {
		pid, err := proxid.ParseID(string(req.ProximityID))
		if err != nil {
			return phoneapi.Checkout{}, err
		}
		m, err := s.Res.Resolve(pid)
		if err != nil {
			return phoneapi.Checkout{}, err
		}
		if m.Device != string(req.Device) {
			return phoneapi.Checkout{}, errf(ErrProximityUnknown, "%s does not belong to device %s", pid, req.Device)
		}
	}
	d, mach, err := s.readyMachine(ctx, string(req.Device), string(req.Machine), string(req.Slot))
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	if req.ProximityID == "" && !mach.WebCheckout {
		return phoneapi.Checkout{}, errf(ErrWebCheckoutOff, "machine %s/%s: pay from the app at the machine", d.ID, mach.ID)
	}
	price := mach.Price
	if req.Slot != "" {
		found := false
		for _, sl := range mach.Slots {
			if sl.ID == string(req.Slot) {
				price, found = sl.Price, true
			}
		}
		if !found {
			return phoneapi.Checkout{}, errf(store.ErrSlotNotFound, "%s/%s slot %q", d.ID, mach.ID, req.Slot)
		}
	}
	if req.ExpectedPrice != nil && *req.ExpectedPrice != price {
		return phoneapi.Checkout{}, &store.PriceChangedError{Price: price, Currency: mach.Currency, Shown: *req.ExpectedPrice}
	}
	if price.Minor == 0 {
		return phoneapi.Checkout{}, errf(ErrFreeMachine, "machine %s/%s", d.ID, mach.ID)
	}
	capUnits, capAmount := req.Cap.Units, int64(0)
	if req.Cap.Amount != nil {
		if req.Cap.Amount.Currency != mach.Currency {
			return phoneapi.Checkout{}, vend.Errorf(vend.ErrMismatch, "cap in %s, the machine charges %s", req.Cap.Amount.Currency, mach.Currency)
		}
		capAmount = req.Cap.Amount.Minor
		if capUnits, err = price.UnitsFor(capAmount); err != nil {
			return phoneapi.Checkout{}, errf(ErrCapTooSmall, "%v", err)
		}
		capUnits = min(capUnits, 1<<53)
	}
	if capUnits == 0 {
		return phoneapi.Checkout{}, errf(ErrCapTooSmall, "%d %s at %d per %d", capAmount, mach.Currency, price.Minor, price.Per)
	}
	hold, err := price.Cost(capUnits)
	if err != nil || hold <= 0 {
		return phoneapi.Checkout{}, errf(ErrCapTooSmall, "cap %d units at %d per %d", capUnits, price.Minor, price.Per)
	}
	if live, err := s.st.MachineLive(ctx, d.ID, mach.ID); err != nil {
		return phoneapi.Checkout{}, err
	} else if live || machineStates(d.Telemetry)[mach.ID] == string(mqttapi.MachineBusy) {
		return phoneapi.Checkout{}, errf(store.ErrMachineBusy, "%s/%s", d.ID, mach.ID)
	}
	amount := vend.Amount{Minor: hold, Currency: mach.Currency}
	routeUser := p.User
	if routeUser == "" {
		routeUser = "guest" // no per-user totals: a guest pays once
	}
	ch, err := s.router.Pick(ctx, routeUser, amount, req.Source)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	if p.User != "" {
		// A signed-in payer's threshold covers a hold on a channel as on
		// the wallet; a guest has no PIN to step up with.
		if err := s.requireStepUp(ctx, p.User, StepUpCheckout, amount, idemKey); err != nil {
			return phoneapi.Checkout{}, err
		}
	}
	mode := phoneapi.HoldModePrepay
	if _, ok := holdOf(ch); ok {
		mode = phoneapi.HoldModeAuthorize
	}
	id := store.NewCheckoutID()
	c, created, err := s.st.CreateCheckout(ctx, store.NewCheckout{ID: id, User: p.User, Scope: scope, IdemKey: idemKey, ReqHash: hash,
		Device: d.ID, Machine: mach.ID, Slot: string(req.Slot), CapUnits: capUnits, CapAmount: capAmount, Price: price,
		Currency: mach.Currency, Hold: hold, Channel: ch.Name(), OrderNo: payments.NewOrderNo("bv"), Mode: mode,
		Proximity: req.ProximityID != "", Receipt: randomToken("rc_"), Expires: s.now().Add(s.opts.PaymentTTL),
		TokenHash: sha256Hex(s.checkoutToken(id)), ClientIP: p.ClientIP})
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	if created {
		s.Metrics.pay.orders.WithLabelValues(c.Channel, "created").Inc()
		s.log.Info("service: checkout opened", "checkout", c.ID, "order", c.OrderNo, "mode", c.Mode, "guest", c.Guest)
	}
	return s.resumeCheckout(ctx, c)
}

// resumeCheckout asks the provider for the order when it never answered
// (a first call, or a retry after a failure) and moves the checkout on.
func (s *Service) resumeCheckout(ctx context.Context, c store.Checkout) (phoneapi.Checkout, error) {
	p, err := s.st.GetPayment(ctx, c.OrderNo)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	if p.State == store.PaymentPending && p.CodeURL == "" && !c.State.Final() {
		if err := s.openOrder(ctx, c, p); err != nil {
			return phoneapi.Checkout{}, err
		}
	}
	c, err = s.advance(ctx, c.ID)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	v, err := s.checkoutView(ctx, c)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	v.Token = s.checkoutToken(c.ID)
	return v, nil
}

// openOrder calls the provider for a checkout's order: Authorize (a
// hold) or Create (a prepayment), with the same order number on every
// attempt. A business refusal fails the order (and so the checkout); a
// technical failure leaves it pending for a retry or the sweep.
func (s *Service) openOrder(ctx context.Context, c store.Checkout, p store.Payment) error {
	ch, ok := s.channel(c.Channel)
	if !ok {
		return vend.Errorf(ErrSourceNotFound, "channel %s of checkout %s is no longer configured", c.Channel, c.ID)
	}
	o := payments.Order{No: p.OrderNo, Amount: p.Amount, Description: "beaconvend session " + c.Device + "/" + c.Machine,
		ExpiresAt: p.Expires, NotifyURL: s.notifyURL(ch.Name()), ClientIP: c.ClientIP}
	var act payments.Action
	var err error
	if h, ok := holdOf(ch); ok && c.Mode == phoneapi.HoldModeAuthorize {
		cctx, cancel := callCtx(ctx, ch)
		act, err = h.Authorize(cctx, o)
		cancel()
		s.Metrics.pay.providerErr(ch.Name(), "authorize", err)
	} else {
		act, err = ch.Create(ctx, o)
		s.Metrics.pay.providerErr(ch.Name(), "create", err)
	}
	if err != nil {
		if vend.KindOf(err) == vend.Conflict {
			if cp, changed, cerr := s.st.ClosePayment(ctx, p.OrderNo, true); cerr != nil {
				s.log.Error("service: fail refused checkout order", "order", p.OrderNo, "err", cerr)
			} else {
				s.Metrics.pay.closed(cp, changed)
			}
		}
		return err
	}
	code := act.CodeURL
	if code == "" {
		code = act.ClientSecret
	}
	if code == "" {
		code = "-" // the provider gave nothing to act on; the order is open all the same
	}
	if _, err := s.st.SetCheckoutAction(ctx, c.ID, code, act.ProviderRef, act.NextAction); err != nil {
		return err
	}
	if c.Mode == phoneapi.HoldModeAuthorize || ch.PaysAtOnce() {
		if _, err := s.queryCheckoutOrder(ctx, ch, c.OrderNo); err != nil {
			s.log.Warn("service: query checkout order", "order", c.OrderNo, "err", err)
		}
	}
	return nil
}

// queryCheckoutOrder asks the channel for an order's state and applies it.
func (s *Service) queryCheckoutOrder(ctx context.Context, ch *payments.Guarded, orderNo string) (store.Payment, error) {
	st, err := ch.Query(ctx, orderNo)
	if err != nil {
		s.Metrics.pay.providerErr(ch.Name(), "query", err)
		return store.Payment{}, err
	}
	p, _, err := s.applyStatus(ctx, ch.Name(), st, "")
	return p, err
}

// applyHoldStatus records what a hold channel says of a hold order
// (capture mode manual): authorized credits the payer once; paid is the
// capture; closed is a cancel, or a lapse when money is still counted as
// held (an alert, never a silent loss).
func (s *Service) applyHoldStatus(ctx context.Context, channel string, cur store.Payment, st payments.Status, eventID string) (store.Payment, bool, error) {
	switch st.State {
	case payments.PayAuthorized:
		exp := st.AuthExpiresAt
		if exp.IsZero() { // the provider did not say: count the channel's validity from the order's creation, never later than the real lapse
			if ch, ok := s.channel(channel); ok {
				if h, ok := holdOf(ch); ok {
					exp = cur.Created.Add(h.AuthorizationValidity())
				}
			}
		}
		p, credited, err := s.st.MarkAuthorized(ctx, store.HoldAuthorized{Channel: channel, OrderNo: st.OrderNo, ProviderTxID: st.ProviderTxID,
			Amount: st.Amount, Expires: exp, EventID: eventID})
		if credited {
			s.Metrics.pay.orders.WithLabelValues(channel, "authorized").Inc()
			s.log.Info("service: hold authorized", "channel", channel, "order", st.OrderNo, "amount", st.Amount.String())
		}
		if errors.Is(err, store.ErrPaymentMismatch) {
			s.Metrics.pay.alerts.WithLabelValues(channel, store.ErrPaymentMismatch.Code).Inc()
		}
		return p, credited, err
	case payments.PayPaid:
		if cur.State == store.PaymentPending {
			// Captured before the cloud saw it authorized: never asked for.
			_ = s.recordAlert(ctx, store.ChannelAlert{Channel: channel, OrderNo: st.OrderNo, Code: store.ErrPaymentMismatch.Code,
				Detail: "the channel reports a capture of " + st.Amount.String() + " the cloud never asked for"})
			return cur, false, vend.Errorf(store.ErrPaymentMismatch, "%s order %s captured before it was authorized", channel, st.OrderNo)
		}
		p, changed, err := s.st.MarkCaptured(ctx, store.Captured{Channel: channel, OrderNo: st.OrderNo, ProviderTxID: st.ProviderTxID,
			Amount: st.Amount, At: st.PaidAt, EventID: eventID})
		if changed {
			s.Metrics.pay.orders.WithLabelValues(channel, "captured").Inc()
		}
		if errors.Is(err, store.ErrPaymentMismatch) {
			s.Metrics.pay.alerts.WithLabelValues(channel, store.ErrPaymentMismatch.Code).Inc()
		}
		return p, changed, err
	case payments.PayClosed, payments.PayFailed:
		if cur.State == store.PaymentAuthorized && cur.Voided < cur.Amount.Minor {
			if err := s.alertOnce(ctx, channel, cur.OrderNo, "auth.lapsed",
				fmt.Sprintf("the channel released the authorization of %s while %d of it is still to be captured", cur.Amount, cur.Amount.Minor-cur.Voided)); err != nil {
				return cur, false, err
			}
			return cur, false, nil
		}
		if cur.State == store.PaymentPending && st.State == payments.PayFailed {
			p, changed, err := s.st.ClosePayment(ctx, st.OrderNo, true)
			return p, changed, err
		}
		p, changed, err := s.st.MarkReleased(ctx, channel, st.OrderNo)
		if errors.Is(err, store.ErrPaymentState) {
			return p, false, nil
		}
		return p, changed, err
	case payments.PayActionRequired:
		if st.ClientSecret != "" {
			if c, err := s.st.CheckoutByOrder(ctx, st.OrderNo); err == nil {
				_, _ = s.st.SetCheckoutAction(ctx, c.ID, st.ClientSecret, "", payments.NextAction3DS)
			}
		}
	}
	return cur, false, nil
}

// alertOnce records an alert about an order unless one with code exists.
func (s *Service) alertOnce(ctx context.Context, channel, orderNo, code, detail string) error {
	if ok, err := s.st.HasChannelAlert(ctx, orderNo, code); err != nil || ok {
		return err
	}
	s.log.Warn("service: channel alert", "channel", channel, "order", orderNo, "code", code, "detail", detail)
	return s.recordAlert(ctx, store.ChannelAlert{Channel: channel, OrderNo: orderNo, Code: code, Detail: detail})
}

// kickCheckout moves a checkout on in the background (after a
// notification, a session's end or a refund's outcome), bounded in time;
// the sweep does it otherwise.
func (s *Service) kickCheckout(id string) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.ReplyTimeout+time.Minute)
		defer cancel()
		if _, err := s.advance(ctx, id); err != nil {
			s.log.Warn("service: checkout step", "checkout", id, "err", err)
		}
	}()
}

// WaitBackground waits for the checkout steps started in the background.
func (s *Service) WaitBackground() { s.bg.Wait() }

// orderChanged is called after a channel changed a session order.
func (s *Service) orderChanged(ctx context.Context, orderNo string) {
	c, err := s.st.CheckoutByOrder(ctx, orderNo)
	if err != nil {
		return
	}
	s.publishCheckout(c)
	if !c.State.Final() {
		s.kickCheckout(c.ID)
	}
}

// sessionEnded is called with every session a subscriber is told of:
// a checkout's session that ended has its money settled with the
// channel, and a late report after its checkout was settled is an alert
// (the channel took what it took; the payer owes the rest).
func (s *Service) sessionEnded(ss store.Session) {
	id, ok := strings.CutPrefix(ss.IdemKey, store.CheckoutKeyPrefix)
	if !ok {
		return
	}
	if ss.State.Holds() {
		s.notifyCheckout(id)
		return
	}
	if ss.Late {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := s.st.GetCheckout(ctx, id); err == nil {
			_ = s.alertOnce(ctx, c.Channel, c.OrderNo, "checkout.late_report",
				fmt.Sprintf("session %s reported %d minor units after its checkout settled with the channel; booked as a late capture on the payer", ss.ID, ss.LateAmount))
		}
	}
	s.kickCheckout(id)
}

// advance gives a checkout its next step, idempotently, and returns it:
//
//   - awaiting payment / action required: past its bound (the order's
//     TTL) the order is cancelled or closed at the provider and the
//     checkout expires (nothing charged); a pending order older than
//     PaymentLate is asked of its channel (Query);
//   - starting: the session is started (startCheckout);
//   - in session: for a card hold, at the authorization's validity less
//     AuthMargin an unreported session gets its policy now, and
//     otherwise an alert (auth.lapsing) says it may lapse;
//   - settling: the capture, cancel or refund is asked of the channel
//     (settleCheckout).
func (s *Service) advance(ctx context.Context, id string) (store.Checkout, error) {
	c, err := s.st.GetCheckout(ctx, id)
	if err != nil {
		return c, err
	}
	before := c.State
	defer func() {
		if cur, err := s.st.GetCheckout(ctx, id); err == nil && cur.State != before {
			s.publishCheckout(cur)
		}
	}()
	ch, ok := s.channel(c.Channel)
	if !ok {
		return c, nil
	}
	now := s.now()
	switch c.State {
	case phoneapi.CheckoutAwaitingPayment, phoneapi.CheckoutActionRequired:
		if !now.Before(c.Deadline) {
			return s.expireCheckout(ctx, ch, c)
		}
		if now.Sub(c.Created) >= s.opts.PaymentLate {
			if _, err := s.queryCheckoutOrder(ctx, ch, c.OrderNo); err != nil && !errors.Is(err, store.ErrPaymentMismatch) {
				s.log.Warn("service: query checkout order", "order", c.OrderNo, "err", err)
			}
		}
	case phoneapi.CheckoutStarting:
		return s.startCheckout(ctx, c)
	case phoneapi.CheckoutInSession:
		if now.Before(c.Deadline) {
			return c, nil
		}
		return s.checkAuthorization(ctx, ch, c)
	case phoneapi.CheckoutSettling:
		return s.settleCheckout(ctx, ch, c)
	}
	return s.st.GetCheckout(ctx, id)
}

// expireCheckout closes an unpaid order at its TTL: a hold is cancelled
// (Cancel: nothing authorized stays), a QR order closed; a channel that
// says the order was paid after all is queried, and the checkout then
// starts or returns the money.
func (s *Service) expireCheckout(ctx context.Context, ch *payments.Guarded, c store.Checkout) (store.Checkout, error) {
	var err error
	if h, ok := holdOf(ch); ok && c.Mode == phoneapi.HoldModeAuthorize {
		// Ask first: an authorization that completed while its notification
		// was on the way funds the checkout instead of being cancelled. (One
		// that completes between this answer and the cancel is released by
		// the cancel; if its notification still started a session, the
		// capture is refused and alerted as auth.lapsed, never silent.)
		if p, qerr := s.queryCheckoutOrder(ctx, ch, c.OrderNo); qerr == nil && p.State != store.PaymentPending {
			return s.st.GetCheckout(ctx, c.ID)
		}
		cctx, cancel := callCtx(ctx, ch)
		var st payments.Status
		st, err = h.Cancel(cctx, c.OrderNo)
		cancel()
		s.Metrics.pay.providerErr(ch.Name(), "cancel", err)
		if err == nil && st.State != payments.PayPaid {
			if _, _, err := s.st.MarkReleased(ctx, c.Channel, c.OrderNo); err != nil && !errors.Is(err, store.ErrPaymentState) {
				return c, err
			}
			// Authorized meanwhile and now credited: return it all.
			if _, err := s.st.FailCheckout(ctx, c.ID, phoneapi.CheckoutExpired, "", "not confirmed within the order's TTL"); err != nil {
				return c, err
			}
			if cur, err := s.st.GetCheckout(ctx, c.ID); err == nil && cur.State == phoneapi.CheckoutSettling {
				return s.settleCheckout(ctx, ch, cur)
			}
			return s.st.GetCheckout(ctx, c.ID)
		}
	} else {
		err = ch.Close(ctx, c.OrderNo)
		s.Metrics.pay.providerErr(ch.Name(), "close", err)
		if err == nil {
			cp, changed, err := s.st.ClosePayment(ctx, c.OrderNo, false)
			if err != nil {
				return c, err
			}
			s.Metrics.pay.closed(cp, changed)
			return s.st.GetCheckout(ctx, c.ID)
		}
	}
	if vend.KindOf(err) == vend.Conflict {
		// Paid or authorized after all: learn it, and move on from there.
		if _, qerr := s.queryCheckoutOrder(ctx, ch, c.OrderNo); qerr != nil {
			s.log.Warn("service: query order the channel would not close", "order", c.OrderNo, "err", qerr)
		}
	} else {
		s.log.Warn("service: close expired checkout order", "order", c.OrderNo, "err", err)
	}
	_ = s.st.SetCheckoutDeadline(ctx, c.ID, s.now().Add(checkoutRetry), "close at the provider failed: retry")
	return s.st.GetCheckout(ctx, c.ID)
}

// startCheckout starts the session of a funded checkout for its user,
// with key checkout:<id> and the price it was opened with, checking the
// machine as StartSession does after presence; a start the machine or
// the store refuses fails the checkout and returns everything. The
// device's reply is waited for up to ReplyTimeout; no reply leaves the
// session pending (its start-by bound and the sweep end it, and the
// checkout with it).
func (s *Service) startCheckout(ctx context.Context, c store.Checkout) (store.Checkout, error) {
	d, _, err := s.readyMachine(ctx, c.Device, c.Machine, c.Slot)
	if err != nil {
		if vend.KindOf(err) == vend.Transient || vend.KindOf(err) == vend.Internal {
			return c, err
		}
		return s.failCheckout(ctx, c, phoneapi.CheckoutFailed, vend.CodeOf(err), err.Error())
	}
	in := store.StartInput{User: c.User, Device: c.Device, Machine: c.Machine, Slot: c.Slot, CapUnits: c.CapUnits,
		IdemKey: store.CheckoutKeyPrefix + c.ID, WindowK: d.K, GrantTTL: s.opts.GrantTTL, ExpectedPrice: &c.Price,
		Sign: func(g signed.Grant) ([]byte, error) { return signed.SignGrant(s.opts.CloudKey, g) },
	}
	ss, err := s.st.StartSession(ctx, in)
	if err != nil {
		if vend.KindOf(err) == vend.Transient || vend.KindOf(err) == vend.Internal {
			return c, err
		}
		return s.failCheckout(ctx, c, phoneapi.CheckoutFailed, vend.CodeOf(err), err.Error())
	}
	deadline := s.now().Add(365 * 24 * time.Hour) // a prepayment has no bound of its own: the session's lifecycle ends it
	if c.Mode == phoneapi.HoldModeAuthorize {
		p, err := s.st.GetPayment(ctx, c.OrderNo)
		if err != nil {
			return c, err
		}
		if !p.AuthExpires.IsZero() {
			deadline = p.AuthExpires.Add(-s.opts.AuthMargin)
		}
	}
	if _, err := s.st.LinkCheckoutSession(ctx, c.ID, ss.ID, deadline); err != nil {
		return c, err
	}
	s.publishSession(ss)
	if ss.State == store.Pending {
		if _, err := s.authorize(ctx, ss, false); err != nil {
			s.log.Info("service: checkout session start", "checkout", c.ID, "session", ss.ID, "err", err)
		}
	}
	return s.st.GetCheckout(ctx, c.ID)
}

// failCheckout ends a checkout whose session never started (see
// store.FailCheckout): an unpaid order is first cancelled or closed at
// the provider, so it can no longer be paid; money already held is
// returned (settleCheckout).
func (s *Service) failCheckout(ctx context.Context, c store.Checkout, end phoneapi.CheckoutState, code, reason string) (store.Checkout, error) {
	ch, ok := s.channel(c.Channel)
	if !ok {
		return c, vend.Errorf(ErrSourceNotFound, "channel %s of checkout %s is no longer configured", c.Channel, c.ID)
	}
	p, err := s.st.GetPayment(ctx, c.OrderNo)
	if err != nil {
		return c, err
	}
	if p.State == store.PaymentPending {
		var cerr error
		if h, ok := holdOf(ch); ok && c.Mode == phoneapi.HoldModeAuthorize {
			cctx, cancel := callCtx(ctx, ch)
			var st payments.Status
			st, cerr = h.Cancel(cctx, c.OrderNo)
			cancel()
			if cerr == nil && st.State == payments.PayPaid {
				cerr = vend.Errorf(payments.ErrRefused, "captured")
			}
		} else {
			cerr = ch.Close(ctx, c.OrderNo)
		}
		switch {
		case cerr == nil:
		case vend.KindOf(cerr) == vend.Conflict:
			if _, err := s.queryCheckoutOrder(ctx, ch, c.OrderNo); err != nil {
				return c, err
			}
		default:
			return c, cerr // not closed: the payer could still pay; try again
		}
	}
	out, err := s.st.FailCheckout(ctx, c.ID, end, code, reason)
	if errors.Is(err, store.ErrCheckoutState) {
		return s.st.GetCheckout(ctx, c.ID) // its session started: it ends with it
	}
	if err != nil {
		return c, err
	}
	if p.State == store.PaymentPending && !out.State.Final() && out.State != phoneapi.CheckoutSettling {
		return out, nil
	}
	if cur, err := s.st.GetPayment(ctx, c.OrderNo); err == nil && cur.State == store.PaymentPending {
		if _, _, err := s.st.MarkReleased(ctx, c.Channel, c.OrderNo); err != nil && !errors.Is(err, store.ErrPaymentState) {
			return out, err
		}
	}
	if out.State == phoneapi.CheckoutSettling {
		return s.settleCheckout(ctx, ch, out)
	}
	return s.st.GetCheckout(ctx, c.ID)
}

// settleCheckout asks the channel to do its part of a settling checkout:
// a hold is captured for exactly what the session charged (Capture) or,
// for nothing, released (Cancel); a prepayment's refund of the unused
// part is sent (once per refund number). The checkout then takes its
// end; a step that failed is tried again by the sweep after a short
// while. A hold the provider no longer has (lapsed) ends the checkout
// failed with an alert (auth.lapsed).
func (s *Service) settleCheckout(ctx context.Context, ch *payments.Guarded, c store.Checkout) (store.Checkout, error) {
	p, err := s.st.GetPayment(ctx, c.OrderNo)
	if err != nil {
		return c, err
	}
	retry := func(why string, err error) (store.Checkout, error) {
		s.log.Warn("service: checkout settlement", "checkout", c.ID, "step", why, "err", err)
		_ = s.st.SetCheckoutDeadline(ctx, c.ID, s.now().Add(checkoutRetry), why+": retry")
		return s.st.GetCheckout(ctx, c.ID)
	}
	if c.Mode == phoneapi.HoldModeAuthorize && p.State == store.PaymentAuthorized {
		h, ok := holdOf(ch)
		if !ok {
			return c, vend.Errorf(ErrSourceNotFound, "channel %s holds no money", ch.Name())
		}
		capture := vend.Amount{Minor: p.Amount.Minor - p.Voided, Currency: p.Amount.Currency}
		cctx, cancel := callCtx(ctx, ch)
		var st payments.Status
		if capture.Minor > 0 {
			st, err = h.Capture(cctx, p.OrderNo, capture)
			s.Metrics.pay.providerErr(ch.Name(), "capture", err)
		} else {
			st, err = h.Cancel(cctx, p.OrderNo)
			s.Metrics.pay.providerErr(ch.Name(), "cancel", err)
		}
		cancel()
		switch {
		case err == nil:
			st.OrderNo = p.OrderNo
			if _, _, err := s.applyHoldStatus(ctx, ch.Name(), p, st, ""); err != nil {
				return retry("record", err)
			}
		case vend.KindOf(err) == vend.Conflict:
			q, qerr := ch.Query(ctx, p.OrderNo)
			if qerr != nil {
				return retry("query", qerr)
			}
			if (q.State == payments.PayPaid && q.Amount == capture) || (capture.Minor == 0 && q.State == payments.PayClosed) {
				if _, _, err := s.applyHoldStatus(ctx, ch.Name(), p, q, ""); err != nil {
					return retry("record", err)
				}
				break
			}
			detail := fmt.Sprintf("the channel refused to settle %s of the hold (%v); it reports %s", capture, err, q.State)
			s.Metrics.pay.alerts.WithLabelValues(ch.Name(), "auth.lapsed").Inc()
			return s.st.AbandonCheckout(ctx, c.ID, "auth.lapsed", detail)
		default:
			return retry("capture", err)
		}
	}
	if c.Mode == phoneapi.HoldModePrepay {
		fs, err := s.st.OrderRefunds(ctx, c.OrderNo)
		if err != nil {
			return c, err
		}
		for _, f := range fs {
			if f.State == store.RefundPending {
				if g := s.sendRefund(ctx, ch, f); g.State == store.RefundPending && s.now().Sub(f.Created) > s.opts.RefundRetry {
					s.log.Warn("service: checkout refund still pending", "refund", f.RefundNo)
				}
			}
		}
		fs, _ = s.st.OrderRefunds(ctx, c.OrderNo)
		for _, f := range fs {
			if f.State == store.RefundFailed {
				_ = s.alertOnce(ctx, ch.Name(), c.OrderNo, "checkout.refund_failed",
					fmt.Sprintf("refund %s of %s to the payer of checkout %s failed; the money is in the payer's wallet", f.RefundNo, f.Amount, c.ID))
			}
		}
	}
	out, err := s.st.FinishCheckout(ctx, c.ID)
	if err != nil {
		return c, err
	}
	if out.State == phoneapi.CheckoutSettling {
		return retry("await the channel", errors.New("not settled yet"))
	}
	return out, nil
}

// checkAuthorization runs at a card-held session's validity margin
// (the authorization's expiry less AuthMargin): an unreported session is
// settled now by the unreported policy (reason unreported.auth_lapsing),
// well inside the validity, so the capture comes before the lapse;
// anything else still uncaptured raises an alert (auth.lapsing) once.
func (s *Service) checkAuthorization(ctx context.Context, ch *payments.Guarded, c store.Checkout) (store.Checkout, error) {
	if c.Mode != phoneapi.HoldModeAuthorize || c.Session.IsZero() {
		_ = s.st.SetCheckoutDeadline(ctx, c.ID, s.now().Add(24*time.Hour), "in session")
		return c, nil
	}
	ss, err := s.st.GetSession(ctx, c.Session)
	if err != nil {
		return c, err
	}
	if ss.State == store.Unreported {
		set, err := s.st.CloseUnreportedSession(ctx, ss.ID, ReasonAuthLapsing)
		if err != nil && !errors.Is(err, store.ErrSessionState) {
			return c, err
		}
		if err == nil {
			s.Metrics.sessions.WithLabelValues(string(set.Session.State)).Inc()
			s.publishSession(set.Session)
		}
		cur, err := s.st.GetCheckout(ctx, c.ID)
		if err != nil || cur.State != phoneapi.CheckoutSettling {
			return cur, err
		}
		return s.settleCheckout(ctx, ch, cur)
	}
	p, err := s.st.GetPayment(ctx, c.OrderNo)
	if err != nil {
		return c, err
	}
	if err := s.alertOnce(ctx, ch.Name(), c.OrderNo, "auth.lapsing",
		fmt.Sprintf("session %s is %s and its authorization lapses at %s", ss.ID, ss.State, p.AuthExpires.Format(time.RFC3339))); err != nil {
		return c, err
	}
	s.Metrics.pay.alerts.WithLabelValues(ch.Name(), "auth.lapsing").Inc()
	_ = s.st.SetCheckoutDeadline(ctx, c.ID, s.now().Add(time.Hour), "authorization lapsing: alerted")
	return s.st.GetCheckout(ctx, c.ID)
}

// ReasonAuthLapsing is the audit reason of an unreported session settled
// early because its card authorization would lapse.
const ReasonAuthLapsing = "unreported.auth_lapsing"

// CheckoutSweep counts what SweepCheckouts did.
type CheckoutSweep struct {
	Stepped int // checkouts past their bound that were given their next step
	Final   int // of which ended now
}

// SweepCheckouts gives every checkout past its bound its next step
// (advance): expiry of unpaid orders, starts, the authorization margin,
// and the capture, cancel or refund of settling checkouts, retried until
// they are done. Safe on several instances: every step is idempotent.
func (s *Service) SweepCheckouts(ctx context.Context) (CheckoutSweep, error) {
	var out CheckoutSweep
	due, err := s.st.DueCheckouts(ctx, 100)
	if err != nil {
		return out, err
	}
	for _, c := range due {
		cur, err := s.advance(ctx, c.ID)
		out.Stepped++
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			s.log.Warn("service: checkout sweep", "checkout", c.ID, "err", err)
			_ = s.st.SetCheckoutDeadline(ctx, c.ID, s.now().Add(checkoutRetry), "step failed: retry")
			continue
		}
		if cur.State.Final() {
			out.Final++
		}
	}
	return out, nil
}

// access checks a's right to a checkout: its signed-in owner, or the
// checkout's token; anyone else gets checkout.not_found.
func (s *Service) access(ctx context.Context, id string, a CheckoutAccess) (store.Checkout, error) {
	c, err := s.st.GetCheckout(ctx, id)
	if err != nil {
		return c, err
	}
	if a.User != "" && !c.Guest && a.User == c.User {
		return c, nil
	}
	if a.Token != "" && subtle.ConstantTimeCompare([]byte(sha256Hex(a.Token)), []byte(c.TokenHash)) == 1 {
		return c, nil
	}
	return store.Checkout{}, vend.Errorf(store.ErrCheckoutNotFound, "%q", id)
}

// GetCheckout returns a checkout to its owner or token holder. A checkout
// awaiting payment for longer than PaymentLate asks its channel first
// (Query), so a late notification does not hold the payer up. Errors:
// checkout.not_found.
func (s *Service) GetCheckout(ctx context.Context, id string, a CheckoutAccess) (phoneapi.Checkout, error) {
	c, err := s.access(ctx, id, a)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	if c.State == phoneapi.CheckoutAwaitingPayment || c.State == phoneapi.CheckoutActionRequired {
		if cur, err := s.advance(ctx, c.ID); err == nil {
			c = cur
		} else {
			s.log.Warn("service: checkout step", "checkout", c.ID, "err", err)
		}
	}
	return s.checkoutView(ctx, c)
}

// StopCheckout stops a checkout for its owner or token holder: before
// its session starts it is cancelled (the order closed or cancelled at
// the provider, anything paid returned in full); during the session the
// machine is stopped (mqttapi.Stop, as StopSession) and the checkout
// settles when the session ends; a settling or final checkout is
// returned as it is. Errors: checkout.not_found, service.unavailable,
// channel.unavailable (the order could not be closed: try again).
func (s *Service) StopCheckout(ctx context.Context, id string, a CheckoutAccess) (phoneapi.Checkout, error) {
	c, err := s.access(ctx, id, a)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	switch c.State {
	case phoneapi.CheckoutAwaitingPayment, phoneapi.CheckoutActionRequired, phoneapi.CheckoutStarting:
		cur, err := s.failCheckout(ctx, c, phoneapi.CheckoutCancelled, "", "the payer cancelled")
		if err != nil {
			return phoneapi.Checkout{}, err
		}
		s.publishCheckout(cur)
		if cur.State != phoneapi.CheckoutInSession {
			return s.checkoutView(ctx, cur)
		}
		c = cur
	}
	if c.State == phoneapi.CheckoutInSession && !c.Session.IsZero() {
		if _, err := s.StopSession(ctx, c.User, c.Session); err != nil {
			return phoneapi.Checkout{}, err
		}
	}
	c, err = s.st.GetCheckout(ctx, c.ID)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	return s.checkoutView(ctx, c)
}

// WatchCheckout sends a checkout's current view, then each change (its
// state, the session's state and units), and closes the channel once the
// checkout is final or ctx ends. Errors (at once): checkout.not_found.
func (s *Service) WatchCheckout(ctx context.Context, id string, a CheckoutAccess) (<-chan phoneapi.Checkout, error) {
	c, err := s.access(ctx, id, a)
	if err != nil {
		return nil, err
	}
	first, err := s.checkoutView(ctx, c)
	if err != nil {
		return nil, err
	}
	out := make(chan phoneapi.Checkout, 4)
	changes, unsub := s.watchCheckout(id)
	go func() {
		defer close(out)
		defer unsub()
		last := first
		select {
		case out <- first:
		case <-ctx.Done():
			return
		}
		if first.State.Final() {
			return
		}
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		var sessEvents <-chan HubEvent
		var sessUnsub func()
		defer func() {
			if sessUnsub != nil {
				sessUnsub()
			}
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changes:
			case <-sessEvents:
			case <-tick.C:
			}
			cur, err := s.st.GetCheckout(ctx, id)
			if err != nil {
				continue
			}
			if cur.State == phoneapi.CheckoutAwaitingPayment || cur.State == phoneapi.CheckoutActionRequired {
				if s.now().Sub(cur.Created) >= s.opts.PaymentLate && s.now().Sub(cur.Updated) >= s.opts.PaymentLate {
					if c2, err := s.advance(ctx, id); err == nil {
						cur = c2
					}
				}
			}
			if sessUnsub == nil && !cur.Session.IsZero() {
				sessEvents, sessUnsub = s.Hub.Subscribe(cur.Session)
			}
			v, err := s.checkoutView(ctx, cur)
			if err != nil {
				continue
			}
			if v.State == last.State && v.Units == last.Units && v.SessionState == last.SessionState && v.Returned == last.Returned &&
				v.Captured == last.Captured && v.NextAction == last.NextAction {
				continue
			}
			last = v
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
			if v.State.Final() {
				return
			}
		}
	}()
	return out, nil
}

// CheckoutReceipt returns the checkout a receipt link names, with what
// was captured, what went back to the payer's channel and the refunds:
// no account is needed, the link's token is the proof. The view carries
// no access token. Errors: checkout.not_found.
func (s *Service) CheckoutReceipt(ctx context.Context, receiptToken string) (phoneapi.Checkout, error) {
	c, err := s.st.CheckoutByReceipt(ctx, receiptToken)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	return s.checkoutView(ctx, c)
}

// receiptURL is the receipt link of a checkout.
func (s *Service) receiptURL(c store.Checkout) string {
	return strings.TrimRight(s.opts.PublicURL, "/") + "/r/" + c.ReceiptToken
}

// checkoutView converts a checkout to the phone API's.
func (s *Service) checkoutView(ctx context.Context, c store.Checkout) (phoneapi.Checkout, error) {
	p, err := s.st.GetPayment(ctx, c.OrderNo)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	v := phoneapi.Checkout{ID: c.ID, State: c.State, Device: phoneapi.DeviceID(c.Device), Machine: phoneapi.MachineID(c.Machine),
		Slot: phoneapi.MachineID(c.Slot), Source: c.Channel, Mode: c.Mode, Order: c.OrderNo,
		Hold: vend.Amount{Minor: c.Hold, Currency: c.Currency}, CapUnits: c.CapUnits, Price: c.Price,
		Captured: vend.Amount{Minor: c.Captured, Currency: c.Currency}, Returned: vend.Amount{Minor: c.Returned, Currency: c.Currency},
		FailCode: c.FailCode, ReceiptURL: s.receiptURL(c), CreatedAt: c.Created.UTC(), ExpiresAt: p.Expires.UTC(), Refunds: []phoneapi.RefundPart{}}
	card := false
	if ch, ok := s.channel(c.Channel); ok {
		src := ch.Source()
		v.Source, v.Test, card = src.ID, src.Test, src.Kind == phoneapi.SourceCard
	}
	if (c.State == phoneapi.CheckoutAwaitingPayment || c.State == phoneapi.CheckoutActionRequired) && p.CodeURL != "-" {
		if card || c.Mode == phoneapi.HoldModeAuthorize {
			v.ClientSecret = p.CodeURL
		} else {
			v.CodeURL = p.CodeURL
		}
		if c.State == phoneapi.CheckoutActionRequired {
			v.NextAction = payments.NextAction3DS
		}
	}
	if !c.Session.IsZero() {
		id := c.Session
		v.Session = &id
		if ss, err := s.st.GetSession(ctx, c.Session); err == nil {
			ps := s.PhoneSession(ss)
			v.SessionState, v.Units = ps.State, ps.Units
		}
	}
	fs, err := s.st.OrderRefunds(ctx, c.OrderNo)
	if err != nil {
		return phoneapi.Checkout{}, err
	}
	v.Refunds = s.refundParts(fs)
	return v, nil
}

// publishCheckout wakes this instance's watchers of a checkout.
func (s *Service) publishCheckout(c store.Checkout) { s.notifyCheckout(c.ID) }

// notifyCheckout wakes this instance's watchers of checkout id.
func (s *Service) notifyCheckout(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.coWatch[id] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// watchCheckout registers a watcher of checkout id's changes on this
// instance; the function unregisters it.
func (s *Service) watchCheckout(id string) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	s.mu.Lock()
	s.coWatch[id] = append(s.coWatch[id], c)
	s.mu.Unlock()
	return c, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		ws := s.coWatch[id]
		for i, w := range ws {
			if w == c {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(s.coWatch, id)
		} else {
			s.coWatch[id] = ws
		}
	}
}

// MachineOffer returns what a machine's web checkout page shows: its
// name, kind, unit, price (and slots), whether the device is online and
// the machine idle, busy, faulted or offline, whether its web checkout is
// on, and the channels a payer may pay through. Errors:
// device.not_found, machine.not_found.
func (s *Service) MachineOffer(ctx context.Context, device, machine string) (MachineOffer, error) {
	d, err := s.st.GetDevice(ctx, device)
	if err != nil {
		return MachineOffer{}, err
	}
	m, ok := machineOf(d, machine)
	if !ok {
		return MachineOffer{}, errf(store.ErrMachineNotFound, "no machine %s on device %s", machine, d.ID)
	}
	o := MachineOffer{Device: d.ID, Machine: m.ID, Name: m.Name, Kind: m.Kind, Unit: m.Unit, Price: m.Price, Currency: m.Currency,
		Online: d.Online && d.State != store.DeviceDisabled, WebCheckout: m.WebCheckout, Slots: []OfferSlot{}}
	jammed := jammedSlots(d.Telemetry)[m.ID]
	stocks, err := s.slotStocks(ctx, d.ID) // sold out by the operator's count (inventory.go)
	if err != nil {
		return MachineOffer{}, err
	}
	for _, sl := range m.Slots {
		st, counted := stocks[m.ID+"/"+sl.ID]
		empty := counted && st.Empty()
		for _, j := range jammed {
			empty = empty || j == sl.ID
		}
		o.Slots = append(o.Slots, OfferSlot{ID: sl.ID, Name: sl.Name, Price: sl.Price, Empty: empty})
	}
	live, err := s.st.MachineLive(ctx, d.ID, m.ID)
	if err != nil {
		return MachineOffer{}, err
	}
	tel := machineStates(d.Telemetry)[m.ID]
	switch {
	case !o.Online:
		o.State = "offline"
	case tel == string(mqttapi.MachineFault):
		o.State = "fault"
	case live || tel == string(mqttapi.MachineBusy):
		o.State = "busy"
	default:
		o.State = "idle"
	}
	for _, c := range s.router.Channels() {
		o.Sources = append(o.Sources, c.Source())
	}
	return o, nil
}

// refundDone moves on the checkout of an order whose refund just ended.
func (s *Service) refundDone(f store.Refund) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := s.st.CheckoutByOrder(ctx, f.OrderNo); err == nil && c.State == phoneapi.CheckoutSettling {
		if f.State == store.RefundFailed {
			_ = s.alertOnce(ctx, f.Channel, c.OrderNo, "checkout.refund_failed",
				fmt.Sprintf("refund %s of %s to the payer of checkout %s failed; the money is in the payer's wallet", f.RefundNo, f.Amount, c.ID))
		}
		if cur, err := s.st.FinishCheckout(ctx, c.ID); err == nil && cur.State != c.State {
			s.publishCheckout(cur)
		}
	}
}
