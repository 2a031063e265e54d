package reconcile

import (
	"fmt"
	"strings"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/store"
)

// Kind is the verdict on one row.
type Kind string

// The kinds of outcome (values of Kind and of Outcome.Kind). Every statement row gets exactly one; so does
// every record of ours attributed to the day that no statement row names.
const (
	// Matched: the statement row and our record agree (amount, currency,
	// state, and the ledger credited or debited it).
	Matched = "matched"
	// MissingInOurs: the provider moved money we never booked: a paid row
	// for an order we do not know, or whose record is not paid, or whose
	// credit is not in the ledger; a refund row we have no record of.
	MissingInOurs = "missing_in_ours"
	// MissingInTheirs: we credited an order (or booked a refund) that the
	// statement does not list, nor the neighbouring day's when the record
	// lies within the grace window of a day boundary.
	MissingInTheirs = "missing_in_theirs"
	// AmountMismatch: both sides have it with different amounts (or the
	// ledger moved another amount than the record says).
	AmountMismatch = "amount_mismatch"
	// StatusMismatch: both sides have it in states that disagree (the
	// provider closed what we credited, our refund is pending or failed
	// while the provider returned the money, the provider's transaction
	// ID is another one).
	StatusMismatch = "status_mismatch"
	// CurrencyMismatch: both sides have it in different currencies.
	CurrencyMismatch = "currency_mismatch"
	// Duplicate: a second (third…) statement row for the same order or
	// refund.
	Duplicate = "duplicate"
	// Deferred: a record of ours near a day boundary is absent from this
	// day's statement and the neighbouring day's statement is not
	// available yet; the run is provisional until it is.
	Deferred = "deferred"
)

// Kinds lists every kind of outcome, in report order.
var Kinds = []Kind{Matched, MissingInOurs, MissingInTheirs, AmountMismatch, StatusMismatch, CurrencyMismatch, Duplicate, Deferred}

// The actions an outcome calls for.
const (
	ActionNone           = ""                 // matched
	ActionQueryAndCredit = "query_and_credit" // missing in ours: query the order at the provider, then credit it, or refund it
	ActionFreeze         = "freeze"           // missing in theirs (a payment): alert, and freeze the credited amount until resolved
	ActionQueryRefund    = "query_refund"     // our refund's state disagrees: ask the provider for it
	ActionReview         = "review"           // an operator looks: amounts, currencies, duplicates, unknown refunds
	ActionWait           = "wait"             // deferred: re-run once the neighbouring statement is out
)

// Outcome is the verdict on one statement row or one record of ours, as
// stored.
type Outcome = store.ReconOutcome

// Records is what Match compares a statement with: our payment and refund
// records, and which of them the day owns by their own times.
type Records struct {
	// Payments holds every record a payment row names and every record of
	// DayPayments, by order number.
	Payments map[string]store.ReconPayment
	// Refunds holds every record a refund row names (by refund number or
	// provider refund ID) and every record of DayRefunds, by refund
	// number.
	Refunds map[string]store.ReconRefund
	// DayPayments are the order numbers paid within the day (by our paid
	// time, in the provider's time zone), in order.
	DayPayments []string
	// DayRefunds are the refund numbers completed within the day.
	DayRefunds []string
}

// notDone are the provider statuses (WeChat Pay, Alipay, and the
// normalized payments states) under which a statement row did not move
// money. Any other status text (SUCCESS, REFUND, TRADE_SUCCESS,
// TRADE_FINISHED, …) counts as done.
var notDone = map[string]bool{
	"CLOSED": true, "REVOKED": true, "PAYERROR": true, "NOTPAY": true, "USERPAYING": true,
	"TRADE_CLOSED": true, "WAIT_BUYER_PAY": true, "PROCESSING": true, "ABNORMAL": true,
	"FAIL": true, "FAILED": true, "PENDING": true,
}

func rowDone(status string) bool { return !notDone[strings.ToUpper(strings.TrimSpace(status))] }

// rowIdentity is what makes two statement rows the same row: the order
// number for a payment, the refund number (else the provider refund ID)
// for a refund.
func rowIdentity(r payments.StatementRow) string {
	if r.Kind == payments.RowRefund {
		if r.RefundNo != "" {
			return "r:" + r.RefundNo
		}
		return "r#" + r.ProviderRefundID
	}
	return "p:" + r.OrderNo
}

// Match compares the statement's rows with our records and returns one
// outcome per statement row, in row order, then one per record of the
// day (DayPayments, then DayRefunds) that no row named, each
// MissingInTheirs. It reads nothing and writes nothing; Seq is left to
// the caller. st must have passed Validate.
func Match(st payments.Statement, recs Records) []Outcome {
	refundByProvider := map[string]string{}
	for no, r := range recs.Refunds {
		if r.ProviderRefundID != "" {
			refundByProvider[r.ProviderRefundID] = no
		}
	}
	seen := map[string]bool{}
	namedPayment := map[string]bool{}
	namedRefund := map[string]bool{}
	out := make([]Outcome, 0, len(st.Rows)+len(recs.DayPayments)+len(recs.DayRefunds))
	for i, row := range st.Rows {
		amt := row.Amount
		o := Outcome{RowKind: string(row.Kind), StmtRow: i, OrderNo: row.OrderNo, RefundNo: row.RefundNo,
			At: row.At, TheirAmount: &amt, TheirStatus: row.Status, Fee: row.Fee}
		if row.Kind == payments.RowRefund {
			o.ProviderID = row.ProviderRefundID
		} else {
			o.ProviderID = row.ProviderTxID
		}
		if row.Kind == payments.RowRefund {
			no := row.RefundNo
			rec, ok := recs.Refunds[no]
			if !ok && row.ProviderRefundID != "" {
				if n, found := refundByProvider[row.ProviderRefundID]; found {
					no, rec, ok = n, recs.Refunds[n], true
				}
			}
			id := rowIdentity(row)
			if ok {
				id = "r:" + no // rows naming one refund by either number are the same row
			}
			dup := seen[id]
			seen[id] = true
			if ok {
				namedRefund[no] = true
				ours := rec.Amount
				o.OurAmount, o.OurStatus, o.RefundNo = &ours, rec.State, rec.RefundNo
				if o.OrderNo == "" {
					o.OrderNo = rec.OrderNo
				}
			}
			switch {
			case dup:
				o.Kind, o.Action, o.Detail = Duplicate, ActionReview, "the statement lists this refund more than once"
			default:
				judgeRefund(&o, row, rec, ok)
			}
		} else {
			id := rowIdentity(row)
			dup := seen[id]
			seen[id] = true
			rec, ok := recs.Payments[row.OrderNo]
			if ok {
				namedPayment[row.OrderNo] = true
				ours := rec.Amount
				o.OurAmount, o.OurStatus = &ours, rec.State
			}
			switch {
			case dup:
				o.Kind, o.Action, o.Detail = Duplicate, ActionReview, "the statement lists this order more than once"
			default:
				judgePayment(&o, row, rec, ok)
			}
		}
		out = append(out, o)
	}
	for _, no := range recs.DayPayments {
		if namedPayment[no] {
			continue
		}
		namedPayment[no] = true // a number listed twice is still one record
		rec := recs.Payments[no]
		ours := rec.Amount
		out = append(out, Outcome{Kind: MissingInTheirs, RowKind: string(payments.RowPayment), StmtRow: -1,
			OrderNo: no, ProviderID: rec.ProviderTxID, At: rec.PaidAt, OurAmount: &ours, OurStatus: rec.State,
			Action: ActionFreeze, Detail: "credited by us, absent from the provider's statement"})
	}
	for _, no := range recs.DayRefunds {
		if namedRefund[no] {
			continue
		}
		namedRefund[no] = true
		rec := recs.Refunds[no]
		ours := rec.Amount
		out = append(out, Outcome{Kind: MissingInTheirs, RowKind: string(payments.RowRefund), StmtRow: -1,
			OrderNo: rec.OrderNo, RefundNo: no, ProviderID: rec.ProviderRefundID, At: rec.DoneAt, OurAmount: &ours,
			OurStatus: rec.State, Action: ActionReview, Detail: "refunded by us, absent from the provider's statement"})
	}
	return out
}

func judgePayment(o *Outcome, row payments.StatementRow, rec store.ReconPayment, ok bool) {
	switch {
	case !ok:
		o.Kind, o.Action, o.Detail = MissingInOurs, ActionQueryAndCredit, "paid at the provider, unknown to us"
	case !rowDone(row.Status):
		if rec.State == "paid" {
			o.Kind, o.Action, o.Detail = StatusMismatch, ActionReview, fmt.Sprintf("the provider says %s, we credited it", row.Status)
		} else {
			o.Kind, o.Detail = Matched, "not paid on either side"
		}
	case rec.State != "paid":
		o.Kind, o.Action, o.Detail = MissingInOurs, ActionQueryAndCredit, "paid at the provider, "+rec.State+" in our records: never credited"
	case rec.Cleared == 0:
		o.Kind, o.Action, o.Detail = MissingInOurs, ActionQueryAndCredit, "paid in our records, but the ledger has no credit for it"
	case row.Amount.Currency != rec.Amount.Currency:
		o.Kind, o.Action, o.Detail = CurrencyMismatch, ActionReview, fmt.Sprintf("the provider says %s, we say %s", row.Amount.Currency, rec.Amount.Currency)
	case row.Amount.Minor != rec.Amount.Minor:
		o.Kind, o.Action, o.Detail = AmountMismatch, ActionReview, fmt.Sprintf("the provider says %s, we say %s",
			payments.FormatMinor(row.Amount.Minor), payments.FormatMinor(rec.Amount.Minor))
	case rec.Cleared != rec.Amount.Minor:
		o.Kind, o.Action, o.Detail = AmountMismatch, ActionReview, fmt.Sprintf("the ledger credited %s of %s",
			payments.FormatMinor(rec.Cleared), payments.FormatMinor(rec.Amount.Minor))
	case row.ProviderTxID != "" && rec.ProviderTxID != "" && row.ProviderTxID != rec.ProviderTxID:
		o.Kind, o.Action, o.Detail = StatusMismatch, ActionReview, "the provider's transaction ID is "+rec.ProviderTxID+" in our records"
	default:
		o.Kind = Matched
	}
}

func judgeRefund(o *Outcome, row payments.StatementRow, rec store.ReconRefund, ok bool) {
	switch {
	case !ok:
		o.Kind, o.Action, o.Detail = MissingInOurs, ActionReview, "refunded at the provider, unknown to us"
	case !rowDone(row.Status):
		if rec.State == "succeeded" {
			o.Kind, o.Action, o.Detail = StatusMismatch, ActionQueryRefund, fmt.Sprintf("the provider says %s, we say succeeded", row.Status)
		} else {
			o.Kind, o.Detail = Matched, "not refunded on either side yet"
		}
	case rec.State != "succeeded":
		o.Kind, o.Action, o.Detail = StatusMismatch, ActionQueryRefund, "refunded at the provider, "+rec.State+" in our records"
	case rec.Cleared == 0:
		o.Kind, o.Action, o.Detail = MissingInOurs, ActionReview, "refunded in our records, but the ledger has no debit for it"
	case row.Amount.Currency != rec.Amount.Currency:
		o.Kind, o.Action, o.Detail = CurrencyMismatch, ActionReview, fmt.Sprintf("the provider says %s, we say %s", row.Amount.Currency, rec.Amount.Currency)
	case row.Amount.Minor != rec.Amount.Minor:
		o.Kind, o.Action, o.Detail = AmountMismatch, ActionReview, fmt.Sprintf("the provider says %s, we say %s",
			payments.FormatMinor(row.Amount.Minor), payments.FormatMinor(rec.Amount.Minor))
	case rec.Cleared != rec.Amount.Minor:
		o.Kind, o.Action, o.Detail = AmountMismatch, ActionReview, fmt.Sprintf("the ledger debited %s of %s",
			payments.FormatMinor(rec.Cleared), payments.FormatMinor(rec.Amount.Minor))
	case row.OrderNo != "" && row.OrderNo != rec.OrderNo:
		o.Kind, o.Action, o.Detail = StatusMismatch, ActionReview, "refund of order "+rec.OrderNo+" in our records"
	case row.ProviderRefundID != "" && rec.ProviderRefundID != "" && row.ProviderRefundID != rec.ProviderRefundID:
		o.Kind, o.Action, o.Detail = StatusMismatch, ActionReview, "the provider's refund ID is "+rec.ProviderRefundID+" in our records"
	default:
		o.Kind = Matched
	}
}

// Validate checks a statement before it is compared: that it is the
// channel's and the day's, that its currency and every row are well
// formed, and that its summary (payments, refunds, fees) equals the sum
// of its rows. The sums are over every row whatever its currency, as the
// providers' own summaries are. Errors wrap ErrStatement and name the
// first thing wrong.
func Validate(st payments.Statement, channel string, day payments.Day) error {
	if st.Channel != channel {
		return vend.Errorf(ErrStatement, "statement of channel %q, want %q", st.Channel, channel)
	}
	if st.Day != day {
		return vend.Errorf(ErrStatement, "statement of %s, want %s", st.Day, day)
	}
	if err := st.Currency.Validate(); err != nil {
		return vend.Errorf(ErrStatement, "statement currency: %v", err)
	}
	var pay, ref, fee int64
	for i, r := range st.Rows {
		if r.Amount.Minor <= 0 {
			return vend.Errorf(ErrStatement, "row %d: amount %d minor units, want > 0", i, r.Amount.Minor)
		}
		if err := r.Amount.Currency.Validate(); err != nil {
			return vend.Errorf(ErrStatement, "row %d: %v", i, err)
		}
		ok := true
		switch r.Kind {
		case payments.RowPayment:
			if r.OrderNo == "" {
				return vend.Errorf(ErrStatement, "row %d: payment without an order number", i)
			}
			pay, ok = add(pay, r.Amount.Minor)
		case payments.RowRefund:
			if r.RefundNo == "" && r.ProviderRefundID == "" {
				return vend.Errorf(ErrStatement, "row %d: refund without a refund number", i)
			}
			ref, ok = add(ref, r.Amount.Minor)
		default:
			return vend.Errorf(ErrStatement, "row %d: kind %q", i, r.Kind)
		}
		if !ok {
			return vend.Errorf(ErrStatement, "row %d: totals overflow", i)
		}
		if fee, ok = add(fee, r.Fee); !ok {
			return vend.Errorf(ErrStatement, "row %d: fee total overflows", i)
		}
	}
	if pay != st.Payments {
		return vend.Errorf(ErrStatement, "summary says payments %s, the rows sum to %s", payments.FormatMinor(st.Payments), payments.FormatMinor(pay))
	}
	if ref != st.Refunds {
		return vend.Errorf(ErrStatement, "summary says refunds %s, the rows sum to %s", payments.FormatMinor(st.Refunds), payments.FormatMinor(ref))
	}
	if fee != st.Fees {
		return vend.Errorf(ErrStatement, "summary says fees %s, the rows sum to %s", payments.FormatMinor(st.Fees), payments.FormatMinor(fee))
	}
	return nil
}

func add(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}
