package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
)

// Errors of payment records.
var (
	ErrPaymentNotFound  = vend.E(vend.NotFound, "payment.not_found", "store: payment order not found")
	ErrPaymentMismatch  = vend.E(vend.Conflict, "payment.mismatch", "store: the channel reports another amount or currency than the order's")
	ErrPaymentState     = vend.E(vend.Conflict, "payment.state", "store: payment order is not in a state that allows this")
	ErrRefundNotFound   = vend.E(vend.NotFound, "refund.not_found", "store: refund not found")
	ErrRefundable       = vend.E(vend.Conflict, "refund.exceeds_refundable", "store: the amount is above what is still refundable")
	ErrRefundStateClash = vend.E(vend.Conflict, "refund.state", "store: the channel reports a refund state that contradicts the recorded one")
)

// The ledger's account kind and transaction kinds of payment channels.
const (
	// Fees is a provider's fees on a channel (owner: channel name); it
	// may go negative (an expense).
	Fees AccountKind = "fees"
	// TxChanRefund returns money to the payer through a channel:
	// user_wallet (a withdrawal) or operator_revenue (a session refund) →
	// channel_clearing.
	TxChanRefund TxKind = "chan_refund"
	// TxChanRefundReversal undoes a TxChanRefund the provider reports failed.
	TxChanRefundReversal TxKind = "chan_refund_reversal"
	// TxChanFee books a provider's fee: fees → channel_clearing (the
	// reverse for a returned fee).
	TxChanFee TxKind = "chan_fee"
	// TxSessionRefund is an operator's refund of a session to the payer's
	// wallet: operator_revenue → user_wallet.
	TxSessionRefund TxKind = "session_refund"
)

// PaymentState is where a payment order stands in the cloud's records.
type PaymentState string

// The states of a payment order: pending until paid (exactly once), or
// closed after its TTL, or failed when the provider refused to open it.
// A hold (CaptureManual) is authorized (credited, not captured) before it
// is paid (captured) or closed (cancelled).
const (
	PaymentPending    PaymentState = "pending"
	PaymentAuthorized PaymentState = "authorized"
	PaymentPaid       PaymentState = "paid"
	PaymentClosed     PaymentState = "closed"
	PaymentFailed     PaymentState = "failed"
)

// Payment is one channel payment order (a channel_payments row).
type Payment struct {
	OrderNo      string // the cloud's unique order number, the provider's out_trade_no
	Channel      string
	User         string
	Purpose      string // PurposeTopUp or PurposeSession
	Amount       vend.Amount
	State        PaymentState
	ProviderTxID string // empty until paid
	CodeURL      string // what the payer acts on (QR payload); empty until the provider answered
	IdemKey      string
	Created      time.Time
	Expires      time.Time // the order's TTL
	Paid         time.Time // zero unless paid
	Closed       time.Time // zero unless closed or failed
	Refunded     int64     // minor units taken by pending or succeeded refunds
	// ProviderRef is the provider's own ID of the order when it gives one
	// at creation (payments.Action.ProviderRef; a Stripe PaymentIntent
	// ID); empty otherwise.
	ProviderRef string
	// CaptureMode is CaptureAuto (paid at once) or CaptureManual (a hold
	// captured at settlement: HoldChannel).
	CaptureMode string
	AuthExpires time.Time // an authorized hold lapses then; zero otherwise
	Captured    int64     // minor units a hold captured (CaptureManual)
	Voided      int64     // minor units of a hold released back to the payer (ledger chan_void)
}

// Capture modes of a payment order.
const (
	CaptureAuto   = "auto"
	CaptureManual = "manual"
)

// Purposes of a payment order.
const (
	PurposeTopUp   = "topup"   // a wallet top-up
	PurposeSession = "session" // the cap of one checkout (a session paid through the channel)
)

// Refundable returns what is still refundable of a paid order, in minor units.
func (p Payment) Refundable() int64 {
	if p.State != PaymentPaid {
		return 0
	}
	return p.Amount.Minor - p.Refunded - p.Voided
}

// NewPayment is what CreatePayment records.
type NewPayment struct {
	OrderNo string // unique, 1-64 bytes
	Channel string
	User    string
	Amount  vend.Amount // > 0
	IdemKey string      // the payer's idempotency key; empty for none
	Expires time.Time   // after it the order is closed
}

const paymentCols = `order_no, channel, user_id, purpose, amount_minor, currency, state, provider_tx_id, code_url, idem_key,
	created_ms, expires_ms, paid_ms, closed_ms, refunded_minor, provider_ref, capture_mode, auth_expires_ms, captured_minor, voided_minor`

func scanPayment(r interface{ Scan(...any) error }) (Payment, error) {
	var p Payment
	var cur, state string
	var tx, code, idem, ref sql.NullString
	var created, expires int64
	var paid, closed, authExp sql.NullInt64
	err := r.Scan(&p.OrderNo, &p.Channel, &p.User, &p.Purpose, &p.Amount.Minor, &cur, &state, &tx, &code, &idem,
		&created, &expires, &paid, &closed, &p.Refunded, &ref, &p.CaptureMode, &authExp, &p.Captured, &p.Voided)
	if err != nil {
		return Payment{}, err
	}
	p.ProviderRef = ref.String
	if authExp.Valid {
		p.AuthExpires = time.UnixMilli(authExp.Int64).UTC()
	}
	p.Amount.Currency, p.State = vend.Currency(cur), PaymentState(state)
	p.ProviderTxID, p.CodeURL, p.IdemKey = tx.String, code.String, idem.String
	p.Created, p.Expires = time.UnixMilli(created).UTC(), time.UnixMilli(expires).UTC()
	if paid.Valid {
		p.Paid = time.UnixMilli(paid.Int64).UTC()
	}
	if closed.Valid {
		p.Closed = time.UnixMilli(closed.Int64).UTC()
	}
	return p, nil
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// CreatePayment records a pending order before its provider is called.
// With an IdemKey, a second call with the same user and key returns the
// first order (created == false) when it asks for the same channel and
// amount, and ErrIdemConflict otherwise. Errors: ErrInput, ErrAmount,
// vend.ErrCurrency, ErrUserNotFound, ErrIdemConflict.
func (s *Store) CreatePayment(ctx context.Context, in NewPayment) (p Payment, created bool, err error) {
	if in.OrderNo == "" || len(in.OrderNo) > 64 || in.Channel == "" || len(in.Channel) > 64 || len(in.IdemKey) > 200 {
		return Payment{}, false, vend.Errorf(ErrInput, "payment needs an order number (1-64 bytes), a channel (1-64) and a key under 200 bytes")
	}
	if in.Amount.Minor <= 0 {
		return Payment{}, false, vend.Errorf(ErrAmount, "payment of %d", in.Amount.Minor)
	}
	if err := in.Amount.Currency.Validate(); err != nil {
		return Payment{}, false, fmt.Errorf("store: payment: %w", err)
	}
	now := s.nowMs()
	if !in.Expires.After(time.UnixMilli(now)) {
		return Payment{}, false, vend.Errorf(ErrInput, "payment expires at %s, before now", in.Expires.UTC().Format(time.RFC3339))
	}
	err = s.tx(ctx, "create payment", func(tx *sql.Tx) error {
		created = false
		if err := s.userExists(ctx, tx, in.User); err != nil {
			return err
		}
		if in.IdemKey != "" {
			prev, err := scanPayment(tx.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM channel_payments WHERE user_id = $1 AND idem_key = $2`, in.User, in.IdemKey))
			if err == nil {
				if prev.Channel != in.Channel || prev.Amount != in.Amount {
					return vend.Errorf(ErrIdemConflict, "top-up key %q", in.IdemKey)
				}
				p = prev
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO channel_payments (order_no, channel, user_id, purpose, amount_minor, currency, state,
			idem_key, created_ms, expires_ms) VALUES ($1, $2, $3, 'topup', $4, $5, 'pending', $6, $7, $8)`,
			in.OrderNo, in.Channel, in.User, in.Amount.Minor, string(in.Amount.Currency), nullStr(in.IdemKey), now, in.Expires.UnixMilli())
		if err != nil {
			return err
		}
		created = true
		p, err = scanPayment(tx.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM channel_payments WHERE order_no = $1`, in.OrderNo))
		return err
	})
	return p, created, err
}

// SetPaymentCode stores what the payer acts on (the provider's QR
// payload) on a pending order. Errors: ErrPaymentNotFound.
func (s *Store) SetPaymentCode(ctx context.Context, orderNo, codeURL string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE channel_payments SET code_url = $1 WHERE order_no = $2`, nullStr(codeURL), orderNo)
	if err != nil {
		return fmt.Errorf("store: payment code: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vend.Errorf(ErrPaymentNotFound, "%q", clip(orderNo))
	}
	return nil
}

// SetPaymentRef stores the provider's own ID of an order
// (payments.Action.ProviderRef), for channels that query, capture or
// cancel by it. Errors: ErrPaymentNotFound.
func (s *Store) SetPaymentRef(ctx context.Context, orderNo, ref string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE channel_payments SET provider_ref = $1 WHERE order_no = $2`, nullStr(ref), orderNo)
	if err != nil {
		return fmt.Errorf("store: payment ref: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vend.Errorf(ErrPaymentNotFound, "%q", clip(orderNo))
	}
	return nil
}

// PaymentRef returns the provider's own ID of an order ("" when it gave
// none). Errors: ErrPaymentNotFound.
func (s *Store) PaymentRef(ctx context.Context, orderNo string) (string, error) {
	var ref sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT provider_ref FROM channel_payments WHERE order_no = $1`, orderNo).Scan(&ref)
	if errors.Is(err, sql.ErrNoRows) {
		return "", vend.Errorf(ErrPaymentNotFound, "%q", clip(orderNo))
	}
	if err != nil {
		return "", fmt.Errorf("store: payment ref: %w", err)
	}
	return ref.String, nil
}

// GetPayment returns one order. Errors: ErrPaymentNotFound.
func (s *Store) GetPayment(ctx context.Context, orderNo string) (Payment, error) {
	p, err := scanPayment(s.db.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM channel_payments WHERE order_no = $1`, orderNo))
	if errors.Is(err, sql.ErrNoRows) {
		return Payment{}, vend.Errorf(ErrPaymentNotFound, "%q", clip(orderNo))
	}
	if err != nil {
		return Payment{}, fmt.Errorf("store: get payment: %w", err)
	}
	return p, nil
}

// PaymentByKey returns user's order made with an idempotency key.
// Errors: ErrPaymentNotFound.
func (s *Store) PaymentByKey(ctx context.Context, user, key string) (Payment, error) {
	p, err := scanPayment(s.db.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM channel_payments WHERE user_id = $1 AND idem_key = $2`, user, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Payment{}, vend.Errorf(ErrPaymentNotFound, "key %q", clip(key))
	}
	if err != nil {
		return Payment{}, fmt.Errorf("store: payment by key: %w", err)
	}
	return p, nil
}

// UserPayment returns one of user's orders; another user's order is
// ErrPaymentNotFound, as an unknown one.
func (s *Store) UserPayment(ctx context.Context, user, orderNo string) (Payment, error) {
	p, err := s.GetPayment(ctx, orderNo)
	if err == nil && p.User != user {
		return Payment{}, vend.Errorf(ErrPaymentNotFound, "%q", clip(orderNo))
	}
	return p, err
}

// PaymentCursor is where a page of UserPayments continues: the last
// order's creation time and number. The zero cursor is the first page.
type PaymentCursor struct {
	Created int64
	OrderNo string
}

// UserPayments returns user's orders newest first, limit (1-100) at a
// time after cur, and the cursor of the next page (zero when none).
func (s *Store) UserPayments(ctx context.Context, user string, cur PaymentCursor, limit int) ([]Payment, PaymentCursor, error) {
	if limit < 1 || limit > 100 {
		return nil, PaymentCursor{}, vend.Errorf(ErrInput, "limit %d: want 1-100", limit)
	}
	q := `SELECT ` + paymentCols + ` FROM channel_payments WHERE user_id = $1`
	args := []any{user}
	if cur.OrderNo != "" {
		q += ` AND (created_ms < $2 OR (created_ms = $2 AND order_no < $3))`
		args = append(args, cur.Created, cur.OrderNo)
	}
	q += fmt.Sprintf(` ORDER BY created_ms DESC, order_no DESC LIMIT %d`, limit+1)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, PaymentCursor{}, fmt.Errorf("store: payments: %w", err)
	}
	defer rows.Close()
	var out []Payment
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, PaymentCursor{}, fmt.Errorf("store: payments: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, PaymentCursor{}, fmt.Errorf("store: payments: %w", err)
	}
	var next PaymentCursor
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = PaymentCursor{Created: last.Created.UnixMilli(), OrderNo: last.OrderNo}
	}
	return out, next, nil
}

// PaymentTotal returns the sum, in minor units, of the orders of channel
// created at or after since that are pending, authorized or paid (what counts against
// a daily limit): user's alone, or every user's when user is "".
func (s *Store) PaymentTotal(ctx context.Context, channel, user string, since time.Time) (int64, error) {
	q := `SELECT COALESCE(SUM(amount_minor), 0) FROM channel_payments WHERE channel = $1 AND created_ms >= $2 AND state IN ('pending', 'authorized', 'paid')`
	args := []any{channel, since.UnixMilli()}
	if user != "" {
		q += ` AND user_id = $3`
		args = append(args, user)
	}
	var n int64
	if err := s.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: payment total: %w", err)
	}
	return n, nil
}

// Paid is what a channel reports of a paid order, by notification or query.
type Paid struct {
	Channel      string
	OrderNo      string
	ProviderTxID string
	Amount       vend.Amount // what the payer paid
	PaidAt       time.Time
	EventID      string // the provider's notification ID; empty for a query's answer
}

// MarkPaid moves an order to paid and credits the payer's wallet
// (channel_clearing(channel) → user_wallet, key chan:<channel>:<order>),
// exactly once: whichever of a notification and a query comes first
// credits, the other changes nothing (credited == false). A notification
// whose EventID was handled before changes nothing either. A closed or
// failed order the provider reports paid is credited all the same (the
// payer's money arrived). An amount or currency that is not the order's,
// or a provider transaction ID other than the one recorded, is refused:
// nothing is credited, an alert is recorded (ChannelAlerts) and the error
// is ErrPaymentMismatch. Errors: ErrInput, ErrPaymentNotFound (an order
// of another channel, too), ErrPaymentMismatch.
func (s *Store) MarkPaid(ctx context.Context, in Paid) (p Payment, credited bool, err error) {
	if in.Channel == "" || in.OrderNo == "" || in.ProviderTxID == "" || len(in.EventID) > 200 {
		return Payment{}, false, vend.Errorf(ErrInput, "paid needs a channel, an order number and a provider transaction id")
	}
	var mismatch string
	err = s.tx(ctx, "mark paid", func(tx *sql.Tx) error {
		credited, mismatch = false, ""
		p, err = scanPayment(tx.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM channel_payments WHERE order_no = $1`+s.d.lockRow, in.OrderNo))
		if errors.Is(err, sql.ErrNoRows) || (err == nil && p.Channel != in.Channel) {
			return vend.Errorf(ErrPaymentNotFound, "%s order %q", in.Channel, clip(in.OrderNo))
		}
		if err != nil {
			return err
		}
		if in.EventID != "" {
			fresh, err := s.recordEvent(ctx, tx, in.Channel, in.EventID)
			if err != nil {
				return err
			}
			if !fresh {
				return nil
			}
		}
		switch {
		case in.Amount != p.Amount:
			mismatch = fmt.Sprintf("paid %s, order is %s", in.Amount, p.Amount)
		case p.State == PaymentPaid && p.ProviderTxID != in.ProviderTxID:
			mismatch = fmt.Sprintf("provider transaction %q, recorded %q", in.ProviderTxID, p.ProviderTxID)
		}
		if mismatch != "" {
			return s.alert(ctx, tx, in.Channel, in.OrderNo, ErrPaymentMismatch.Code, mismatch)
		}
		if p.State == PaymentPaid {
			return nil
		}
		if p.CaptureMode == CaptureManual {
			return vend.Errorf(ErrPaymentState, "order %s is a hold: its capture is recorded by MarkCaptured", p.OrderNo)
		}
		paidMs := in.PaidAt.UnixMilli()
		if in.PaidAt.IsZero() {
			paidMs = s.nowMs()
		}
		if _, err := tx.ExecContext(ctx, `UPDATE channel_payments SET state = 'paid', provider_tx_id = $1, paid_ms = $2 WHERE order_no = $3`,
			in.ProviderTxID, paidMs, in.OrderNo); err != nil {
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
		key := "chan:" + p.Channel + ":" + p.OrderNo
		_, ok, err := s.post(ctx, tx, p.Amount.Currency, transfer{kind: TxTopUp, idemKey: key, reqHash: key, from: from, to: to, amount: p.Amount.Minor})
		if err != nil {
			return err
		}
		if !ok {
			return vend.Errorf(ErrPaymentState, "ledger already holds %s", key)
		}
		credited = true
		p.State, p.ProviderTxID, p.Paid = PaymentPaid, in.ProviderTxID, time.UnixMilli(paidMs).UTC()
		if p.Purpose == PurposeSession {
			return s.checkoutFunded(ctx, tx, p)
		}
		return nil
	})
	if err == nil && mismatch != "" {
		return p, false, vend.Errorf(ErrPaymentMismatch, "%s order %s: %s", in.Channel, in.OrderNo, mismatch)
	}
	return p, credited, err
}

// recordEvent records a provider event ID and reports whether it is new.
func (s *Store) recordEvent(ctx context.Context, tx *sql.Tx, channel, id string) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO channel_events (channel, event_id, received_ms) VALUES ($1, $2, $3)
		ON CONFLICT (channel, event_id) DO NOTHING`, channel, id, s.nowMs())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SeenEvent reports whether a provider event ID was handled.
func (s *Store) SeenEvent(ctx context.Context, channel, id string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM channel_events WHERE channel = $1 AND event_id = $2`, channel, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: seen event: %w", err)
	}
	return true, nil
}

func (s *Store) alert(ctx context.Context, q queryer, channel, orderNo, code, detail string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO channel_alerts (channel, order_no, code, detail, created_ms) VALUES ($1, $2, $3, $4, $5)`,
		channel, orderNo, code, clipN(detail, 1000), s.nowMs())
	return err
}

// ChannelAlert is something a channel reported that the cloud refused to book.
type ChannelAlert struct {
	Channel, OrderNo string
	Code             string // the stable error code, e.g. payment.mismatch
	Detail           string
	At               time.Time
}

// RecordChannelAlert records an alert about an order (an unknown order
// number in a verified notification, a refused payment).
func (s *Store) RecordChannelAlert(ctx context.Context, a ChannelAlert) error {
	if err := s.alert(ctx, s.db, a.Channel, a.OrderNo, a.Code, a.Detail); err != nil {
		return fmt.Errorf("store: channel alert: %w", err)
	}
	return nil
}

// ChannelAlerts returns the alerts about an order, oldest first; every
// alert when orderNo is "".
func (s *Store) ChannelAlerts(ctx context.Context, orderNo string) ([]ChannelAlert, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT channel, order_no, code, detail, created_ms FROM channel_alerts
		WHERE $1 = '' OR order_no = $1 ORDER BY id`, orderNo)
	if err != nil {
		return nil, fmt.Errorf("store: channel alerts: %w", err)
	}
	defer rows.Close()
	var out []ChannelAlert
	for rows.Next() {
		var a ChannelAlert
		var ms int64
		if err := rows.Scan(&a.Channel, &a.OrderNo, &a.Code, &a.Detail, &ms); err != nil {
			return nil, fmt.Errorf("store: channel alerts: %w", err)
		}
		a.At = time.UnixMilli(ms).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// ClosePayment moves a pending order to closed (reason "ttl": its TTL
// passed and the provider closed it) or failed (reason "refused": the
// provider refused to open it) and reports whether it changed; an order
// no longer pending is left as it is. Errors: ErrPaymentNotFound.
func (s *Store) ClosePayment(ctx context.Context, orderNo string, failed bool) (p Payment, changed bool, err error) {
	state := PaymentClosed
	if failed {
		state = PaymentFailed
	}
	err = s.tx(ctx, "close payment", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE channel_payments SET state = $1, closed_ms = $2 WHERE order_no = $3 AND state = 'pending'`,
			string(state), s.nowMs(), orderNo)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		changed = n == 1
		p, err = scanPayment(tx.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM channel_payments WHERE order_no = $1`, orderNo))
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrPaymentNotFound, "%q", clip(orderNo))
		}
		if err == nil && changed && p.Purpose == PurposeSession {
			return s.checkoutUnpaid(ctx, tx, p)
		}
		return err
	})
	return p, changed, err
}

// ExpiredPayments returns up to limit pending top-up orders whose TTL
// has passed, oldest first: the janitor closes them. A checkout's order
// (purpose session) is left to its checkout (DueCheckouts), which asks
// the channel before it cancels a hold.
func (s *Store) ExpiredPayments(ctx context.Context, limit int) ([]Payment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+paymentCols+` FROM channel_payments WHERE state = 'pending' AND expires_ms <= $1
		AND purpose = 'topup' ORDER BY expires_ms LIMIT $2`, s.nowMs(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: expired payments: %w", err)
	}
	defer rows.Close()
	var out []Payment
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, fmt.Errorf("store: expired payments: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// PostChannelFee books a provider's fee on channel once per key
// (chanfee:<channel>:<day>:<row>): a positive amount moves fees(channel)
// → channel_clearing(channel), a negative one (a fee returned with a
// refund) the reverse. It reports whether it posted (false: the key was
// posted before with the same amount). Errors: ErrInput, ErrAmount
// (zero), vend.ErrCurrency, ErrIdemConflict (the key was posted with
// another amount).
func (s *Store) PostChannelFee(ctx context.Context, channel, key string, amount vend.Amount) (bool, error) {
	n, err := s.PostChannelFees(ctx, channel, []Fee{{Key: key, Amount: amount}})
	return n == 1, err
}

// Fee is one fee for [Store.PostChannelFees]: its ledger key
// ([ChannelFeeKey]) and the amount the provider kept, in minor units
// (negative: a fee returned with a refund).
type Fee struct {
	Key    string
	Amount vend.Amount
}

// feeChunk is how many fees PostChannelFees writes per transaction.
const feeChunk = 500

// PostChannelFees books many fees on channel as [Store.PostChannelFee]
// does each, in one transaction per 500 fees: each key posts once (a key
// posted before with the same amount, or repeated in fees, posts nothing
// again), and each fee is its own balanced ledger transaction. It returns
// how many fees it posted. Every fee is checked before anything is
// written: a bad one is refused with ErrInput, ErrAmount (zero) or
// vend.ErrCurrency, and a key posted before (or listed twice) with
// another amount with ErrIdemConflict, each naming the fee. A conflict
// that appears concurrently, after the check, refuses the chunk it is in;
// the chunks before it stay posted (they are counted).
func (s *Store) PostChannelFees(ctx context.Context, channel string, fees []Fee) (posted int, err error) {
	if channel == "" || len(channel) > 64 {
		return 0, vend.Errorf(ErrInput, "fees need a channel of 1-64 bytes")
	}
	hash := func(a vend.Amount) string { return fmt.Sprintf("%d|%s", a.Minor, a.Currency) }
	todo := make([]Fee, 0, len(fees))
	seen := make(map[string]vend.Amount, len(fees))
	for i, f := range fees {
		if f.Key == "" || len(f.Key) > 200 {
			return 0, vend.Errorf(ErrInput, "fee %d: needs a key of 1-200 bytes", i)
		}
		if f.Amount.Minor == 0 {
			return 0, vend.Errorf(ErrAmount, "fee %s of 0", f.Key)
		}
		if err := f.Amount.Currency.Validate(); err != nil {
			return 0, fmt.Errorf("store: fee %s: %w", f.Key, err)
		}
		if prev, ok := seen[f.Key]; ok {
			if prev != f.Amount {
				return 0, vend.Errorf(ErrIdemConflict, "fee %s listed as %s and %s", f.Key, prev, f.Amount)
			}
			continue
		}
		seen[f.Key] = f.Amount
		todo = append(todo, f)
	}
	// Refuse a conflict before writing anything; skip what is posted.
	keys := make([]string, len(todo))
	for i, f := range todo {
		keys[i] = f.Key
	}
	prev, err := s.ledgerHashes(ctx, s.db, keys)
	if err != nil {
		return 0, fmt.Errorf("store: channel fees: %w", err)
	}
	fresh := todo[:0]
	for _, f := range todo {
		if h, ok := prev[f.Key]; !ok {
			fresh = append(fresh, f)
		} else if h != hash(f.Amount) {
			return 0, vend.Errorf(ErrIdemConflict, "fee %s of %s posted before as %s", f.Key, f.Amount, h)
		}
	}
	for len(fresh) > 0 {
		chunk := fresh[:min(len(fresh), feeChunk)]
		var n int
		err := s.tx(ctx, "channel fees", func(tx *sql.Tx) error {
			n = 0
			keys := make([]string, len(chunk))
			for i, f := range chunk {
				keys[i] = f.Key
			}
			prev, err := s.ledgerHashes(ctx, tx, keys) // posted since the check above
			if err != nil {
				return err
			}
			byCur := map[vend.Currency][]transfer{}
			var curs []vend.Currency
			for _, f := range chunk {
				if h, ok := prev[f.Key]; ok {
					if h != hash(f.Amount) {
						return vend.Errorf(ErrIdemConflict, "fee %s of %s posted before as %s", f.Key, f.Amount, h)
					}
					continue
				}
				cur := f.Amount.Currency
				if _, ok := byCur[cur]; !ok {
					curs = append(curs, cur)
				}
				byCur[cur] = append(byCur[cur], transfer{kind: TxChanFee, idemKey: f.Key, reqHash: hash(f.Amount), amount: f.Amount.Minor})
			}
			for _, cur := range curs {
				fees, err := s.account(ctx, tx, Fees, channel, cur)
				if err != nil {
					return err
				}
				clear, err := s.account(ctx, tx, ChannelClearing, channel, cur)
				if err != nil {
					return err
				}
				ts := byCur[cur]
				for i := range ts {
					ts[i].from, ts[i].to = fees, clear
					if ts[i].amount < 0 {
						ts[i].from, ts[i].to, ts[i].amount = clear, fees, -ts[i].amount
					}
				}
				_, ok, err := s.post(ctx, tx, cur, ts...)
				if err != nil {
					return err
				}
				if !ok {
					return errRetry // a concurrent post of a key won; look again
				}
				n += len(ts)
			}
			return nil
		})
		if err != nil {
			return posted, err
		}
		posted += n
		fresh = fresh[len(chunk):]
	}
	return posted, nil
}

// ledgerHashes returns the request hash of each of keys that names a
// ledger transaction.
func (s *Store) ledgerHashes(ctx context.Context, q queryer, keys []string) (map[string]string, error) {
	out := map[string]string{}
	for len(keys) > 0 {
		n := min(len(keys), feeChunk)
		args := make([]any, n)
		for i, k := range keys[:n] {
			args[i] = k
		}
		rows, err := q.QueryContext(ctx, `SELECT idem_key, req_hash FROM ledger_tx WHERE idem_key IN `+in(1, n), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var k, h string
			if err := rows.Scan(&k, &h); err != nil {
				rows.Close()
				return nil, err
			}
			out[k] = h
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		keys = keys[n:]
	}
	return out, nil
}

// RefundState is where a channel refund stands in the cloud's records.
type RefundState string

// The states of a channel refund.
const (
	RefundPending   RefundState = "pending"
	RefundSucceeded RefundState = "succeeded"
	RefundFailed    RefundState = "failed"
)

// The purposes of a refund.
const (
	PurposeWithdrawal    = "withdrawal"
	PurposeSessionRefund = "session_refund"
)

// Refund is one refund against one paid order (a channel_refunds row).
type Refund struct {
	RefundNo         string
	OrderNo          string
	Channel          string
	Amount           vend.Amount
	Purpose          string // PurposeWithdrawal or PurposeSessionRefund
	Session          vend.SessionID
	Reason           string
	State            RefundState
	ProviderRefundID string
	Created          time.Time
	Done             time.Time
	OrderTotal       int64 // the order's original amount, minor units (WeChat Pay wants it with a refund)
}

const refundCols = `r.refund_no, r.order_no, r.channel, r.amount_minor, r.currency, r.purpose, r.session_id, r.reason, r.state,
	r.provider_refund_id, r.created_ms, r.done_ms, p.amount_minor`

func scanRefund(r interface{ Scan(...any) error }) (Refund, error) {
	var f Refund
	var cur, state string
	var sess, prid sql.NullString
	var created int64
	var done sql.NullInt64
	if err := r.Scan(&f.RefundNo, &f.OrderNo, &f.Channel, &f.Amount.Minor, &cur, &f.Purpose, &sess, &f.Reason, &state,
		&prid, &created, &done, &f.OrderTotal); err != nil {
		return Refund{}, err
	}
	f.Amount.Currency, f.State, f.ProviderRefundID = vend.Currency(cur), RefundState(state), prid.String
	if sess.Valid {
		f.Session, _ = vend.ParseSessionID(sess.String)
	}
	f.Created = time.UnixMilli(created).UTC()
	if done.Valid {
		f.Done = time.UnixMilli(done.Int64).UTC()
	}
	return f, nil
}

// RefundRequest is a withdrawal or an operator's refund of a session,
// and the channel refunds it was split into.
type RefundRequest struct {
	ID        string
	Purpose   string // PurposeWithdrawal or PurposeSessionRefund
	User      string
	Session   vend.SessionID // session refunds
	Amount    vend.Amount
	Wallet    int64 // minor units of a session refund paid to the payer's wallet (money that did not come through a channel)
	Reason    string
	Created   time.Time
	Refunds   []Refund
	Duplicate bool // the key was used before with the same request; nothing moved this time
}

func refundNo() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "rf" + hex.EncodeToString(b[:])
}

// Withdraw returns amount of user's wallet to the channels it came
// through: refunds against the user's paid orders, oldest refundable
// first, each debiting the wallet into channel_clearing(channel) with key
// chanrefund:<channel>:<refund_no> and taking its part of the order's
// refundable amount in the same transaction, so that concurrent refunds
// can never exceed an order. The refunds are recorded pending: the caller
// asks each provider (Refund) and records its answer (ApplyRefund). Once
// per (user, key). Errors: ErrInput, ErrAmount, ErrRefundable (the paid
// orders cannot take amount), ErrFunds (the wallet has less),
// ErrIdemConflict.
func (s *Store) Withdraw(ctx context.Context, user string, amount vend.Amount, key string) (RefundRequest, error) {
	return s.refundRequest(ctx, refundIn{purpose: PurposeWithdrawal, user: user, scope: user, amount: amount, key: key})
}

// RefundSession refunds amount of a session's charge, on an operator's
// word with a reason: to the original channel(s) of the payer's money
// (the payer's paid orders, oldest refundable first), the rest to the
// payer's wallet when the money did not come through a channel; each
// part debits operator_revenue. At most what the session captured, less
// what was refunded before (failed channel refunds excepted). Once per
// (session, key). Errors: ErrInput, ErrAmount, ErrSessionNotFound (or
// another operator's), ErrSessionState (nothing captured), ErrRefundable
// (above what is left), ErrFunds (the operator's revenue has less),
// ErrIdemConflict.
func (s *Store) RefundSession(ctx context.Context, operator string, id vend.SessionID, amount vend.Amount, reason, key string) (RefundRequest, error) {
	if reason == "" || len(reason) > 200 {
		return RefundRequest{}, vend.Errorf(ErrInput, "a session refund needs a reason of 1-200 bytes")
	}
	return s.refundRequest(ctx, refundIn{purpose: PurposeSessionRefund, operator: operator, session: id, scope: id.String(),
		amount: amount, key: key, reason: reason})
}

type refundIn struct {
	purpose        string
	user, operator string
	session        vend.SessionID
	scope, key     string
	reason         string
	amount         vend.Amount
}

func (s *Store) refundRequest(ctx context.Context, in refundIn) (RefundRequest, error) {
	if in.amount.Minor <= 0 {
		return RefundRequest{}, vend.Errorf(ErrAmount, "%s of %d", in.purpose, in.amount.Minor)
	}
	if err := in.amount.Currency.Validate(); err != nil {
		return RefundRequest{}, fmt.Errorf("store: %s: %w", in.purpose, err)
	}
	if in.key == "" || len(in.key) > 200 {
		return RefundRequest{}, vend.Errorf(ErrInput, "%s needs an idempotency key of 1-200 bytes", in.purpose)
	}
	hash := fmt.Sprintf("%d|%s|%s", in.amount.Minor, in.amount.Currency, in.reason)
	var id string
	dup := false
	err := s.tx(ctx, in.purpose, func(tx *sql.Tx) error {
		dup = false
		var prevHash string
		err := tx.QueryRowContext(ctx, `SELECT id, req_hash FROM refund_requests WHERE purpose = $1 AND scope = $2 AND idem_key = $3`,
			in.purpose, in.scope, in.key).Scan(&id, &prevHash)
		if err == nil {
			if prevHash != hash {
				return vend.Errorf(ErrIdemConflict, "%s key %q", in.purpose, in.key)
			}
			dup = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		cur := in.amount.Currency
		var from int64 // the account the money leaves
		var session any
		user := in.user
		if in.purpose == PurposeSessionRefund {
			var op, state, scur string
			var captured, late int64
			err := tx.QueryRowContext(ctx, `SELECT user_id, operator_id, state, currency, captured, late_minor FROM sessions WHERE id = $1`+s.d.lockRow,
				in.session.String()).Scan(&user, &op, &state, &scur, &captured, &late)
			if errors.Is(err, sql.ErrNoRows) || (err == nil && op != in.operator) {
				return vend.Errorf(ErrSessionNotFound, "%s", in.session)
			}
			if err != nil {
				return err
			}
			if vend.Currency(scur) != cur {
				return vend.Errorf(ErrCurrency, "session in %s", scur)
			}
			charged := captured + late
			if charged <= 0 {
				return vend.Errorf(ErrSessionState, "session %s (%s) charged nothing", in.session, state)
			}
			var before, failed int64
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount_minor), 0) FROM refund_requests WHERE session_id = $1`,
				in.session.String()).Scan(&before); err != nil {
				return err
			}
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount_minor), 0) FROM channel_refunds WHERE session_id = $1 AND state = 'failed'`,
				in.session.String()).Scan(&failed); err != nil {
				return err
			}
			if left := charged - before + failed; in.amount.Minor > left {
				return vend.Errorf(ErrRefundable, "session %s: %s left to refund", in.session, vend.Amount{Minor: left, Currency: cur})
			}
			if from, err = s.account(ctx, tx, OperatorRevenue, op, cur); err != nil {
				return err
			}
			session = in.session.String()
		} else {
			if err := s.userExists(ctx, tx, user); err != nil {
				return err
			}
			if from, err = s.account(ctx, tx, UserWallet, user, cur); err != nil {
				return err
			}
		}
		// The payer's paid orders, oldest first, with something left.
		rows, err := tx.QueryContext(ctx, `SELECT `+paymentCols+` FROM channel_payments
			WHERE user_id = $1 AND currency = $2 AND state = 'paid' AND refunded_minor + voided_minor < amount_minor
			ORDER BY paid_ms, order_no`+s.d.lockRow, user, string(cur))
		if err != nil {
			return err
		}
		var orders []Payment
		for rows.Next() {
			p, err := scanPayment(rows)
			if err != nil {
				rows.Close()
				return err
			}
			orders = append(orders, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		id = newID("rr")
		left := in.amount.Minor
		type part struct {
			p      Payment
			no     string
			amount int64
		}
		var parts []part
		for _, p := range orders {
			if left == 0 {
				break
			}
			n := min(left, p.Refundable())
			parts = append(parts, part{p, refundNo(), n})
			left -= n
		}
		wallet := int64(0)
		if left > 0 {
			if in.purpose == PurposeWithdrawal {
				return vend.Errorf(ErrRefundable, "withdrawal of %s: the paid orders can take back %s", in.amount,
					vend.Amount{Minor: in.amount.Minor - left, Currency: cur})
			}
			wallet = left
		}
		now := s.nowMs()
		if _, err := tx.ExecContext(ctx, `INSERT INTO refund_requests (id, purpose, user_id, session_id, scope, idem_key, req_hash,
			amount_minor, wallet_minor, currency, reason, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			id, in.purpose, user, session, in.scope, in.key, hash, in.amount.Minor, wallet, string(cur), in.reason, now); err != nil {
			return err
		}
		var ts []transfer
		for _, pt := range parts {
			res, err := tx.ExecContext(ctx, `UPDATE channel_payments SET refunded_minor = refunded_minor + $1
				WHERE order_no = $2 AND state = 'paid' AND refunded_minor + voided_minor + $1 <= amount_minor`, pt.amount, pt.p.OrderNo)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n != 1 {
				return errRetry // a concurrent refund took part of it: plan again
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO channel_refunds (refund_no, order_no, channel, amount_minor, currency, purpose,
				session_id, reason, state, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9)`,
				pt.no, pt.p.OrderNo, pt.p.Channel, pt.amount, string(cur), in.purpose, session, in.reason, now); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO refund_parts (request_id, refund_no) VALUES ($1, $2)`, id, pt.no); err != nil {
				return err
			}
			to, err := s.account(ctx, tx, ChannelClearing, pt.p.Channel, cur)
			if err != nil {
				return err
			}
			k := "chanrefund:" + pt.p.Channel + ":" + pt.no
			ts = append(ts, transfer{kind: TxChanRefund, idemKey: k, reqHash: k, session: sessPtr(session), from: from, to: to, amount: pt.amount})
		}
		if wallet > 0 {
			to, err := s.account(ctx, tx, UserWallet, user, cur)
			if err != nil {
				return err
			}
			k := "sessrefund:" + id
			ts = append(ts, transfer{kind: TxSessionRefund, idemKey: k, reqHash: k, session: sessPtr(session), from: from, to: to, amount: wallet})
		}
		_, ok, err := s.post(ctx, tx, cur, ts...)
		if err != nil {
			return err
		}
		if !ok {
			return errRetry
		}
		return nil
	})
	if err != nil {
		return RefundRequest{}, err
	}
	r, err := s.GetRefundRequest(ctx, id)
	r.Duplicate = dup
	return r, err
}

func sessPtr(v any) *string {
	if s, ok := v.(string); ok {
		return &s
	}
	return nil
}

// GetRefundRequest returns a withdrawal or session refund with its
// channel refunds. Errors: ErrRefundNotFound.
func (s *Store) GetRefundRequest(ctx context.Context, id string) (RefundRequest, error) {
	var r RefundRequest
	var sess sql.NullString
	var cur string
	var ms int64
	err := s.db.QueryRowContext(ctx, `SELECT id, purpose, user_id, session_id, amount_minor, wallet_minor, currency, reason, created_ms
		FROM refund_requests WHERE id = $1`, id).Scan(&r.ID, &r.Purpose, &r.User, &sess, &r.Amount.Minor, &r.Wallet, &cur, &r.Reason, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return RefundRequest{}, vend.Errorf(ErrRefundNotFound, "%q", clip(id))
	}
	if err != nil {
		return RefundRequest{}, fmt.Errorf("store: refund request: %w", err)
	}
	r.Amount.Currency, r.Created = vend.Currency(cur), time.UnixMilli(ms).UTC()
	if sess.Valid {
		r.Session, _ = vend.ParseSessionID(sess.String)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+refundCols+` FROM refund_parts x JOIN channel_refunds r ON r.refund_no = x.refund_no
		JOIN channel_payments p ON p.order_no = r.order_no WHERE x.request_id = $1 ORDER BY p.paid_ms, p.order_no`, id)
	if err != nil {
		return RefundRequest{}, fmt.Errorf("store: refund request: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		f, err := scanRefund(rows)
		if err != nil {
			return RefundRequest{}, fmt.Errorf("store: refund request: %w", err)
		}
		r.Refunds = append(r.Refunds, f)
	}
	return r, rows.Err()
}

// UserRefundRequest returns one of user's withdrawals; another user's is
// ErrRefundNotFound.
func (s *Store) UserRefundRequest(ctx context.Context, user, id string) (RefundRequest, error) {
	r, err := s.GetRefundRequest(ctx, id)
	if err == nil && (r.User != user || r.Purpose != PurposeWithdrawal) {
		return RefundRequest{}, vend.Errorf(ErrRefundNotFound, "%q", clip(id))
	}
	return r, err
}

// SessionRefunds returns the refunds of a session (its charge returned by
// an operator), oldest first.
func (s *Store) SessionRefunds(ctx context.Context, id vend.SessionID) ([]RefundRequest, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM refund_requests WHERE session_id = $1 ORDER BY created_ms, id`, id.String())
	if err != nil {
		return nil, fmt.Errorf("store: session refunds: %w", err)
	}
	var ids []string
	for rows.Next() {
		var x string
		if err := rows.Scan(&x); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: session refunds: %w", err)
		}
		ids = append(ids, x)
	}
	rows.Close()
	var out []RefundRequest
	for _, x := range ids {
		r, err := s.GetRefundRequest(ctx, x)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// GetRefund returns one channel refund. Errors: ErrRefundNotFound.
func (s *Store) GetRefund(ctx context.Context, refundNo string) (Refund, error) {
	f, err := scanRefund(s.db.QueryRowContext(ctx, `SELECT `+refundCols+` FROM channel_refunds r JOIN channel_payments p ON p.order_no = r.order_no
		WHERE r.refund_no = $1`, refundNo))
	if errors.Is(err, sql.ErrNoRows) {
		return Refund{}, vend.Errorf(ErrRefundNotFound, "%q", clip(refundNo))
	}
	if err != nil {
		return Refund{}, fmt.Errorf("store: get refund: %w", err)
	}
	return f, nil
}

// PendingRefunds returns up to limit refunds still pending that were
// created before before, oldest first: the janitor asks the provider.
func (s *Store) PendingRefunds(ctx context.Context, before time.Time, limit int) ([]Refund, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+refundCols+` FROM channel_refunds r JOIN channel_payments p ON p.order_no = r.order_no
		WHERE r.state = 'pending' AND r.created_ms < $1 ORDER BY r.created_ms LIMIT $2`, before.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: pending refunds: %w", err)
	}
	defer rows.Close()
	var out []Refund
	for rows.Next() {
		f, err := scanRefund(rows)
		if err != nil {
			return nil, fmt.Errorf("store: pending refunds: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// RefundUpdate is what a channel reports of a refund.
type RefundUpdate struct {
	Channel          string
	RefundNo         string
	State            RefundState // succeeded or failed (pending changes nothing but the provider's ID)
	ProviderRefundID string
	Amount           vend.Amount // what the provider says it refunded; zero when it did not say
	DoneAt           time.Time
	EventID          string // the provider's notification ID; empty for a query's answer
}

// ApplyRefund records a refund's outcome once: pending → succeeded, or
// pending → failed, which reverses the refund's posting (channel_clearing
// → the wallet or the operator's revenue, key
// chanrefundrev:<channel>:<refund_no>) and gives the order's refundable
// amount back, in the same transaction. A duplicate event or a repeated
// state changes nothing (changed == false). A state contradicting the
// recorded final one, or an amount other than the refund's, changes
// nothing, records an alert and is ErrRefundStateClash. Errors: ErrInput,
// ErrRefundNotFound (of another channel, too), ErrRefundStateClash.
func (s *Store) ApplyRefund(ctx context.Context, in RefundUpdate) (f Refund, changed bool, err error) {
	if in.Channel == "" || in.RefundNo == "" || len(in.EventID) > 200 {
		return Refund{}, false, vend.Errorf(ErrInput, "refund update needs a channel and a refund number")
	}
	var clash string
	err = s.tx(ctx, "apply refund", func(tx *sql.Tx) error {
		changed, clash = false, ""
		f, err = scanRefund(tx.QueryRowContext(ctx, `SELECT `+refundCols+` FROM channel_refunds r JOIN channel_payments p ON p.order_no = r.order_no
			WHERE r.refund_no = $1`+s.d.lockRow, in.RefundNo))
		if errors.Is(err, sql.ErrNoRows) || (err == nil && f.Channel != in.Channel) {
			return vend.Errorf(ErrRefundNotFound, "%s refund %q", in.Channel, clip(in.RefundNo))
		}
		if err != nil {
			return err
		}
		if in.EventID != "" {
			fresh, err := s.recordEvent(ctx, tx, in.Channel, in.EventID)
			if err != nil || !fresh {
				return err
			}
		}
		switch {
		case in.Amount.Minor != 0 && in.Amount != f.Amount:
			clash = fmt.Sprintf("refund %s reported as %s, recorded %s", f.RefundNo, in.Amount, f.Amount)
		case f.State != RefundPending && in.State != RefundPending && in.State != f.State:
			clash = fmt.Sprintf("refund %s reported %s, recorded %s", f.RefundNo, in.State, f.State)
		}
		if clash != "" {
			return s.alert(ctx, tx, in.Channel, f.OrderNo, ErrRefundStateClash.Code, clash)
		}
		prid := f.ProviderRefundID
		if prid == "" {
			prid = in.ProviderRefundID
		}
		if f.State != RefundPending || in.State == RefundPending {
			if prid != f.ProviderRefundID {
				_, err := tx.ExecContext(ctx, `UPDATE channel_refunds SET provider_refund_id = $1 WHERE refund_no = $2`, nullStr(prid), f.RefundNo)
				f.ProviderRefundID = prid
				return err
			}
			return nil
		}
		doneMs := in.DoneAt.UnixMilli()
		if in.DoneAt.IsZero() {
			doneMs = s.nowMs()
		}
		if _, err := tx.ExecContext(ctx, `UPDATE channel_refunds SET state = $1, provider_refund_id = $2, done_ms = $3 WHERE refund_no = $4`,
			string(in.State), nullStr(prid), doneMs, f.RefundNo); err != nil {
			return err
		}
		if in.State == RefundFailed {
			if _, err := tx.ExecContext(ctx, `UPDATE channel_payments SET refunded_minor = refunded_minor - $1 WHERE order_no = $2`,
				f.Amount.Minor, f.OrderNo); err != nil {
				return err
			}
			var owner string
			var kind AccountKind
			var session *string
			if f.Purpose == PurposeSessionRefund {
				kind = OperatorRevenue
				if err := tx.QueryRowContext(ctx, `SELECT operator_id FROM sessions WHERE id = $1`, f.Session.String()).Scan(&owner); err != nil {
					return err
				}
				sid := f.Session.String()
				session = &sid
			} else {
				kind = UserWallet
				if err := tx.QueryRowContext(ctx, `SELECT user_id FROM channel_payments WHERE order_no = $1`, f.OrderNo).Scan(&owner); err != nil {
					return err
				}
			}
			from, err := s.account(ctx, tx, ChannelClearing, f.Channel, f.Amount.Currency)
			if err != nil {
				return err
			}
			to, err := s.account(ctx, tx, kind, owner, f.Amount.Currency)
			if err != nil {
				return err
			}
			k := "chanrefundrev:" + f.Channel + ":" + f.RefundNo
			_, ok, err := s.post(ctx, tx, f.Amount.Currency, transfer{kind: TxChanRefundReversal, idemKey: k, reqHash: k, session: session,
				from: from, to: to, amount: f.Amount.Minor})
			if err != nil {
				return err
			}
			if !ok {
				return vend.Errorf(ErrPaymentState, "ledger already holds %s", k)
			}
		}
		changed = true
		f.State, f.ProviderRefundID, f.Done = in.State, prid, time.UnixMilli(doneMs).UTC()
		return nil
	})
	if err == nil && clash != "" {
		return f, false, vend.Errorf(ErrRefundStateClash, "%s", clash)
	}
	return f, changed, err
}
