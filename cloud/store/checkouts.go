package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// Errors of checkouts.
var (
	ErrCheckoutNotFound = vend.E(vend.NotFound, "checkout.not_found", "store: checkout not found")
	ErrCheckoutState    = vend.E(vend.Conflict, "checkout.state", "store: the checkout is not in a state that allows this")
)

// TxChanVoid returns the part of a card authorization that is never
// captured: user_wallet → channel_clearing, key chanvoid:<channel>:<order>.
const TxChanVoid TxKind = "chan_void"

// ChannelVoidKey is the ledger idempotency key of a hold's uncaptured part.
func ChannelVoidKey(channel, orderNo string) string { return "chanvoid:" + channel + ":" + orderNo }

// CheckoutKeyPrefix starts the idempotency key of the session a checkout
// starts ("checkout:<id>"): it ties the session to its checkout.
const CheckoutKeyPrefix = "checkout:"

// CheckoutStartBound is how long a funded checkout may stay starting
// before the sweep looks at it again (starts its session, or fails it).
const CheckoutStartBound = 2 * time.Minute

// Checkout is one session paid through a channel (a checkouts row). The
// channel order (OrderNo, purpose session) holds the cap's cost: a card
// authorized for it (ModeAuthorize) or a QR prepayment (ModePrepay).
type Checkout struct {
	ID        string
	User      string // the payer: a signed-in user, or a guest made for this checkout
	Guest     bool
	Device    string
	Machine   string
	Slot      string
	CapUnits  uint64
	CapAmount int64 // the payer's money cap in minor units; 0 when given in units
	Price     vend.Price
	Currency  vend.Currency
	Hold      int64 // minor units the order holds: Price.Cost(CapUnits)
	Channel   string
	OrderNo   string
	Mode      string // phoneapi.HoldModeAuthorize or phoneapi.HoldModePrepay
	State     phoneapi.CheckoutState
	// EndState is the final state a settling checkout takes once the
	// channel confirmed the capture, cancel or refund.
	EndState     phoneapi.CheckoutState
	Session      vend.SessionID // zero until a session started
	TokenHash    string         // hex SHA-256 of the checkout's access token
	ReceiptToken string
	IdemScope    string
	IdemKey      string
	ReqHash      string
	Proximity    bool   // the payer proved presence with a proximity ID
	ClientIP     string // the payer's address when the checkout was opened
	FailCode     string // why it failed (channel.refused, machine.busy, …)
	Reason       string // audit reason of the last transition
	Captured     int64  // minor units the session charged
	Returned     int64  // minor units returned to the payer's channel (voided or refunded)
	Deadline     time.Time
	Created      time.Time
	Updated      time.Time
}

const checkoutCols = `id, user_id, guest, device_id, machine_id, slot_id, cap_units, cap_minor, price_minor, price_per, currency,
	hold_minor, channel, order_no, mode, state, end_state, session_id, token_hash, receipt_token, idem_scope, idem_key, req_hash,
	proximity, fail_code, reason, captured_minor, returned_minor, deadline_ms, created_ms, updated_ms, client_ip`

func scanCheckout(r interface{ Scan(...any) error }) (Checkout, error) {
	var c Checkout
	var guest, prox int
	var capUnits, per, deadline, created, updated int64
	var cur, state, end string
	var sess sql.NullString
	err := r.Scan(&c.ID, &c.User, &guest, &c.Device, &c.Machine, &c.Slot, &capUnits, &c.CapAmount, &c.Price.Minor, &per, &cur,
		&c.Hold, &c.Channel, &c.OrderNo, &c.Mode, &state, &end, &sess, &c.TokenHash, &c.ReceiptToken, &c.IdemScope, &c.IdemKey, &c.ReqHash,
		&prox, &c.FailCode, &c.Reason, &c.Captured, &c.Returned, &deadline, &created, &updated, &c.ClientIP)
	if err != nil {
		return Checkout{}, err
	}
	c.Guest, c.Proximity = guest != 0, prox != 0
	c.CapUnits, c.Price.Per, c.Currency = uint64(capUnits), uint32(per), vend.Currency(cur)
	c.State, c.EndState = phoneapi.CheckoutState(state), phoneapi.CheckoutState(end)
	if sess.Valid {
		c.Session, _ = vend.ParseSessionID(sess.String)
	}
	c.Deadline, c.Created, c.Updated = time.UnixMilli(deadline).UTC(), time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return c, nil
}

// NewCheckoutID returns a fresh checkout ID ("co_" + 16 hex digits).
func NewCheckoutID() string { return newID("co") }

// NewCheckout is what CreateCheckout records.
type NewCheckout struct {
	ID        string // NewCheckoutID; a new one when ""
	User      string // "" makes a guest user for this checkout
	ClientIP  string // the payer's address, kept for the provider's calls
	Scope     string // the idempotency scope: the user's ID, or "guest" (the key alone)
	IdemKey   string // 1-200 bytes
	ReqHash   string // what the request was, to tell a retry from a conflict
	Device    string
	Machine   string
	Slot      string
	CapUnits  uint64 // > 0
	CapAmount int64
	Price     vend.Price
	Currency  vend.Currency
	Hold      int64 // Price.Cost(CapUnits), > 0: the order's amount
	Channel   string
	OrderNo   string
	Mode      string // phoneapi.HoldModeAuthorize (manual capture) or phoneapi.HoldModePrepay
	Proximity bool
	TokenHash string // hex SHA-256 of the access token
	Receipt   string // the receipt link's token
	Expires   time.Time
}

func (in *NewCheckout) validate() error {
	switch {
	case in.Scope == "" || len(in.Scope) > 200 || in.IdemKey == "" || len(in.IdemKey) > 200:
		return vend.Errorf(ErrInput, "checkout needs an idempotency scope and key of 1-200 bytes")
	case vend.ValidateDeviceID(in.Device) != nil:
		return fmt.Errorf("store: checkout: %w", vend.ValidateDeviceID(in.Device))
	case vend.ValidateMachineID(in.Machine) != nil:
		return fmt.Errorf("store: checkout: %w", vend.ValidateMachineID(in.Machine))
	case vend.ValidateSlotID(in.Slot) != nil:
		return fmt.Errorf("store: checkout: %w", vend.ValidateSlotID(in.Slot))
	case in.CapUnits == 0 || in.CapUnits > 1<<53 || in.Hold <= 0 || in.CapAmount < 0:
		return vend.Errorf(ErrInput, "checkout: cap %d units, hold %d", in.CapUnits, in.Hold)
	case in.Price.Validate() != nil:
		return fmt.Errorf("store: checkout: %w", in.Price.Validate())
	case in.Currency.Validate() != nil:
		return fmt.Errorf("store: checkout: %w", in.Currency.Validate())
	case in.Channel == "" || len(in.Channel) > 64 || in.OrderNo == "" || len(in.OrderNo) > 64:
		return vend.Errorf(ErrInput, "checkout needs a channel and an order number of 1-64 bytes")
	case in.Mode != phoneapi.HoldModeAuthorize && in.Mode != phoneapi.HoldModePrepay:
		return vend.Errorf(ErrInput, "checkout mode %q", in.Mode)
	case len(in.TokenHash) != 64 || in.Receipt == "" || len(in.Receipt) > 100 || len(in.ID) > 40 || len(in.ClientIP) > 64:
		return vend.Errorf(ErrInput, "checkout needs a token hash and a receipt token")
	}
	return nil
}

// CreateCheckout records a checkout awaiting payment together with its
// channel order (purpose session, pending, capture mode manual for
// ModeAuthorize), before the provider is called, in one transaction; with
// User "" it first makes a guest user (users.kind guest), who pays this
// one checkout. A second call with the same scope and key returns the
// first checkout (created == false) when ReqHash matches, and
// ErrIdemConflict otherwise. Errors: ErrInput and the vend ID errors,
// ErrUserNotFound, ErrIdemConflict.
func (s *Store) CreateCheckout(ctx context.Context, in NewCheckout) (c Checkout, created bool, err error) {
	if err := in.validate(); err != nil {
		return Checkout{}, false, err
	}
	now := s.nowMs()
	if !in.Expires.After(time.UnixMilli(now)) {
		return Checkout{}, false, vend.Errorf(ErrInput, "checkout expires at %s, before now", in.Expires.UTC().Format(time.RFC3339))
	}
	err = s.tx(ctx, "create checkout", func(tx *sql.Tx) error {
		created = false
		prev, err := scanCheckout(tx.QueryRowContext(ctx, `SELECT `+checkoutCols+` FROM checkouts WHERE idem_scope = $1 AND idem_key = $2`,
			in.Scope, in.IdemKey))
		if err == nil {
			if prev.ReqHash != in.ReqHash {
				return vend.Errorf(ErrIdemConflict, "checkout key %q", clip(in.IdemKey))
			}
			c = prev
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		user, guest := in.User, 0
		if user == "" {
			user, guest = newID("usr"), 1
			if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, email, pw_hash, created_ms, kind) VALUES ($1, $2, '!', $3, 'guest')`,
				user, user+"@guest.invalid", now); err != nil {
				return err
			}
		} else if err := s.userExists(ctx, tx, user); err != nil {
			return err
		}
		mode := CaptureAuto
		if in.Mode == phoneapi.HoldModeAuthorize {
			mode = CaptureManual
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO channel_payments (order_no, channel, user_id, purpose, amount_minor, currency, state,
			capture_mode, created_ms, expires_ms) VALUES ($1, $2, $3, 'session', $4, $5, 'pending', $6, $7, $8)`,
			in.OrderNo, in.Channel, user, in.Hold, string(in.Currency), mode, now, in.Expires.UnixMilli()); err != nil {
			return err
		}
		prox := 0
		if in.Proximity {
			prox = 1
		}
		id := in.ID
		if id == "" {
			id = NewCheckoutID()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO checkouts (id, user_id, guest, device_id, machine_id, slot_id, cap_units, cap_minor,
			price_minor, price_per, currency, hold_minor, channel, order_no, mode, state, token_hash, receipt_token, idem_scope, idem_key,
			req_hash, proximity, reason, deadline_ms, created_ms, updated_ms, client_ip)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'awaiting_payment', $16, $17, $18, $19, $20, $21,
			'created', $22, $23, $23, $24)`,
			id, user, guest, in.Device, in.Machine, in.Slot, int64(in.CapUnits), in.CapAmount, in.Price.Minor, int64(in.Price.Per),
			string(in.Currency), in.Hold, in.Channel, in.OrderNo, in.Mode, in.TokenHash, in.Receipt, in.Scope, in.IdemKey, in.ReqHash,
			prox, in.Expires.UnixMilli(), now, in.ClientIP); err != nil {
			return err
		}
		created = true
		c, err = scanCheckout(tx.QueryRowContext(ctx, `SELECT `+checkoutCols+` FROM checkouts WHERE id = $1`, id))
		return err
	})
	return c, created, err
}

func (s *Store) checkoutWhere(ctx context.Context, q queryer, where string, arg any, lock bool) (Checkout, error) {
	sqlText := `SELECT ` + checkoutCols + ` FROM checkouts WHERE ` + where + ` = $1`
	if lock {
		sqlText += s.d.lockRow
	}
	c, err := scanCheckout(q.QueryRowContext(ctx, sqlText, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return Checkout{}, vend.Errorf(ErrCheckoutNotFound, "%s %q", where, clip(fmt.Sprint(arg)))
	}
	if err != nil {
		return Checkout{}, fmt.Errorf("store: checkout: %w", err)
	}
	return c, nil
}

// GetCheckout returns one checkout. Errors: ErrCheckoutNotFound.
func (s *Store) GetCheckout(ctx context.Context, id string) (Checkout, error) {
	return s.checkoutWhere(ctx, s.db, "id", id, false)
}

// CheckoutByKey returns the checkout opened with an idempotency scope and
// key. Errors: ErrCheckoutNotFound.
func (s *Store) CheckoutByKey(ctx context.Context, scope, key string) (Checkout, error) {
	c, err := scanCheckout(s.db.QueryRowContext(ctx, `SELECT `+checkoutCols+` FROM checkouts WHERE idem_scope = $1 AND idem_key = $2`, scope, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Checkout{}, vend.Errorf(ErrCheckoutNotFound, "key %q", clip(key))
	}
	if err != nil {
		return Checkout{}, fmt.Errorf("store: checkout by key: %w", err)
	}
	return c, nil
}

// CheckoutByOrder returns the checkout of a channel order. Errors:
// ErrCheckoutNotFound.
func (s *Store) CheckoutByOrder(ctx context.Context, orderNo string) (Checkout, error) {
	return s.checkoutWhere(ctx, s.db, "order_no", orderNo, false)
}

// CheckoutBySession returns the checkout that started a session. Errors:
// ErrCheckoutNotFound.
func (s *Store) CheckoutBySession(ctx context.Context, id vend.SessionID) (Checkout, error) {
	return s.checkoutWhere(ctx, s.db, "session_id", id.String(), false)
}

// CheckoutByReceipt returns the checkout whose receipt token is token.
// Errors: ErrCheckoutNotFound.
func (s *Store) CheckoutByReceipt(ctx context.Context, token string) (Checkout, error) {
	if token == "" {
		return Checkout{}, vend.Errorf(ErrCheckoutNotFound, "empty receipt token")
	}
	return s.checkoutWhere(ctx, s.db, "receipt_token", token, false)
}

// DueCheckouts returns up to limit checkouts in a live state whose bound
// (Deadline) has passed, oldest bound first: the service's sweep gives
// each its next step.
func (s *Store) DueCheckouts(ctx context.Context, limit int) ([]Checkout, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+checkoutCols+` FROM checkouts
		WHERE state IN ('awaiting_payment', 'action_required', 'starting', 'in_session', 'settling') AND deadline_ms <= $1
		ORDER BY deadline_ms LIMIT $2`, s.nowMs(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: due checkouts: %w", err)
	}
	defer rows.Close()
	var out []Checkout
	for rows.Next() {
		c, err := scanCheckout(rows)
		if err != nil {
			return nil, fmt.Errorf("store: due checkouts: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// SetCheckoutDeadline moves the bound of a live checkout (the next time
// the sweep looks at it) and records why. A final checkout is left as it
// is. Errors: ErrCheckoutNotFound.
func (s *Store) SetCheckoutDeadline(ctx context.Context, id string, at time.Time, reason string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE checkouts SET deadline_ms = $1, reason = $2, updated_ms = $3
		WHERE id = $4 AND state IN ('awaiting_payment', 'action_required', 'starting', 'in_session', 'settling')`,
		at.UnixMilli(), clipN(reason, 200), s.nowMs(), id)
	if err != nil {
		return fmt.Errorf("store: checkout deadline: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		_, err := s.GetCheckout(ctx, id)
		return err
	}
	return nil
}

// SetCheckoutAction stores what the payer acts on (the provider's QR
// payload or card client secret, and the provider's own order ID) on the
// checkout's order; nextAction "3ds" moves a checkout awaiting payment to
// action_required. Errors: ErrCheckoutNotFound.
func (s *Store) SetCheckoutAction(ctx context.Context, id, code, providerRef, nextAction string) (Checkout, error) {
	var c Checkout
	err := s.tx(ctx, "checkout action", func(tx *sql.Tx) error {
		var err error
		c, err = s.checkoutWhere(ctx, tx, "id", id, true)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE channel_payments SET code_url = COALESCE($1, code_url), provider_ref = COALESCE($2, provider_ref)
			WHERE order_no = $3`, nullStr(code), nullStr(providerRef), c.OrderNo); err != nil {
			return err
		}
		if nextAction != "" && c.State == phoneapi.CheckoutAwaitingPayment {
			if _, err := tx.ExecContext(ctx, `UPDATE checkouts SET state = 'action_required', reason = $1, updated_ms = $2 WHERE id = $3`,
				"payer action: "+clipN(nextAction, 50), s.nowMs(), id); err != nil {
				return err
			}
			c.State = phoneapi.CheckoutActionRequired
		}
		return nil
	})
	return c, err
}

// LinkCheckoutSession records the session a starting checkout started
// and moves it to in_session with deadline as its bound (for a card
// hold, when the authorization's validity margin begins). A checkout no
// longer starting (its session already ended) is left as it is.
func (s *Store) LinkCheckoutSession(ctx context.Context, id string, sid vend.SessionID, deadline time.Time) (Checkout, error) {
	if _, err := s.db.ExecContext(ctx, `UPDATE checkouts SET state = 'in_session', session_id = $1, deadline_ms = $2, reason = 'session started',
		updated_ms = $3 WHERE id = $4 AND state = 'starting'`, sid.String(), deadline.UnixMilli(), s.nowMs(), id); err != nil {
		return Checkout{}, fmt.Errorf("store: link checkout: %w", err)
	}
	return s.GetCheckout(ctx, id)
}

// HoldAuthorized is what a hold channel reports of an authorized order.
type HoldAuthorized struct {
	Channel      string
	OrderNo      string
	ProviderTxID string
	Amount       vend.Amount // the amount authorized
	Expires      time.Time   // when the authorization lapses
	EventID      string      // the provider's notification ID; empty for a query's answer
}

// lockPayment reads an order for update, refusing another channel's.
func (s *Store) lockPayment(ctx context.Context, tx *sql.Tx, channel, orderNo string) (Payment, error) {
	p, err := scanPayment(tx.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM channel_payments WHERE order_no = $1`+s.d.lockRow, orderNo))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && p.Channel != channel) {
		return Payment{}, vend.Errorf(ErrPaymentNotFound, "%s order %q", channel, clip(orderNo))
	}
	return p, err
}

// lockHoldEvent locks a hold order's row and records the provider event
// that reports on it: fresh is false (and nothing more is to be done) for
// an event already handled. Errors: the lock's, ErrPaymentState for an
// order that is not a hold.
func (s *Store) lockHoldEvent(ctx context.Context, tx *sql.Tx, channel, orderNo, eventID string) (p Payment, fresh bool, err error) {
	if p, err = s.lockPayment(ctx, tx, channel, orderNo); err != nil {
		return p, false, err
	}
	if eventID != "" {
		if fresh, err := s.recordEvent(ctx, tx, channel, eventID); err != nil || !fresh {
			return p, false, err
		}
	}
	if p.CaptureMode != CaptureManual {
		return p, false, vend.Errorf(ErrPaymentState, "order %s is not a hold", p.OrderNo)
	}
	return p, true, nil
}

// MarkAuthorized records a hold order (capture mode manual) as authorized
// and credits the payer's wallet with the amount authorized
// (channel_clearing(channel) → user_wallet, key chan:<channel>:<order>),
// exactly once, and moves its checkout to starting; a checkout that ended
// meanwhile (expired, cancelled) gets its money returned (chan_void) and
// settles again to its end. An order already authorized, captured or
// closed after a credit changes nothing (credited == false): an
// "authorized" that comes after the capture is old news. A duplicate event
// changes nothing. An amount other than the order's is refused with an
// alert (ErrPaymentMismatch). Errors: ErrInput, ErrPaymentNotFound,
// ErrPaymentMismatch, ErrPaymentState (not a hold order).
func (s *Store) MarkAuthorized(ctx context.Context, in HoldAuthorized) (p Payment, credited bool, err error) {
	if in.Channel == "" || in.OrderNo == "" || len(in.EventID) > 200 {
		return Payment{}, false, vend.Errorf(ErrInput, "authorized needs a channel and an order number")
	}
	var mismatch string
	err = s.tx(ctx, "mark authorized", func(tx *sql.Tx) error {
		credited, mismatch = false, ""
		var fresh bool
		if p, fresh, err = s.lockHoldEvent(ctx, tx, in.Channel, in.OrderNo, in.EventID); err != nil || !fresh {
			return err
		}
		if in.Amount != p.Amount {
			mismatch = fmt.Sprintf("authorized %s, order is %s", in.Amount, p.Amount)
			return s.alert(ctx, tx, in.Channel, in.OrderNo, ErrPaymentMismatch.Code, mismatch)
		}
		var done int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM ledger_tx WHERE idem_key = $1`, ChannelPaymentKey(p.Channel, p.OrderNo)).Scan(&done); err != nil {
			return err
		}
		if done > 0 {
			return nil // credited before: authorized twice, or after its capture or cancel
		}
		var exp any
		if !in.Expires.IsZero() {
			exp = in.Expires.UnixMilli()
		}
		if _, err := tx.ExecContext(ctx, `UPDATE channel_payments SET state = 'authorized', provider_tx_id = COALESCE($1, provider_tx_id),
			auth_expires_ms = $2, paid_ms = NULL, closed_ms = NULL WHERE order_no = $3`, nullStr(in.ProviderTxID), exp, p.OrderNo); err != nil {
			return err
		}
		from, err := s.account(ctx, tx, ChannelClearing, p.Channel, p.Amount.Currency)
		if err != nil {
			return err
		}
		to, err := s.account(ctx, tx, UserWallet, p.User, p.Amount.Currency)
		if err != nil {
			return err
		}
		key := ChannelPaymentKey(p.Channel, p.OrderNo)
		if _, ok, err := s.post(ctx, tx, p.Amount.Currency, transfer{kind: TxTopUp, idemKey: key, reqHash: key, from: from, to: to, amount: p.Amount.Minor}); err != nil {
			return err
		} else if !ok {
			return errRetry
		}
		credited = true
		p.State = PaymentAuthorized
		if !in.Expires.IsZero() {
			p.AuthExpires = in.Expires.UTC()
		}
		if in.ProviderTxID != "" {
			p.ProviderTxID = in.ProviderTxID
		}
		return s.checkoutFunded(ctx, tx, p)
	})
	if err == nil && mismatch != "" {
		return p, false, vend.Errorf(ErrPaymentMismatch, "%s order %s: %s", in.Channel, in.OrderNo, mismatch)
	}
	return p, credited, err
}

// checkoutFunded moves the checkout of a just-credited order on: awaiting
// payment → starting; a checkout that already ended without money
// (expired, cancelled, failed) returns it all and settles again to that
// end (a late payment).
func (s *Store) checkoutFunded(ctx context.Context, tx *sql.Tx, p Payment) error {
	c, err := s.checkoutWhere(ctx, tx, "order_no", p.OrderNo, true)
	if errors.Is(err, ErrCheckoutNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	now := s.nowMs()
	switch c.State {
	case phoneapi.CheckoutAwaitingPayment, phoneapi.CheckoutActionRequired:
		_, err := tx.ExecContext(ctx, `UPDATE checkouts SET state = 'starting', reason = 'funded', deadline_ms = $1, updated_ms = $2 WHERE id = $3`,
			now+CheckoutStartBound.Milliseconds(), now, c.ID)
		return err
	case phoneapi.CheckoutExpired, phoneapi.CheckoutCancelled, phoneapi.CheckoutFailed:
		if err := s.returnMoney(ctx, tx, c, p, p.Amount.Minor); err != nil {
			return err
		}
		if err := s.alert(ctx, tx, p.Channel, p.OrderNo, "checkout.late_payment",
			fmt.Sprintf("checkout %s was %s when the channel reported the money; all of it is returned", c.ID, c.State)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE checkouts SET state = 'settling', end_state = $1, reason = 'late payment returned',
			returned_minor = $2, deadline_ms = $3, updated_ms = $3 WHERE id = $4`, string(c.State), p.Amount.Minor, now, c.ID)
		return err
	}
	return nil
}

// checkoutUnpaid ends the checkout of an order closed unpaid: expired
// (its TTL passed) or failed (the provider refused to open it).
func (s *Store) checkoutUnpaid(ctx context.Context, tx *sql.Tx, p Payment) error {
	c, err := s.checkoutWhere(ctx, tx, "order_no", p.OrderNo, true)
	if errors.Is(err, ErrCheckoutNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.State != phoneapi.CheckoutAwaitingPayment && c.State != phoneapi.CheckoutActionRequired {
		return nil
	}
	state, code, reason := phoneapi.CheckoutExpired, "", "not paid within the order's TTL"
	if p.State == PaymentFailed {
		state, code, reason = phoneapi.CheckoutFailed, "channel.refused", "the channel refused the order"
	}
	_, err = tx.ExecContext(ctx, `UPDATE checkouts SET state = $1, end_state = $1, fail_code = $2, reason = $3, updated_ms = $4 WHERE id = $5`,
		string(state), code, reason, s.nowMs(), c.ID)
	return err
}

// returnMoney books the return of amount (minor units) of a checkout's
// order to the payer's channel, once per order: for a hold, the
// uncaptured part leaves the wallet for the clearing account (chan_void,
// key chanvoid:<channel>:<order>; the provider releases it at capture or
// cancel); for a prepayment, a channel refund against the same order
// (pending; the service sends it), booked as any refund (chan_refund).
func (s *Store) returnMoney(ctx context.Context, tx *sql.Tx, c Checkout, p Payment, amount int64) error {
	if amount <= 0 {
		return nil
	}
	cur := p.Amount.Currency
	wallet, err := s.account(ctx, tx, UserWallet, p.User, cur)
	if err != nil {
		return err
	}
	clear, err := s.account(ctx, tx, ChannelClearing, p.Channel, cur)
	if err != nil {
		return err
	}
	if p.CaptureMode == CaptureManual {
		key := ChannelVoidKey(p.Channel, p.OrderNo)
		if _, ok, err := s.post(ctx, tx, cur, transfer{kind: TxChanVoid, idemKey: key, reqHash: fmt.Sprint(amount), from: wallet, to: clear, amount: amount}); err != nil {
			return err
		} else if !ok {
			return nil // booked before
		}
		_, err := tx.ExecContext(ctx, `UPDATE channel_payments SET voided_minor = $1 WHERE order_no = $2`, amount, p.OrderNo)
		return err
	}
	scope := CheckoutKeyPrefix + c.ID
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM refund_requests WHERE purpose = 'withdrawal' AND scope = $1 AND idem_key = 'return'`,
		scope).Scan(&have); err != nil {
		return err
	}
	if have > 0 {
		return nil
	}
	res, err := tx.ExecContext(ctx, `UPDATE channel_payments SET refunded_minor = refunded_minor + $1
		WHERE order_no = $2 AND state = 'paid' AND refunded_minor + voided_minor + $1 <= amount_minor`, amount, p.OrderNo)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vend.Errorf(ErrRefundable, "checkout %s: order %s cannot take back %d", c.ID, p.OrderNo, amount)
	}
	id, no, now := newID("rr"), refundNo(), s.nowMs()
	reason := "checkout " + c.ID + ": unused part of the cap"
	if _, err := tx.ExecContext(ctx, `INSERT INTO refund_requests (id, purpose, user_id, session_id, scope, idem_key, req_hash,
		amount_minor, wallet_minor, currency, reason, created_ms) VALUES ($1, 'withdrawal', $2, NULL, $3, 'return', $4, $5, 0, $6, $7, $8)`,
		id, p.User, scope, fmt.Sprint(amount), amount, string(cur), reason, now); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO channel_refunds (refund_no, order_no, channel, amount_minor, currency, purpose,
		session_id, reason, state, created_ms) VALUES ($1, $2, $3, $4, $5, 'withdrawal', NULL, $6, 'pending', $7)`,
		no, p.OrderNo, p.Channel, amount, string(cur), reason, now); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO refund_parts (request_id, refund_no) VALUES ($1, $2)`, id, no); err != nil {
		return err
	}
	key := ChannelRefundKey(p.Channel, no)
	if _, ok, err := s.post(ctx, tx, cur, transfer{kind: TxChanRefund, idemKey: key, reqHash: key, from: wallet, to: clear, amount: amount}); err != nil {
		return err
	} else if !ok {
		return errRetry
	}
	return nil
}

// checkoutSessionEnded is called, in the settling transaction, for every
// session whose hold was captured and released (any path: a report, a
// refusal, the sweep's start-by or unreported policy, an operator). For
// a session a checkout started (key checkout:<id>) it returns what the
// session did not charge to the payer's channel (returnMoney) and moves
// the checkout to settling: its end is done, or failed when the machine
// never ran (the session failed or expired).
func (s *Store) checkoutSessionEnded(ctx context.Context, tx *sql.Tx, ss Session, capture int64) error {
	id, ok := strings.CutPrefix(ss.IdemKey, CheckoutKeyPrefix)
	if !ok {
		return nil
	}
	c, err := s.checkoutWhere(ctx, tx, "id", id, true)
	if errors.Is(err, ErrCheckoutNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.User != ss.User || (c.State != phoneapi.CheckoutStarting && c.State != phoneapi.CheckoutInSession) {
		return nil
	}
	var state, fault string
	if err := tx.QueryRowContext(ctx, `SELECT state, fault FROM sessions WHERE id = $1`, ss.ID.String()).Scan(&state, &fault); err != nil {
		return err
	}
	end, code := phoneapi.CheckoutDone, ""
	if State(state) == Failed || State(state) == Expired {
		end, code = phoneapi.CheckoutFailed, fault
		if code == "" {
			code = ReasonUnacknowledged
		}
	}
	p, err := s.lockPayment(ctx, tx, c.Channel, c.OrderNo)
	if err != nil {
		return err
	}
	back := p.Amount.Minor - capture
	if err := s.returnMoney(ctx, tx, c, p, back); err != nil {
		return err
	}
	now := s.nowMs()
	_, err = tx.ExecContext(ctx, `UPDATE checkouts SET state = 'settling', end_state = $1, session_id = $2, captured_minor = $3,
		returned_minor = $4, fail_code = $5, reason = $6, deadline_ms = $7, updated_ms = $7 WHERE id = $8`,
		string(end), ss.ID.String(), capture, max(back, 0), code, "session "+state, now, c.ID)
	return err
}

// FailCheckout ends a checkout whose session never started: the payer
// cancelled (end cancelled), the order expired (expired), or the channel
// or the machine refused (failed, with code). Money the channel already
// holds is returned in full (returnMoney) and the checkout settles to
// end; without money it is final at once. A checkout settling or final
// is returned as it is. Errors: ErrCheckoutNotFound, ErrCheckoutState (a
// session exists: stop it instead).
func (s *Store) FailCheckout(ctx context.Context, id string, end phoneapi.CheckoutState, code, reason string) (Checkout, error) {
	if end != phoneapi.CheckoutCancelled && end != phoneapi.CheckoutExpired && end != phoneapi.CheckoutFailed {
		return Checkout{}, vend.Errorf(ErrInput, "checkout end %q", end)
	}
	var c Checkout
	err := s.tx(ctx, "fail checkout", func(tx *sql.Tx) error {
		var err error
		c, err = s.checkoutWhere(ctx, tx, "id", id, true)
		if err != nil {
			return err
		}
		if c.State.Final() || c.State == phoneapi.CheckoutSettling {
			return nil
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND idem_key = $2`,
			c.User, CheckoutKeyPrefix+c.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 || c.State == phoneapi.CheckoutInSession {
			return vend.Errorf(ErrCheckoutState, "checkout %s has a session", c.ID)
		}
		p, err := s.lockPayment(ctx, tx, c.Channel, c.OrderNo)
		if err != nil {
			return err
		}
		now := s.nowMs()
		reason = clipN(reason, 200)
		if p.State == PaymentAuthorized || p.State == PaymentPaid {
			if err := s.returnMoney(ctx, tx, c, p, p.Amount.Minor); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `UPDATE checkouts SET state = 'settling', end_state = $1, fail_code = $2, reason = $3,
				returned_minor = $4, deadline_ms = $5, updated_ms = $5 WHERE id = $6`, string(end), code, reason, p.Amount.Minor, now, c.ID)
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE checkouts SET state = $1, end_state = $1, fail_code = $2, reason = $3, updated_ms = $4
			WHERE id = $5`, string(end), code, reason, now, c.ID)
		return err
	})
	if err != nil {
		return Checkout{}, err
	}
	return s.GetCheckout(ctx, id)
}

// Captured is what a hold channel reports of a capture.
type Captured struct {
	Channel      string
	OrderNo      string
	ProviderTxID string
	Amount       vend.Amount // the amount captured
	At           time.Time
	EventID      string // the provider's notification ID; empty for a call's or query's answer
}

// MarkCaptured records the capture of an authorized hold order: paid,
// with captured_minor the amount, once (credited == true the first time).
// The amount must be what the checkout charged (the order's amount less
// its voided part); another amount is refused with an alert
// (ErrPaymentMismatch). A duplicate event changes nothing. It settles the
// checkout (FinishCheckout's rule). Errors: ErrInput, ErrPaymentNotFound,
// ErrPaymentMismatch, ErrPaymentState (not authorized: never authorized,
// or cancelled).
func (s *Store) MarkCaptured(ctx context.Context, in Captured) (p Payment, changed bool, err error) {
	if in.Channel == "" || in.OrderNo == "" || len(in.EventID) > 200 {
		return Payment{}, false, vend.Errorf(ErrInput, "captured needs a channel and an order number")
	}
	var mismatch string
	err = s.tx(ctx, "mark captured", func(tx *sql.Tx) error {
		changed, mismatch = false, ""
		var fresh bool
		if p, fresh, err = s.lockHoldEvent(ctx, tx, in.Channel, in.OrderNo, in.EventID); err != nil || !fresh {
			return err
		}
		if p.State == PaymentPaid && in.Amount.Minor == p.Captured {
			return nil
		}
		want := vend.Amount{Minor: p.Amount.Minor - p.Voided, Currency: p.Amount.Currency}
		if p.State != PaymentAuthorized && p.State != PaymentPaid {
			mismatch = fmt.Sprintf("captured %s, the order is %s", in.Amount, p.State)
		} else if in.Amount != want || p.State == PaymentPaid {
			mismatch = fmt.Sprintf("captured %s, the checkout charged %s", in.Amount, want)
		}
		if mismatch != "" {
			return s.alert(ctx, tx, in.Channel, in.OrderNo, ErrPaymentMismatch.Code, mismatch)
		}
		at := in.At.UnixMilli()
		if in.At.IsZero() {
			at = s.nowMs()
		}
		if _, err := tx.ExecContext(ctx, `UPDATE channel_payments SET state = 'paid', captured_minor = $1, paid_ms = $2,
			provider_tx_id = COALESCE($3, provider_tx_id) WHERE order_no = $4`, in.Amount.Minor, at, nullStr(in.ProviderTxID), p.OrderNo); err != nil {
			return err
		}
		p.State, p.Captured, p.Paid, changed = PaymentPaid, in.Amount.Minor, time.UnixMilli(at).UTC(), true
		return s.finishCheckout(ctx, tx, p.OrderNo)
	})
	if err == nil && mismatch != "" {
		return p, false, vend.Errorf(ErrPaymentMismatch, "%s order %s: %s", in.Channel, in.OrderNo, mismatch)
	}
	return p, changed, err
}

// MarkReleased records that the provider released a hold order in full
// (a cancel, or a pending order closed): closed, once. An authorized
// order must have had its whole amount returned (voided) first, or the
// release is refused (ErrPaymentState): money the cloud still counts as
// held cannot vanish. It settles the checkout (FinishCheckout's rule).
// Errors: ErrPaymentNotFound, ErrPaymentState.
func (s *Store) MarkReleased(ctx context.Context, channel, orderNo string) (p Payment, changed bool, err error) {
	err = s.tx(ctx, "mark released", func(tx *sql.Tx) error {
		changed = false
		p, err = s.lockPayment(ctx, tx, channel, orderNo)
		if err != nil {
			return err
		}
		switch {
		case p.State == PaymentClosed || p.State == PaymentFailed:
		case p.State == PaymentPending:
			if _, err := tx.ExecContext(ctx, `UPDATE channel_payments SET state = 'closed', closed_ms = $1 WHERE order_no = $2`, s.nowMs(), orderNo); err != nil {
				return err
			}
			p.State, changed = PaymentClosed, true
			if err := s.checkoutUnpaid(ctx, tx, p); err != nil {
				return err
			}
		case p.State == PaymentAuthorized && p.Voided == p.Amount.Minor:
			if _, err := tx.ExecContext(ctx, `UPDATE channel_payments SET state = 'closed', closed_ms = $1 WHERE order_no = $2`, s.nowMs(), orderNo); err != nil {
				return err
			}
			p.State, changed = PaymentClosed, true
		default:
			return vend.Errorf(ErrPaymentState, "order %s is %s with %d of %d returned", orderNo, p.State, p.Voided, p.Amount.Minor)
		}
		return s.finishCheckout(ctx, tx, orderNo)
	})
	return p, changed, err
}

// finishCheckout moves a settling checkout to its end once the channel
// has done its part: a hold captured (paid) or released (closed); a
// prepayment with no refund of it still pending.
func (s *Store) finishCheckout(ctx context.Context, tx *sql.Tx, orderNo string) error {
	c, err := s.checkoutWhere(ctx, tx, "order_no", orderNo, true)
	if errors.Is(err, ErrCheckoutNotFound) {
		return nil
	}
	if err != nil || c.State != phoneapi.CheckoutSettling {
		return err
	}
	var state string
	var pending int
	if err := tx.QueryRowContext(ctx, `SELECT state, (SELECT COUNT(*) FROM channel_refunds r WHERE r.order_no = p.order_no AND r.state = 'pending')
		FROM channel_payments p WHERE order_no = $1`, orderNo).Scan(&state, &pending); err != nil {
		return err
	}
	switch {
	case c.Mode == phoneapi.HoldModeAuthorize && state != string(PaymentPaid) && state != string(PaymentClosed):
		return nil
	case c.Mode == phoneapi.HoldModePrepay && pending > 0:
		return nil
	}
	end := c.EndState
	if end == "" {
		end = phoneapi.CheckoutDone
	}
	_, err = tx.ExecContext(ctx, `UPDATE checkouts SET state = $1, reason = 'settled with the channel', updated_ms = $2 WHERE id = $3`,
		string(end), s.nowMs(), c.ID)
	return err
}

// FinishCheckout moves a settling checkout to its end when the channel
// has done its part (see MarkCaptured, MarkReleased; a prepayment once
// its refund is no longer pending) and returns it; otherwise it is
// returned unchanged. Errors: ErrCheckoutNotFound.
func (s *Store) FinishCheckout(ctx context.Context, id string) (Checkout, error) {
	c, err := s.GetCheckout(ctx, id)
	if err != nil || c.State != phoneapi.CheckoutSettling {
		return c, err
	}
	if err := s.tx(ctx, "finish checkout", func(tx *sql.Tx) error { return s.finishCheckout(ctx, tx, c.OrderNo) }); err != nil {
		return Checkout{}, err
	}
	return s.GetCheckout(ctx, id)
}

// AbandonCheckout ends a live checkout the channel can no longer settle
// (an authorization that lapsed before its capture) in state failed with
// code, and records an alert with detail for an operator: the loss is
// never silent. A final checkout is left as it is. Errors:
// ErrCheckoutNotFound.
func (s *Store) AbandonCheckout(ctx context.Context, id, code, detail string) (Checkout, error) {
	err := s.tx(ctx, "abandon checkout", func(tx *sql.Tx) error {
		c, err := s.checkoutWhere(ctx, tx, "id", id, true)
		if err != nil || c.State.Final() {
			return err
		}
		if err := s.alert(ctx, tx, c.Channel, c.OrderNo, code, detail); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE checkouts SET state = 'failed', end_state = 'failed', fail_code = $1, reason = $2, updated_ms = $3
			WHERE id = $4`, code, clipN(detail, 200), s.nowMs(), id)
		return err
	})
	if err != nil {
		return Checkout{}, err
	}
	return s.GetCheckout(ctx, id)
}

// HasChannelAlert reports whether an alert with code was recorded about
// an order (so that a repeated check alerts once).
func (s *Store) HasChannelAlert(ctx context.Context, orderNo, code string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM channel_alerts WHERE order_no = $1 AND code = $2`, orderNo, code).Scan(&n); err != nil {
		return false, fmt.Errorf("store: channel alert: %w", err)
	}
	return n > 0, nil
}

// OrderRefunds returns the refunds of one order, oldest first.
func (s *Store) OrderRefunds(ctx context.Context, orderNo string) ([]Refund, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+refundCols+` FROM channel_refunds r JOIN channel_payments p ON p.order_no = r.order_no
		WHERE r.order_no = $1 ORDER BY r.created_ms, r.refund_no`, orderNo)
	if err != nil {
		return nil, fmt.Errorf("store: order refunds: %w", err)
	}
	defer rows.Close()
	var out []Refund
	for rows.Next() {
		f, err := scanRefund(rows)
		if err != nil {
			return nil, fmt.Errorf("store: order refunds: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// CloseUnreportedSession applies the unreported policy to one unreported
// session now, before its settlement window ends, with reason as its
// audit reason: a session funded by a card authorization is settled well
// inside the authorization's validity. Errors: ErrSessionNotFound,
// ErrSessionState (not unreported).
func (s *Store) CloseUnreportedSession(ctx context.Context, id vend.SessionID, reason string) (Settlement, error) {
	return s.closeUnreported(ctx, id, reason, reason, "")
}

// MachineLive reports whether a machine has a live session (pending,
// authorized, running or ending).
func (s *Store) MachineLive(ctx context.Context, device, machine string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE device_id = $1 AND machine_id = $2 AND state IN `+liveStates,
		device, machine).Scan(&n); err != nil {
		return false, fmt.Errorf("store: machine live: %w", err)
	}
	return n > 0, nil
}

// SetWebCheckout turns a machine's QR web checkout on or off: while off,
// a checkout without a proximity ID is refused (checkout.web_off).
// Errors: ErrMachineNotFound.
func (s *Store) SetWebCheckout(ctx context.Context, device, machine string, on bool) error {
	v := 0
	if on {
		v = 1
	}
	res, err := s.db.ExecContext(ctx, `UPDATE machines SET web_checkout = $1 WHERE device_id = $2 AND id = $3`, v, device, machine)
	if err != nil {
		return fmt.Errorf("store: web checkout: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vend.Errorf(ErrMachineNotFound, "%s/%s", clip(device), clip(machine))
	}
	return nil
}

// UserKind returns a user's kind: "account" or "guest". Errors:
// ErrUserNotFound.
func (s *Store) UserKind(ctx context.Context, id string) (string, error) {
	var k string
	err := s.db.QueryRowContext(ctx, `SELECT kind FROM users WHERE id = $1`, id).Scan(&k)
	if errors.Is(err, sql.ErrNoRows) {
		return "", vend.Errorf(ErrUserNotFound, "%q", clip(id))
	}
	if err != nil {
		return "", fmt.Errorf("store: user kind: %w", err)
	}
	return k, nil
}
