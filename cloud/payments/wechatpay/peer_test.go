package wechatpay_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/wechatpay"
	"beaconvend/cloud/payments/wechatpay/wechattest"
)

// The channel is checked against scripts/paypeer-wechat, whose protocol
// and cryptography come from wechatpay-axios-plugin (package wechattest
// runs it).

// notified is what our notify endpoint made of one notification.
type notified struct {
	n   payments.Notification
	err error
}

// harness is a channel against a peer, with a notify endpoint that runs
// ParseNotification and AckNotification as the cloud does.
type harness struct {
	*wechattest.Peer
	t        *testing.T
	ch       payments.Channel
	notifies chan notified
	notify   string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	p := wechattest.Start(t)
	h := &harness{Peer: p, t: t, notifies: make(chan notified, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := h.ch.ParseNotification(r.Context(), r)
		h.notifies <- notified{n, err}
		h.ch.AckNotification(w, err)
	}))
	t.Cleanup(srv.Close)
	h.notify = srv.URL + "/v1/channels/wechatpay/notify"
	ch, err := wechatpay.New(p.Config(h.notify))
	if err != nil {
		t.Fatal(err)
	}
	h.ch = ch
	return h
}

func (h *harness) next() notified {
	h.t.Helper()
	select {
	case n := <-h.notifies:
		return n
	case <-time.After(10 * time.Second):
		h.t.Fatal("no notification reached the notify endpoint")
	}
	return notified{}
}

func (h *harness) create(amount int64) string {
	h.t.Helper()
	no := payments.NewOrderNo("T")
	if _, err := h.ch.Create(context.Background(), order(no, amount)); err != nil {
		h.t.Fatalf("Create(%s) = %v", no, err)
	}
	return no
}

func order(no string, amount int64) payments.Order {
	return payments.Order{No: no, Amount: cny(amount), Description: "beaconvend wallet top-up", ExpiresAt: time.Now().Add(15 * time.Minute)}
}
