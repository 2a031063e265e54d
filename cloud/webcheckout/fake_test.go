package webcheckout_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/webcheckout"
)

// fakeBackend is a hand-written stand-in for the service, for tests of
// the pages' own rules (forms, tokens, errors); the end-to-end tests run
// the real service. It keeps checkouts in memory and counts calls.
type fakeBackend struct {
	mu        sync.Mutex
	offer     service.MachineOffer
	checkouts map[string]phoneapi.Checkout
	byKey     map[string]string
	calls     int
	lastReq   phoneapi.CheckoutRequest
	err       error // returned by Checkout when set
}

var _ webcheckout.Backend = (*fakeBackend)(nil)

func newFake() *fakeBackend {
	return &fakeBackend{
		offer: service.MachineOffer{Device: "dev1", Machine: "tap1", Name: "Tap 1, Hall B", Kind: vend.KindWater, Unit: vend.UnitML,
			Price: vend.Price{Minor: 50, Per: 1000}, Currency: "CNY", Online: true, State: "idle", WebCheckout: true,
			Sources: []phoneapi.PaymentSource{{ID: "wallet", Kind: phoneapi.SourceWallet}, {ID: "wechatpay", Kind: phoneapi.SourceWeChatPay, Name: "WeChat Pay"}, {ID: "alipay", Kind: phoneapi.SourceAlipay, Name: "Alipay"}}},
		checkouts: map[string]phoneapi.Checkout{}, byKey: map[string]string{},
	}
}

func (f *fakeBackend) MachineOffer(ctx context.Context, device, machine string) (service.MachineOffer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if device != f.offer.Device || machine != f.offer.Machine {
		return service.MachineOffer{}, vend.E(vend.NotFound, "machine.not_found", "service: no such machine")
	}
	return f.offer, nil
}

func (f *fakeBackend) Checkout(ctx context.Context, p service.Payer, key string, req phoneapi.CheckoutRequest) (phoneapi.Checkout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.lastReq = req
	if f.err != nil {
		return phoneapi.Checkout{}, f.err
	}
	price := f.offer.Price // the service's rule: the shown price must be the price now
	for _, sl := range f.offer.Slots {
		if sl.ID == string(req.Slot) {
			price = sl.Price
		}
	}
	if req.ExpectedPrice != nil && *req.ExpectedPrice != price {
		return phoneapi.Checkout{}, vend.E(vend.Conflict, "price.changed", "service: the price has changed")
	}
	if id, ok := f.byKey[key]; ok {
		co := f.checkouts[id]
		return co, nil
	}
	id := fmt.Sprintf("co%d", len(f.checkouts)+1)
	co := phoneapi.Checkout{ID: id, State: phoneapi.CheckoutAwaitingPayment, Device: req.Device, Machine: req.Machine, Source: req.Source,
		Mode: phoneapi.HoldModePrepay, Order: "o-" + id, Hold: phoneapi.Amount{Minor: 100, Currency: "CNY"}, Price: f.offer.Price,
		CodeURL: "weixin://wxpay/bizpayurl?pr=" + id, Token: "tok-" + id, ReceiptURL: "http://x/r/rcpt-" + id,
		CreatedAt: time.Unix(1700000000, 0), ExpiresAt: time.Unix(1700000900, 0)}
	if req.Source == "card" { // a card hold: the payer confirms with the client secret, not a code
		co.CodeURL, co.ClientSecret, co.Mode = "", "pi_secret_"+id, phoneapi.HoldModeAuthorize
	}
	f.checkouts[id], f.byKey[key] = co, id
	return co, nil
}

func (f *fakeBackend) get(id string, a service.CheckoutAccess) (phoneapi.Checkout, error) {
	co, ok := f.checkouts[id]
	if !ok {
		return co, vend.E(vend.NotFound, "checkout.not_found", "service: no such checkout")
	}
	if a.Token != co.Token {
		return co, vend.E(vend.Unauthorized, "checkout.token", "service: wrong checkout token")
	}
	co.Token = ""
	return co, nil
}

func (f *fakeBackend) GetCheckout(ctx context.Context, id string, a service.CheckoutAccess) (phoneapi.Checkout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.get(id, a)
}

func (f *fakeBackend) StopCheckout(ctx context.Context, id string, a service.CheckoutAccess) (phoneapi.Checkout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	co, err := f.get(id, a)
	if err != nil {
		return co, err
	}
	co.State = phoneapi.CheckoutCancelled
	c := f.checkouts[id]
	c.State = co.State
	f.checkouts[id] = c
	return co, nil
}

func (f *fakeBackend) WatchCheckout(ctx context.Context, id string, a service.CheckoutAccess) (<-chan phoneapi.Checkout, error) {
	co, err := f.GetCheckout(ctx, id, a)
	if err != nil {
		return nil, err
	}
	ch := make(chan phoneapi.Checkout, 1)
	ch <- co
	return ch, nil // stays open until ctx ends, as the service's does for a live checkout
}

func (f *fakeBackend) CheckoutReceipt(ctx context.Context, token string) (phoneapi.Checkout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, co := range f.checkouts {
		if co.ReceiptURL == "http://x/r/"+token {
			co.Token = ""
			return co, nil
		}
	}
	return phoneapi.Checkout{}, vend.E(vend.NotFound, "receipt.not_found", "service: no such receipt")
}
