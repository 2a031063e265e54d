package payments

import (
	"context"
	"time"

	"beaconvend/app-protocol/vend"
)

// States of an order only a HoldChannel reports.
const (
	// PayAuthorized: the payer's card is authorized for the order's amount
	// and nothing is captured yet (Stripe requires_capture). The money is
	// the payer's until Capture; Cancel, or the authorization's lapse,
	// releases it.
	PayAuthorized PayState = "authorized"
	// PayActionRequired: the payer must act before the authorization
	// completes (3-D Secure: Stripe requires_action); the phone or page
	// hands Action.ClientSecret to the provider's SDK.
	PayActionRequired PayState = "action_required"
)

// Next actions a payer may be asked for (Action.NextAction).
const (
	NextActionNone = ""
	NextAction3DS  = "3ds" // authenticate the card with the issuer (3-D Secure) through the provider's SDK
)

// HoldChannel is a channel that can authorize an amount now and capture
// part of it later: card pre-authorization for one session (Stripe
// PaymentIntent with capture_method=manual). The cloud authorizes the
// session's cap, sends the grant only once the order is PayAuthorized,
// and at settlement captures exactly the metered amount (Capture) or, for
// nothing delivered, releases it all (Cancel). Incremental authorization
// is never used (unavailable under SCA).
//
// Query reports PayActionRequired, PayAuthorized (Status.Amount = the
// amount authorized, Status.AuthExpiresAt = when it lapses), PayPaid
// after a capture (Status.Amount = the amount captured) or PayClosed
// after a cancel or lapse.
type HoldChannel interface {
	Channel
	// Authorize opens an order for o.Amount with manual capture. Like
	// Create, a retry with the same o.No must not open a second one.
	Authorize(ctx context.Context, o Order) (Action, error)
	// Capture captures amount (0 < amount ≤ authorized) of an authorized
	// order, the rest of the authorization being released by the
	// provider. A retry after a capture succeeded returns the captured
	// status; a capture of a cancelled or lapsed order is ErrRefused.
	Capture(ctx context.Context, orderNo string, amount vend.Amount) (Status, error)
	// Cancel releases an authorization in full; a pending (not yet
	// authorized) order is cancelled too. Cancelling a cancelled order is
	// not an error; cancelling a captured one is ErrRefused.
	Cancel(ctx context.Context, orderNo string) (Status, error)
	// AuthorizationValidity is how long an authorization is held before
	// the provider lets it lapse (7 days for card-not-present by default,
	// 5 days for Visa merchant-initiated; configurable per channel). The
	// cloud captures or cancels well inside it and alerts before it lapses.
	AuthorizationValidity() time.Duration
}
