package paytest

import (
	"context"
	"fmt"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// Card is a fake card channel that holds money (payments.HoldChannel):
// Authorize authorizes the order at once, or, with Require3DS, leaves it
// action_required until the test completes the authentication
// (Authenticate); Capture and Cancel act as a provider does (a capture
// of more than was authorized, of a cancelled or lapsed order, is
// refused); Lapse lets an authorization lapse. Like Channel it is a
// hand-written, in-process fake for the service's tests; the real card
// channel is tested against stripe-mock and a stateful stand-in.
type Card struct {
	Channel
	// Validity is how long an authorization lasts (AuthorizationValidity);
	// 7 days when zero.
	Validity time.Duration
	// Require3DS makes every authorization need 3-D Secure first.
	Require3DS bool
}

var _ payments.HoldChannel = (*Card)(nil)

// Source returns a card source named after ID.
func (c *Card) Source() phoneapi.PaymentSource {
	return phoneapi.PaymentSource{ID: c.ID, Kind: phoneapi.SourceCard, Name: "Test card " + c.ID}
}

// AuthorizationValidity returns Validity (7 days by default).
func (c *Card) AuthorizationValidity() time.Duration {
	if c.Validity > 0 {
		return c.Validity
	}
	return 7 * 24 * time.Hour
}

// Authorize records the order with manual capture (a retry with the same
// number returns the same action) and authorizes it at once, unless
// Require3DS.
func (c *Card) Authorize(_ context.Context, o payments.Order) (payments.Action, error) {
	if err := c.begin("authorize", o.No); err != nil {
		return payments.Action{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.orders[o.No]
	if ok && prev.o.Amount != o.Amount {
		return payments.Action{}, vend.Errorf(payments.ErrRefused, "%s: idempotency key reused for %s", c.ID, o.No)
	}
	act := payments.Action{ClientSecret: "pi_" + o.No + "_secret", ProviderRef: "pi_" + o.No}
	if !ok {
		st := payments.Status{OrderNo: o.No, ProviderTxID: "pi_" + o.No, State: payments.PayAuthorized, Amount: o.Amount,
			AuthExpiresAt: c.now().Add(c.AuthorizationValidity())}
		if c.Require3DS {
			st = payments.Status{OrderNo: o.No, ProviderTxID: "pi_" + o.No, State: payments.PayActionRequired, ClientSecret: act.ClientSecret}
		}
		prev = &order{o: o, status: st}
		c.orders[o.No] = prev
	}
	if prev.status.State == payments.PayActionRequired {
		act.NextAction = payments.NextAction3DS
	}
	return act, nil
}

// Authenticate completes the payer's 3-D Secure step: the order is
// authorized now. An order not waiting for it is an error.
func (c *Card) Authenticate(no string) (payments.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.orders[no]
	if !ok || o.status.State != payments.PayActionRequired {
		return payments.Status{}, fmt.Errorf("paytest: order %s is not waiting for 3-D Secure", no)
	}
	if !o.o.ExpiresAt.IsZero() && c.now().After(o.o.ExpiresAt) {
		return payments.Status{}, fmt.Errorf("paytest: order %s expired", no)
	}
	o.status = payments.Status{OrderNo: no, ProviderTxID: o.status.ProviderTxID, State: payments.PayAuthorized, Amount: o.o.Amount,
		AuthExpiresAt: c.now().Add(c.AuthorizationValidity())}
	return o.status, nil
}

// Lapse lets an authorization lapse (the provider releases it): the
// order is closed and can no longer be captured.
func (c *Card) Lapse(no string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.orders[no]
	if !ok || o.status.State != payments.PayAuthorized {
		return fmt.Errorf("paytest: order %s is not authorized", no)
	}
	o.status = payments.Status{OrderNo: no, ProviderTxID: o.status.ProviderTxID, State: payments.PayClosed}
	return nil
}

// Capture captures amount of an authorized order; a retry after a
// capture returns the captured status (another amount is refused).
func (c *Card) Capture(_ context.Context, no string, amount vend.Amount) (payments.Status, error) {
	if err := c.begin("capture", no); err != nil {
		return payments.Status{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.orders[no]
	switch {
	case !ok:
		return payments.Status{}, vend.Errorf(payments.ErrRefused, "%s: no such payment intent %s", c.ID, no)
	case o.status.State == payments.PayPaid && o.status.Amount == amount:
		return o.status, nil
	case o.status.State != payments.PayAuthorized:
		return payments.Status{}, vend.Errorf(payments.ErrRefused, "%s: payment intent %s is %s", c.ID, no, o.status.State)
	case amount.Minor <= 0 || amount.Currency != o.o.Amount.Currency || amount.Minor > o.o.Amount.Minor:
		return payments.Status{}, vend.Errorf(payments.ErrRefused, "%s: amount_to_capture %s of %s", c.ID, amount, o.o.Amount)
	}
	o.status = payments.Status{OrderNo: no, ProviderTxID: o.status.ProviderTxID, State: payments.PayPaid, Amount: amount, PaidAt: c.now()}
	return o.status, nil
}

// Cancel releases an authorization (or a pending order) in full;
// cancelling a cancelled order returns its status, a captured one is
// refused.
func (c *Card) Cancel(_ context.Context, no string) (payments.Status, error) {
	if err := c.begin("cancel", no); err != nil {
		return payments.Status{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.orders[no]
	if !ok {
		return payments.Status{OrderNo: no, State: payments.PayClosed}, nil
	}
	if o.status.State == payments.PayPaid {
		return payments.Status{}, vend.Errorf(payments.ErrRefused, "%s: payment intent %s is captured", c.ID, no)
	}
	o.status = payments.Status{OrderNo: no, ProviderTxID: o.status.ProviderTxID, State: payments.PayClosed}
	return o.status, nil
}

// Create is refused: a card channel takes money for a top-up through
// Authorize and Capture in this fake.
func (c *Card) Create(_ context.Context, o payments.Order) (payments.Action, error) {
	return payments.Action{}, vend.Errorf(payments.ErrRefused, "%s: top-ups are not supported by the fake card", c.ID)
}

// Status returns the provider's status of an order, for assertions.
func (c *Channel) Status(no string) (payments.Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.orders[no]
	if !ok {
		return payments.Status{}, false
	}
	return o.status, true
}
