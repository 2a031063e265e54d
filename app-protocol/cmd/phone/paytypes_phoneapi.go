package main

// The payment types and client of app-protocol/phoneapi under the names
// the payment steps use. (Built in place of paytypes_tmp.go.)

import (
	"errors"
	"net/http"

	"beaconvend/app-protocol/phoneapi"
)

// Payment types of the phone API.
type (
	PaymentState       = phoneapi.PaymentState
	Payment            = phoneapi.Payment
	PaymentList        = phoneapi.PaymentList
	ListPaymentsParams = phoneapi.ListPaymentsParams
	WithdrawalRequest  = phoneapi.WithdrawalRequest
	Withdrawal         = phoneapi.Withdrawal
	WithdrawalState    = phoneapi.WithdrawalState
	RefundPart         = phoneapi.RefundPart
	RefundState        = phoneapi.RefundState
)

// The states of a payment.
const (
	PaymentPending = phoneapi.PaymentPending
	PaymentPaid    = phoneapi.PaymentPaid
	PaymentClosed  = phoneapi.PaymentClosed
	PaymentFailed  = phoneapi.PaymentFailed

	RefundPending   = phoneapi.RefundPending
	RefundSucceeded = phoneapi.RefundSucceeded
	RefundFailed    = phoneapi.RefundFailed

	WithdrawalPending   = phoneapi.WithdrawalPending
	WithdrawalSucceeded = phoneapi.WithdrawalSucceeded
	WithdrawalFailed    = phoneapi.WithdrawalFailed
	WithdrawalPartial   = phoneapi.WithdrawalPartial
)

// receiptRefunds is what an operator refunded of a session's charge, and
// its parts through the payer's channels.
func receiptRefunds(r *phoneapi.Receipt) (phoneapi.Amount, []RefundPart) {
	return r.Refunded, r.Refunds
}

// alternativesOf returns the payment sources a source.limit error names
// as able to take the amount.
func alternativesOf(err error) []string {
	var ae *phoneapi.APIError
	if errors.As(err, &ae) {
		return ae.Alternatives
	}
	return nil
}

// newPayer returns the payment part of the phone API: the client itself.
func newPayer(c *phoneapi.Client, _ string, _ *http.Client) payer { return c }
