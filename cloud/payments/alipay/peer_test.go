package alipay_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/alipay"
	"beaconvend/cloud/payments/alipay/alipaytest"
)

// receiver is the cloud's notification endpoint: it runs the channel's
// ParseNotification and AckNotification and keeps what they decided.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []payments.Notification
	err []error
	ch  payments.Channel
	new chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{new: make(chan struct{}, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n, err := r.ch.ParseNotification(req.Context(), req)
		r.mu.Lock()
		if err != nil {
			r.err = append(r.err, err)
		} else {
			r.got = append(r.got, n)
		}
		r.mu.Unlock()
		r.ch.AckNotification(w, err)
		r.new <- struct{}{}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// wait waits for n notifications in all (accepted or refused).
func (r *receiver) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		have := len(r.got) + len(r.err)
		r.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-r.new:
		case <-deadline:
			t.Fatalf("%d notifications arrived, want %d", have, n)
		}
	}
}

func (r *receiver) snapshot() ([]payments.Notification, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]payments.Notification(nil), r.got...), append([]error(nil), r.err...)
}

// rig is a channel wired to a fresh peer and a notification receiver.
type rig struct {
	p  *alipaytest.Peer
	ch payments.Channel
	rx *receiver
}

func newRig(t *testing.T) *rig {
	t.Helper()
	p := alipaytest.Start(t)
	rx := newReceiver(t)
	ch, err := alipay.New(p.Config(rx.srv.URL + "/v1/channels/alipay/notify"))
	if err != nil {
		t.Fatal(err)
	}
	rx.ch = ch
	return &rig{p: p, ch: ch, rx: rx}
}

func cny(minor int64) vend.Amount { return vend.Amount{Minor: minor, Currency: "CNY"} }

func (r *rig) create(t *testing.T, minor int64) string {
	t.Helper()
	no := payments.NewOrderNo("T")
	a, err := r.ch.Create(context.Background(), payments.Order{No: no, Amount: cny(minor), Description: "beaconvend wallet top-up", ExpiresAt: time.Now().Add(15 * time.Minute)})
	if err != nil {
		t.Fatalf("Create(%s) = %v", no, err)
	}
	if !strings.HasPrefix(a.CodeURL, "https://qr.alipay.com/") {
		t.Fatalf("Create(%s) code_url = %q", no, a.CodeURL)
	}
	return no
}

// pay has the buyer pay the order and waits for the cloud to have
// handled the notification.
func (r *rig) pay(t *testing.T, no string) alipaytest.NotifyResult {
	t.Helper()
	got, errs := r.rx.snapshot()
	res, err := r.p.Pay(no)
	if err != nil {
		t.Fatal(err)
	}
	r.rx.wait(t, len(got)+len(errs)+1)
	return res
}

// testKeysOther writes an application private key that is not the one
// the peer knows.
func testKeysOther(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := x509.MarshalPKCS8PrivateKey(k)
	p := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newRequest(method, url, body string) (*http.Request, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req, err
}
