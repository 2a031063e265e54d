package phoneapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"beaconvend/app-protocol/vend"
)

// CheckoutRequest pays for one session through a payment channel instead
// of the wallet (schema CheckoutRequest): a payer without an account (a
// guest, from the machine's web page or an app without sign-up) or a
// signed-in user who chooses to pay this session by card or QR. The cap's
// cost is held on the channel: a card is pre-authorized for it (captured
// at settlement for exactly what was delivered); WeChat Pay and Alipay
// are prepaid for it and the unused part is refunded to the same channel
// at settlement. The grant goes to the board only once the channel holds
// the money.
type CheckoutRequest struct {
	Device  DeviceID  `json:"device"`
	Machine MachineID `json:"machine"`
	Slot    MachineID `json:"slot,omitempty"` // vending only
	Cap     Cap       `json:"cap"`
	Source  string    `json:"source"` // a channel's PaymentSource id (not "wallet")
	// ExpectedPrice is the price the payer was shown; a different price
	// now is price.changed (409), nothing held.
	ExpectedPrice *Price `json:"expected_price,omitempty"`
	// ProximityID is the ID an app heard, binding the session to presence
	// at the machine. A web checkout has none: it is accepted only while
	// the machine's web checkout is on (a printed code proves nothing
	// about presence).
	ProximityID ProximityID `json:"proximity_id,omitempty"`
}

// CheckoutState is where a checkout stands (schema CheckoutState).
type CheckoutState string

// Checkout states. Done, Expired, Failed and Cancelled are final.
const (
	CheckoutAwaitingPayment CheckoutState = "awaiting_payment" // the payer has to pay (scan the code, confirm the card)
	CheckoutActionRequired  CheckoutState = "action_required"  // the card needs 3-D Secure (ClientSecret, NextAction)
	CheckoutStarting        CheckoutState = "starting"         // the channel holds the money; the grant is on its way to the machine
	CheckoutInSession       CheckoutState = "in_session"       // the session exists (Session, SessionState)
	CheckoutSettling        CheckoutState = "settling"         // the session ended; capture, cancel or refund of the rest under way
	CheckoutDone            CheckoutState = "done"             // settled with the channel: the receipt is final
	CheckoutExpired         CheckoutState = "expired"          // not paid in time: the order is closed, nothing taken
	CheckoutFailed          CheckoutState = "failed"           // the channel refused, or the machine could not start: everything returned (FailCode)
	CheckoutCancelled       CheckoutState = "cancelled"        // the payer cancelled before the session started: everything returned
)

// Final reports whether s is final.
func (s CheckoutState) Final() bool {
	switch s {
	case CheckoutDone, CheckoutExpired, CheckoutFailed, CheckoutCancelled:
		return true
	}
	return false
}

// Valid reports whether s is one of the states.
func (s CheckoutState) Valid() bool {
	switch s {
	case CheckoutAwaitingPayment, CheckoutActionRequired, CheckoutStarting, CheckoutInSession, CheckoutSettling:
		return true
	}
	return s.Final()
}

// Hold modes of a checkout (Checkout.Mode).
const (
	HoldModeAuthorize = "authorize" // a card pre-authorization, captured for what was delivered
	HoldModePrepay    = "prepay"    // a QR prepayment of the cap, the unused part refunded to the same channel
)

// Checkout is one session paid through a channel (schema Checkout).
type Checkout struct {
	ID      string        `json:"id"`
	State   CheckoutState `json:"state"`
	Device  DeviceID      `json:"device"`
	Machine MachineID     `json:"machine"`
	Slot    MachineID     `json:"slot,omitempty"`
	Source  string        `json:"source"`
	Mode    string        `json:"mode"`  // HoldModeAuthorize or HoldModePrepay
	Order   string        `json:"order"` // the channel order (Payment.Order)
	// Hold is what the channel holds: the cost of the cap at the price
	// the checkout was opened with.
	Hold     Amount `json:"hold"`
	CapUnits uint64 `json:"cap_units"`
	Price    Price  `json:"price"`
	// What the payer acts on while awaiting payment: a QR payload
	// (CodeURL) or a card's client secret, and NextAction ("3ds") when
	// the card needs authentication.
	CodeURL      string `json:"code_url,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	NextAction   string `json:"next_action,omitempty"`
	// Token is returned once, to the request that opened the checkout: it
	// lets a payer without an account read and stop this checkout
	// (header X-Checkout-Token). Keep it with the page.
	Token        string       `json:"token,omitempty"`
	Session      *SessionID   `json:"session,omitempty"` // once started
	SessionState SessionState `json:"session_state,omitempty"`
	Units        uint64       `json:"units"` // delivered so far (live) or in the end
	Captured     Amount       `json:"captured"`
	// Returned is what went back to the payer's channel: the uncaptured
	// part of an authorization, or the refunded part of a prepayment.
	Returned   Amount       `json:"returned"`
	Refunds    []RefundPart `json:"refunds,omitempty"`
	FailCode   string       `json:"fail_code,omitempty"` // why it failed (channel.refused, machine.busy, …)
	ReceiptURL string       `json:"receipt_url"`         // a link anyone holding it can open, no account needed
	CreatedAt  time.Time    `json:"created_at"`
	ExpiresAt  time.Time    `json:"expires_at"` // pay by
	Test       bool         `json:"test,omitempty"`
}

// Validate returns an error of kind invalid naming the bad field.
func (r *CheckoutRequest) Validate() error {
	if err := r.Device.Validate(); err != nil {
		return prefix("device", err)
	}
	if err := r.Machine.Validate(); err != nil {
		return prefix("machine", err)
	}
	if r.Slot != "" {
		if err := r.Slot.Validate(); err != nil {
			return prefix("slot", err)
		}
	}
	if err := r.Cap.Validate(); err != nil {
		return err
	}
	if err := validateSource(r.Source); err != nil {
		return err
	}
	if r.Source == "wallet" {
		return fieldErr("source", "a checkout pays through a channel, not the wallet")
	}
	if r.ExpectedPrice != nil {
		if err := r.ExpectedPrice.Validate(); err != nil {
			return prefix("expected_price", err)
		}
	}
	if r.ProximityID != "" {
		if err := r.ProximityID.Validate(); err != nil {
			return prefix("proximity_id", err)
		}
	}
	return nil
}

// CheckoutTokenHeader carries a checkout's token (Checkout.Token).
const CheckoutTokenHeader = "X-Checkout-Token"

// CreateCheckout opens a checkout (POST /v1/checkouts): with the client's
// bearer token when it has one, else as a guest, whose key must be a
// random secret of at least 16 characters (NewIdempotencyKey's are). A
// retry with the same key returns the same checkout and token. Errors:
// invalid (the request, the key), conflict (checkout.web_off,
// price.changed, machine.busy, channel.refused, …), not found, transient.
func (c *Client) CreateCheckout(ctx context.Context, key string, req *CheckoutRequest) (*Checkout, error) {
	if err := ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out Checkout
	if err := c.doCheckout(ctx, http.MethodPost, "/v1/checkouts", key, "", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetCheckout returns a checkout to its owner (the client's bearer) or
// to the holder of its token (token, "" for none). Errors: not found,
// unauthorized, transient.
func (c *Client) GetCheckout(ctx context.Context, id, token string) (*Checkout, error) {
	var out Checkout
	if err := c.doCheckout(ctx, http.MethodGet, "/v1/checkouts/"+url.PathEscape(id), "", token, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StopCheckout cancels a checkout before its session starts, or stops the
// machine during it. Errors: not found, unauthorized, transient.
func (c *Client) StopCheckout(ctx context.Context, id, token string) (*Checkout, error) {
	var out Checkout
	if err := c.doCheckout(ctx, http.MethodPost, "/v1/checkouts/"+url.PathEscape(id)+"/stop", "", token, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetCheckoutReceipt returns the checkout a receipt link names (the last
// path element of Checkout.ReceiptURL); no account needed. Errors: not
// found, transient.
func (c *Client) GetCheckoutReceipt(ctx context.Context, receiptToken string) (*Checkout, error) {
	var out Checkout
	if err := c.doCheckout(ctx, http.MethodGet, "/v1/receipts/"+url.PathEscape(receiptToken), "", "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// doCheckout is do with the checkout token header when token is set.
func (c *Client) doCheckout(ctx context.Context, method, path, key, token string, in, out any) error {
	req, err := c.newRequest(ctx, method, path, key, in)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set(CheckoutTokenHeader, token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrTransport, method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return c.apiError(resp)
	}
	b, err := readLimited(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return vend.Errorf(ErrResponse, "%s %s: %v", method, path, err)
	}
	return nil
}
