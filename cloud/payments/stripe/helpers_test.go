package stripecard_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	stripecard "beaconvend/cloud/payments/stripe"
	"beaconvend/cloud/payments/stripe/stripetest"
)

const eur vend.Currency = "EUR"

func amount(minor int64) vend.Amount { return vend.Amount{Minor: minor, Currency: eur} }

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// keys writes a fresh test secret key and webhook secret into files.
type keys struct {
	Key, Whsec         string
	KeyFile, WhsecFile string
}

func newKeys(t testing.TB) keys {
	dir := t.TempDir()
	k := keys{Key: "sk_test_" + randHex(t, 12), Whsec: "whsec_" + randHex(t, 16),
		KeyFile: filepath.Join(dir, "secret_key"), WhsecFile: filepath.Join(dir, "webhook_secret")}
	if err := os.WriteFile(k.KeyFile, []byte(k.Key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.WhsecFile, []byte(k.Whsec+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// standIn is a channel wired to the stateful stand-in.
type standIn struct {
	*stripecard.Channel
	srv  *stripetest.Server
	keys keys
}

func newStandIn(t testing.TB, mod func(*stripecard.Config)) standIn {
	k := newKeys(t)
	srv := stripetest.NewServer(t)
	srv.APIKey = k.Key
	cfg := stripecard.Config{SecretKeyFile: k.KeyFile, WebhookSecretFile: k.WhsecFile, Currency: eur, BaseURL: srv.URL}
	if mod != nil {
		mod(&cfg)
	}
	ch, err := stripecard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return standIn{Channel: ch, srv: srv, keys: k}
}

func order(no string, minor int64) payments.Order {
	return payments.Order{No: no, Amount: amount(minor), Description: "beaconvend water session"}
}

func mustKind(t testing.TB, err error, want *vend.Error) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", want.Code)
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %s (%s)", err, want.Code, want.Kind)
	}
}

// recorder is an http.RoundTripper that records each request's route and
// the status of its answer.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

type call struct {
	Method, Path string
	Status       int
	Body         string // the answer, when it is not 200
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	c := call{Method: req.Method, Path: req.URL.Path, Status: res.StatusCode}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		c.Body = string(b)
		res.Body = io.NopCloser(strings.NewReader(c.Body))
	}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return res, nil
}

// take returns the calls recorded since the last take.
func (r *recorder) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// lookupMap is a LookupIntent over a map, as the cloud's payment records.
type lookupMap struct {
	mu sync.Mutex
	m  map[string]string
	n  int
}

func (l *lookupMap) set(no, pi string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]string{}
	}
	l.m[no] = pi
}

func (l *lookupMap) lookup(_ context.Context, no string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	return l.m[no], nil
}
