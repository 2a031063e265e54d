package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, mqttapi.Message) error { return nil }

func TestRequestErrors(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: nopPublisher{}, CloudKey: key})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Options{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	c := phoneapi.New(srv.URL, nil)
	if _, err := c.SignUp(ctx, &phoneapi.SignUpRequest{Email: "a@example.com", Password: strings.Repeat("p", 100)}); err != nil {
		t.Fatal(err)
	}
	if _, err := phoneapi.New(srv.URL, nil).LogIn(ctx, &phoneapi.LogInRequest{Email: "a@example.com", Password: strings.Repeat("p", 100)}); err != nil {
		t.Fatalf("log in with a 100-byte password: %v", err)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		code, mention      string
	}{
		{"POST", "/v1/resolve", `{"proximity_id":`, 400, "request.json", ""},
		{"POST", "/v1/resolve", `{"proximity_id":"00"}`, 400, "request.field", "proximity"},
		{"POST", "/v1/resolve", `{"proximity_id":"0011223344556677","rssi":"x"}`, 400, "request.field", "rssi"},
		{"POST", "/v1/resolve", `{"proximity_id":"0011223344556677","extra":1}`, 400, "request.field", "extra"},
		{"POST", "/v1/resolve", `{"proximity_id":"0011223344556677"}{}`, 400, "request.json", ""},
		{"POST", "/v1/resolve", `{"proximity_id":"` + strings.Repeat("0", 70000) + `"}`, 400, "request.json", ""},
		{"POST", "/v1/resolve", `{"proximity_id":"0011223344556677"}`, 404, "proximity.unknown", ""},
		{"GET", "/v1/devices/nope", ``, 404, "device.not_found", ""},
		{"GET", "/v1/sessions/not-a-uuid", ``, 400, "request.field", "session"},
		{"GET", "/v1/sessions/5f0c6a2e-3b1d-4c8e-9a7f-2d4b6e8c1a90/receipt", ``, 404, "session.not_found", ""},
		{"POST", "/v1/sessions", `{}`, 400, "request.idempotency_key", ""},
		{"GET", "/v1/nothing", ``, 404, "route.not_found", ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+c.Token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e phoneapi.ErrorResponse
		if err := json.Unmarshal(b, &e); err != nil || e.Validate() != nil {
			t.Errorf("%s %s: body %s is not an ErrorResponse", tc.method, tc.path, b)
			continue
		}
		if resp.StatusCode != tc.status || e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.mention) {
			t.Errorf("%s %s %.40q = %d %s %q, want %d %s mentioning %q", tc.method, tc.path, tc.body, resp.StatusCode, e.Error.Code, e.Error.Message, tc.status, tc.code, tc.mention)
		}
	}
}
