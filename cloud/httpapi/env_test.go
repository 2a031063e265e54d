package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// apiEnv is one cloud (SQLite store, service, API) behind a real
// http.Server from NewHTTPServer on a loopback port, with one online water
// device "wd-1" (machine tap1) and an operator account.
type apiEnv struct {
	t   *testing.T
	ctx context.Context
	st  *store.Store
	svc *service.Service
	api *httpapi.Server
	url string
	hc  *http.Client // checks every phone API answer against openapi.yaml
	key proxid.Key
	now atomic.Int64 // Unix ms of the cloud's clock
}

func (e *apiEnv) clock() time.Time { return time.UnixMilli(e.now.Load()) }

func (e *apiEnv) advance(d time.Duration) { e.now.Add(d.Milliseconds()) }

// newAPIEnv starts the environment; tweak may change the API options.
func newAPIEnv(t *testing.T, tweak func(*httpapi.Options)) *apiEnv {
	t.Helper()
	e := &apiEnv{t: t, ctx: context.Background(), hc: &http.Client{Transport: newSpecChecker(t)}}
	e.now.Store(time.Now().UnixMilli())
	st, err := store.Open(e.ctx, filepath.Join(t.TempDir(), "c.db"), &store.Opts{BcryptCost: 4, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	op, err := st.CreateOperator(e.ctx, "op")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOperatorAccount(e.ctx, op.ID, "op@example.com", "operator-password"); err != nil {
		t.Fatal(err)
	}
	rand.Read(e.key[:])
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := st.CreateDevice(e.ctx, store.Device{ID: "wd-1", OperatorID: op.ID, Name: "w", IdentityKey: e.key, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{
			{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"},
			{ID: "vm1", Kind: vend.KindVending, Name: "v", Unit: vend.UnitItem, Price: vend.Price{Minor: 150, Per: 1}, Currency: "EUR",
				Slots: []store.Slot{{ID: "A1", Name: "crisps", Price: vend.Price{Minor: 150, Per: 1}}}},
		}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDeviceStatus(e.ctx, "wd-1", true, nil, e.clock()); err != nil {
		t.Fatal(err)
	}
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := service.New(e.ctx, service.Options{Store: st, Publisher: nopPublisher{}, CloudKey: ck, ReplyTimeout: 50 * time.Millisecond, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	opts := httpapi.Options{Service: svc, Now: e.clock}
	if tweak != nil {
		tweak(&opts)
	}
	api, err := httpapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.api = api
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := api.NewHTTPServer()
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	e.url = "http://" + ln.Addr().String()
	return e
}

var phoneSeq atomic.Int64

// phone signs up a new user with 10.00 EUR in the wallet.
func (e *apiEnv) phone() *phoneapi.Client {
	e.t.Helper()
	c := phoneapi.New(e.url, &phoneapi.Opts{HTTPClient: e.hc})
	if _, err := c.SignUp(e.ctx, &phoneapi.SignUpRequest{Email: fmt.Sprintf("p%d@example.com", phoneSeq.Add(1)), Password: "password-123"}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := c.TopUp(e.ctx, phoneapi.NewIdempotencyKey(), &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 1000, Currency: "EUR"}, Source: "card_sandbox"}); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// proximityID is wd-1's proximity ID at the cloud's clock plus d.
func (e *apiEnv) proximityID(d time.Duration) phoneapi.ProximityID {
	return phoneapi.ProximityID(proxid.Compute(e.key, proxid.Counter(e.clock().Add(d)), 5).String())
}

// pendingSession starts a session on tap1 that the (absent) device never
// answers: 503 device.no_reply with the pending session, which is live.
func (e *apiEnv) pendingSession(c *phoneapi.Client) phoneapi.Session {
	e.t.Helper()
	return e.pendingOn(c, "tap1", "")
}

// pendingOn is pendingSession on any machine (and slot) of wd-1.
func (e *apiEnv) pendingOn(c *phoneapi.Client, machine, slot phoneapi.MachineID) phoneapi.Session {
	e.t.Helper()
	cap := phoneapi.Cap{Units: 1000}
	if slot != "" {
		cap = phoneapi.Cap{Units: 1}
	}
	_, err := c.StartSession(e.ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{Device: "wd-1", Machine: machine, Slot: slot,
		Cap: cap, Source: "wallet", ProximityID: e.proximityID(0)})
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) || ae.Code != "device.no_reply" || ae.Session == nil {
		e.t.Fatalf("start = %v, want device.no_reply with a pending session", err)
	}
	return *ae.Session
}

// do sends a raw request with an optional bearer token.
func (e *apiEnv) do(req *http.Request, token string) *http.Response {
	e.t.Helper()
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}
