package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/httpapi"
)

// opCall sends an operator API request and decodes a 2xx answer into out;
// it returns the status and the body.
func (e *apiEnv) opCall(method, path, tok, body string, out any) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	resp := e.do(req, tok)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

// Restock and inventory over the operator API, seen by the phone (its
// answers checked against openapi.yaml): a sold-out slot is shown empty
// and refused at start with 409 slot.empty; commands answer the device's
// reply (here none: timeout); bad input names its field.
func TestOperatorOpsAPI(t *testing.T) {
	e := newAPIEnv(t, nil)
	var tok httpapi.OperatorToken
	if st, b := e.opCall("POST", "/v1/operator/auth/login", "", `{"email":"op@example.com","password":"operator-password"}`, &tok); st != 200 {
		t.Fatalf("log-in: %d %s", st, b)
	}
	stock := "/v1/operator/devices/wd-1/machines/vm1/slots/A1/stock"
	var ss httpapi.OperatorSlotStock
	if st, b := e.opCall("PUT", stock, tok.Token, `{"stock":1,"low_at":0}`, &ss); st != 200 || !ss.Tracked || ss.Stock != 1 || ss.RestockedAt.IsZero() {
		t.Fatalf("restock: %d %s", st, b)
	}
	for _, c := range []struct{ path, body, code string }{
		{stock, `{"stock":10001,"low_at":0}`, "want 0-10000"},
		{stock, `{"stock":-1,"low_at":0}`, "request.field"},
		{"/v1/operator/devices/wd-1/machines/vm1/slots/Z9/stock", `{"stock":1,"low_at":0}`, "slot not found"},
		{"/v1/operator/devices/nope/machines/vm1/slots/A1/stock", `{"stock":1,"low_at":0}`, "device.not_found"},
	} {
		if st, b := e.opCall("PUT", c.path, tok.Token, c.body, nil); st/100 != 4 || !strings.Contains(b, c.code) {
			t.Errorf("PUT %s %s: %d %s, want %s", c.path, c.body, st, b, c.code)
		}
	}
	var inv httpapi.OperatorInventory
	if st, b := e.opCall("GET", "/v1/operator/inventory", tok.Token, "", &inv); st != 200 || len(inv.Slots) != 1 || inv.Slots[0].Stock != 1 {
		t.Fatalf("inventory: %d %s", st, b)
	}

	phone := e.phone()
	dv, err := phone.GetDevice(e.ctx, "wd-1", e.proximityID(0))
	if err != nil {
		t.Fatal(err)
	}
	if sl := dv.Machines[1].Slots[0]; sl.Empty || !sl.Available || sl.Stock == nil || *sl.Stock != 1 {
		t.Fatalf("phone's slot with 1 left: %+v", sl)
	}
	if st, b := e.opCall("PUT", stock, tok.Token, `{"stock":0,"low_at":0}`, nil); st != 200 {
		t.Fatalf("restock to 0: %d %s", st, b)
	}
	dv, _ = phone.GetDevice(e.ctx, "wd-1", e.proximityID(0))
	if sl := dv.Machines[1].Slots[0]; !sl.Empty || sl.Available || *sl.Stock != 0 {
		t.Fatalf("phone's sold-out slot: %+v", sl)
	}
	_, err = phone.StartSession(e.ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{Device: "wd-1", Machine: "vm1", Slot: "A1",
		Cap: phoneapi.Cap{Units: 1}, Source: "wallet", ProximityID: e.proximityID(0)})
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "slot.empty" {
		t.Fatalf("start on a sold-out slot: %v, want 409 slot.empty", err)
	}
	if w, _ := phone.GetWallet(e.ctx); w.Held.Minor != 0 {
		t.Fatalf("held %d after a refused start", w.Held.Minor)
	}

	var rep httpapi.OperatorCommandReply
	if st, b := e.opCall("POST", "/v1/operator/devices/wd-1/machines/tap1/test-output", tok.Token, `{"output":"out1","duration_ms":500}`, &rep); st != 200 || rep.Status != "timeout" || rep.Command == "" {
		t.Fatalf("output test to a silent device: %d %s", st, b)
	}
	if st, b := e.opCall("POST", "/v1/operator/devices/wd-1/reboot", tok.Token, `{"delay_s":0}`, &rep); st != 200 || rep.Status != "timeout" {
		t.Fatalf("reboot of a silent device: %d %s", st, b)
	}
	for _, c := range []struct{ path, body, code string }{
		{"/v1/operator/devices/wd-1/machines/tap1/test-output", `{"output":"out1","duration_ms":0}`, "request.field"},
		{"/v1/operator/devices/wd-1/machines/tap1/test-output", `{"output":"Out 1","duration_ms":500}`, "request.field"},
		{"/v1/operator/devices/wd-1/reboot", `{"delay_s":3601}`, "request.field"},
		{"/v1/operator/devices", `{"id":"x-1","kind":"water","currency":"EUR","k":5}`, "provision.unavailable"},
		{"/v1/operator/bundles/nope", ``, "bundle.gone"},
	} {
		if st, b := e.opCall("POST", c.path, tok.Token, c.body, nil); st/100 != 4 || !strings.Contains(b, c.code) {
			t.Errorf("POST %s %s: %d %s, want %s", c.path, c.body, st, b, c.code)
		}
	}
}
