package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/store"
)

// The operator alert routes: list with filters and a cursor, read with
// deliveries, acknowledge (technician, not viewer), settings (owner
// only; the webhook secret shown to the owner only and never accepted).
func TestOperatorAlerts(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		ctx := context.Background()
		op, _ := e.st.OperatorAccountByEmail(ctx, "ops@acme.example")
		for _, role := range []string{"viewer", "technician"} {
			if _, err := e.st.CreateOperatorAccountRole(ctx, op.OperatorID, role+"@acme.example", role+"-password", role); err != nil {
				t.Fatal(err)
			}
		}
		logIn := func(email, pw string) string {
			var tok httpapi.OperatorToken
			if code, ec := e.call("POST", "/v1/operator/auth/login", "", `{"email":"`+email+`","password":"`+pw+`"}`, &tok); code != 200 {
				t.Fatalf("log-in %s = %d %s", email, code, ec)
			}
			return tok.Token
		}
		owner := e.logIn("acme-password").Token
		viewer := logIn("viewer@acme.example", "viewer-password")
		tech := logIn("technician@acme.example", "technician-password")

		var set httpapi.OperatorAlertSettings
		if code, ec := e.call("PUT", "/v1/operator/alert-settings", viewer, `{"offline_after_s":60,"vend_fail_count":3,"vend_fail_window_s":600,"low_stock_level":2}`, nil); code != 403 || ec != "auth.forbidden" {
			t.Fatalf("viewer PUT settings = %d %s", code, ec)
		}
		if code, ec := e.call("PUT", "/v1/operator/alert-settings", owner, `{"webhook_url":"https://hooks.example.com/x","offline_after_s":60,"vend_fail_count":3,"vend_fail_window_s":600,"low_stock_level":2,"quiet_start":"22:00","quiet_end":"07:00","time_zone":"Europe/Berlin"}`, &set); code != 200 {
			t.Fatalf("owner PUT settings = %d %s", code, ec)
		}
		if set.OfflineAfterS != 60 || !strings.HasPrefix(set.WebhookSecret, "whsec_") || set.TimeZone != "Europe/Berlin" {
			t.Fatalf("settings = %+v", set)
		}
		if code, ec := e.call("PUT", "/v1/operator/alert-settings", owner, `{"offline_after_s":0,"vend_fail_count":3,"vend_fail_window_s":600}`, nil); code != 400 || ec != "request.field" {
			t.Fatalf("bad settings = %d %s", code, ec)
		}
		var vset httpapi.OperatorAlertSettings
		e.call("GET", "/v1/operator/alert-settings", viewer, "", &vset)
		if vset.WebhookSecret != "" || vset.OfflineAfterS != 60 {
			t.Fatalf("viewer settings = %+v", vset)
		}

		for _, slot := range []string{"A1", "A2", "A3"} {
			if _, _, err := e.st.RaiseAlert(ctx, store.NewAlert{Operator: op.OperatorID, Kind: store.AlertLowStock, Device: "dev-1", Slot: slot, Summary: slot + " low"}); err != nil {
				t.Fatal(err)
			}
			e.clk.Add(1e9)
		}
		var page httpapi.OperatorAlertPage
		if code, ec := e.call("GET", "/v1/operator/alerts?kind=stock.low&limit=2", viewer, "", &page); code != 200 {
			t.Fatalf("list = %d %s", code, ec)
		}
		if len(page.Alerts) != 2 || page.NextCursor == "" || page.Alerts[0].Slot != "A3" {
			t.Fatalf("page 1 = %+v", page)
		}
		var page2 httpapi.OperatorAlertPage
		e.call("GET", "/v1/operator/alerts?kind=stock.low&limit=2&cursor="+page.NextCursor, viewer, "", &page2)
		if len(page2.Alerts) != 1 || page2.NextCursor != "" || page2.Alerts[0].Slot != "A1" {
			t.Fatalf("page 2 = %+v", page2)
		}
		if code, ec := e.call("GET", "/v1/operator/alerts?kind=nope", viewer, "", nil); code != 400 || ec != "request.field" {
			t.Fatalf("bad kind = %d %s", code, ec)
		}
		id := page.Alerts[0].ID
		if code, ec := e.call("POST", "/v1/operator/alerts/"+id+"/ack", viewer, "", nil); code != 403 || ec != "auth.forbidden" {
			t.Fatalf("viewer ack = %d %s", code, ec)
		}
		var a httpapi.OperatorAlert
		if code, ec := e.call("POST", "/v1/operator/alerts/"+id+"/ack", tech, "", &a); code != 200 || a.State != "acknowledged" || a.AckedBy != "technician@acme.example" {
			t.Fatalf("technician ack = %d %s %+v", code, ec, a)
		}
		e.call("GET", "/v1/operator/alerts/"+id, viewer, "", &a)
		if len(a.Deliveries) != 1 || a.Deliveries[0].Channel != "webhook" || a.Deliveries[0].State != "pending" {
			t.Fatalf("alert with deliveries = %+v", a)
		}
		if code, _ := e.call("POST", "/v1/operator/alerts/"+id+"/resolve", tech, "", &a); code != 200 || a.State != "resolved" {
			t.Fatalf("resolve = %d %+v", code, a)
		}
		if code, ec := e.call("POST", "/v1/operator/alerts/"+id+"/ack", tech, "", nil); code != 409 || ec != "alert.state" {
			t.Fatalf("ack resolved = %d %s", code, ec)
		}
		if code, ec := e.call("GET", "/v1/operator/alerts/alr_0000000000000000", viewer, "", nil); code != 404 || ec != "alert.not_found" {
			t.Fatalf("unknown alert = %d %s", code, ec)
		}
	})
}
