package stripecard

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v85"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// Statement lists the account's balance transactions created on day, a
// UTC calendar day ([00:00, 24:00) UTC: Stripe has no merchant time zone
// in its API), page by page (starting_after), with each transaction's
// source and the source's PaymentIntent expanded.
//
// A charge or payment transaction is a RowPayment of the order named by
// the intent's metadata order_no (the charge's own metadata when the
// intent carries none); a refund or payment_refund transaction is a
// RowRefund with the refund's metadata refund_no. A payment the cloud did
// not open (no order_no: a charge made in Stripe's dashboard) is a row
// whose order number is its PaymentIntent's ID (else its charge's), so
// that reconciliation reports it (missing_in_ours) instead of losing it;
// a refund without refund_no is known by its re_ ID. Amounts are the
// transaction's amount (negated for a refund) and Fee its fee, exact
// integer minor units of the transaction's currency (the channel's, or
// another, which reconciliation reports as a currency mismatch); the
// row's Status is the charge's or refund's status (succeeded, pending,
// failed). Other transaction types (payouts, adjustments, Stripe's own
// fees, refund failures that return money to the balance) are not rows
// of an order and are left out. Every transaction is checked: a valid
// currency, amount − fee = net, its creation time within the day, its
// source of the type its own type says; a transaction that fails a check
// is payments.ErrStatement naming it. The totals are the sums of the rows
// over every currency, as reconciliation sums them (Stripe's list carries
// no summary).
func (c *Channel) Statement(ctx context.Context, day payments.Day) (payments.Statement, error) {
	from := time.Date(day.Year, day.Month, day.Day, 0, 0, 0, 0, time.UTC)
	if y, m, d := from.Date(); y != day.Year || m != day.Month || d != day.Day {
		return payments.Statement{}, vend.Errorf(payments.ErrDay, "stripecard: statement: %d-%02d-%02d is not a calendar day", day.Year, int(day.Month), day.Day)
	}
	to := from.AddDate(0, 0, 1)
	op := "statement " + day.String()
	st := payments.Statement{Channel: c.name, Day: day, Currency: c.currency}
	lp := &stripe.BalanceTransactionListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: from.Unix(), LesserThan: to.Unix()}}
	lp.Limit = stripe.Int64(100)
	lp.AddExpand("data.source")
	lp.AddExpand("data.source.payment_intent")
	seen := map[string]bool{}
	for bt, err := range c.client.V1BalanceTransactions.List(ctx, lp).All(ctx) {
		if err != nil {
			return payments.Statement{}, c.mapErr(op, err)
		}
		if seen[bt.ID] {
			return payments.Statement{}, vend.Errorf(payments.ErrStatement, "stripecard: %s: transaction %s listed twice", op, bt.ID)
		}
		seen[bt.ID] = true
		row, ok, err := c.row(bt, from, to)
		if err != nil {
			return payments.Statement{}, vend.Errorf(payments.ErrStatement, "stripecard: %s: %v", op, err)
		}
		if !ok {
			continue
		}
		var sum *int64
		if row.Kind == payments.RowPayment {
			sum = &st.Payments
		} else {
			sum = &st.Refunds
		}
		var o1, o2 bool
		*sum, o1 = add(*sum, row.Amount.Minor)
		st.Fees, o2 = add(st.Fees, row.Fee)
		if !o1 || !o2 {
			return payments.Statement{}, vend.Errorf(payments.ErrStatement, "stripecard: %s: totals overflow at transaction %s", op, bt.ID)
		}
		st.Rows = append(st.Rows, row)
	}
	return st, nil
}

// row converts one balance transaction; ok is false for a type that is
// not a row of an order.
func (c *Channel) row(bt *stripe.BalanceTransaction, from, to time.Time) (row payments.StatementRow, ok bool, err error) {
	if bt == nil || bt.ID == "" {
		return row, false, fmt.Errorf("transaction without id")
	}
	var kind payments.RowKind
	switch bt.Type {
	case stripe.BalanceTransactionTypeCharge, stripe.BalanceTransactionTypePayment:
		kind = payments.RowPayment
	case stripe.BalanceTransactionTypeRefund, stripe.BalanceTransactionTypePaymentRefund:
		kind = payments.RowRefund
	default:
		return row, false, nil
	}
	at := time.Unix(bt.Created, 0).UTC()
	if at.Before(from) || !at.Before(to) {
		return row, false, fmt.Errorf("transaction %s created %s, outside the day", bt.ID, at.Format(time.RFC3339))
	}
	cur := vend.Currency(strings.ToUpper(string(bt.Currency)))
	if cur.Validate() != nil {
		return row, false, fmt.Errorf("transaction %s in currency %q", bt.ID, bt.Currency)
	}
	if net, ok := add(bt.Amount, -bt.Fee); !ok || bt.Fee == math.MinInt64 || net != bt.Net {
		return row, false, fmt.Errorf("transaction %s: amount %d − fee %d ≠ net %d", bt.ID, bt.Amount, bt.Fee, bt.Net)
	}
	row = payments.StatementRow{Kind: kind, At: at, Fee: bt.Fee}
	if bt.Source == nil {
		return row, false, fmt.Errorf("transaction %s (%s) without source", bt.ID, bt.Type)
	}
	switch kind {
	case payments.RowPayment:
		ch := bt.Source.Charge
		if ch == nil || bt.Source.Type != stripe.BalanceTransactionSourceTypeCharge {
			return row, false, fmt.Errorf("transaction %s (%s): source %q is not an expanded charge", bt.ID, bt.Type, bt.Source.Type)
		}
		if bt.Amount <= 0 {
			return row, false, fmt.Errorf("transaction %s: charge amount %d, want > 0", bt.ID, bt.Amount)
		}
		row.Amount = vend.Amount{Minor: bt.Amount, Currency: cur}
		row.Status = string(ch.Status)
		row.ProviderTxID = ch.ID
		row.OrderNo = ch.Metadata[MetaOrderNo]
		if pi := ch.PaymentIntent; pi != nil && pi.ID != "" {
			row.ProviderTxID = pi.ID
			if no := pi.Metadata[MetaOrderNo]; no != "" {
				row.OrderNo = no
			}
		}
		if row.OrderNo == "" {
			row.OrderNo = row.ProviderTxID // not ours: reported, not lost
		}
	case payments.RowRefund:
		rf := bt.Source.Refund
		if rf == nil || bt.Source.Type != stripe.BalanceTransactionSourceTypeRefund {
			return row, false, fmt.Errorf("transaction %s (%s): source %q is not an expanded refund", bt.ID, bt.Type, bt.Source.Type)
		}
		if bt.Amount >= 0 {
			return row, false, fmt.Errorf("transaction %s: refund amount %d, want < 0", bt.ID, bt.Amount)
		}
		row.Amount = vend.Amount{Minor: -bt.Amount, Currency: cur}
		row.Status = string(rf.Status)
		row.ProviderRefundID = rf.ID
		row.RefundNo = rf.Metadata[MetaRefundNo]
		row.OrderNo = rf.Metadata[MetaOrderNo]
		if pi := rf.PaymentIntent; pi != nil && pi.ID != "" {
			row.ProviderTxID = pi.ID
			if no := pi.Metadata[MetaOrderNo]; no != "" {
				row.OrderNo = no
			}
		}
	}
	return row, true, nil
}

// add returns a+b and whether it did not overflow.
func add(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}
