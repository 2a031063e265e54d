package chaos

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// A 503 device.no_reply carries the pending session in error.session (the
// phone API's ErrorBody): the phone must learn it, follow it and not take
// the start for failed.
func TestPostStartReadsPendingSessionOfNoReply(t *testing.T) {
	id := phoneapi.SessionID{7}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		ss := &phoneapi.Session{ID: id, Device: "wd-1", Machine: "tap1", State: phoneapi.StatePending, Unit: vend.UnitML,
			Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR", Source: "wallet", Hold: vend.Amount{Minor: 100, Currency: "EUR"},
			CapUnits: 2000, Amount: vend.Amount{Currency: "EUR"}, CreatedAt: time.Now()}
		b, err := json.Marshal(map[string]any{"error": phoneapi.ErrorBody{Kind: vend.Transient, Code: "device.no_reply",
			Message: "waiting for the machine", Session: ss}})
		if err != nil {
			t.Error(err)
		}
		w.Write(b)
	}))
	defer srv.Close()
	res := postStart(context.Background(), srv.URL, "tok", "key-1", map[string]any{})
	if res.code != "device.no_reply" || res.session == nil || res.session.ID != id {
		t.Fatalf("postStart = code %q session %+v, want device.no_reply with session %s", res.code, res.session, id)
	}
}
