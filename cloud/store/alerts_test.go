package store_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

func TestAlertRaiseDedupAckResolve(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		_, err := e.s.PutAlertSettings(e.ctx, e.opA.ID, store.AlertSettings{EmailTo: "ops@example.com", WebhookURL: "https://hooks.example.com/a",
			OfflineAfter: time.Minute, VendFailCount: 3, VendFailWindow: 10 * time.Minute, LowStockLevel: 2})
		must(t, err)
		in := store.NewAlert{Operator: e.opA.ID, Kind: store.AlertLowStock, Device: "dev-a", Machine: "v1", Slot: "A1", Summary: "chips low"}

		// Raised at once from many instances: one alert, one pair of deliveries.
		var wg sync.WaitGroup
		created := make(chan bool, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, c, err := e.s.RaiseAlert(e.ctx, in)
				if err != nil {
					t.Error(err)
				}
				created <- c
			}()
		}
		wg.Wait()
		close(created)
		n := 0
		for c := range created {
			if c {
				n++
			}
		}
		if n != 1 || e.count("alerts") != 1 || e.count("alert_deliveries") != 2 {
			t.Fatalf("created %d, alerts %d, deliveries %d; want 1, 1, 2", n, e.count("alerts"), e.count("alert_deliveries"))
		}
		a, c, err := e.s.RaiseAlert(e.ctx, in)
		must(t, err)
		if c || a.State != store.AlertOpen {
			t.Fatalf("raise again = %+v created %v, want the open alert", a, c)
		}
		if got, _ := e.s.CountOpenAlerts(e.ctx, e.opA.ID); got != 1 {
			t.Fatalf("CountOpenAlerts = %d, want 1", got)
		}

		// Another operator sees nothing of it.
		opB, err := e.s.CreateOperator(e.ctx, "Operator B")
		must(t, err)
		_, err = e.s.AckAlert(e.ctx, opB.ID, a.ID, "b@example.com")
		wantCode(t, err, "alert.not_found")

		e.clk.Add(time.Minute)
		acked, err := e.s.AckAlert(e.ctx, e.opA.ID, a.ID, "tech@example.com")
		must(t, err)
		if acked.State != store.AlertAcknowledged || acked.AckedBy != "tech@example.com" || !acked.Acked.Equal(e.clk.Now()) {
			t.Fatalf("AckAlert = %+v", acked)
		}
		// Still open for dedup while acknowledged.
		if _, c, _ := e.s.RaiseAlert(e.ctx, in); c {
			t.Fatal("raise while acknowledged created a new alert")
		}
		ok, err := e.s.ResolveAlert(e.ctx, e.opA.ID, in.DedupKey(), "")
		must(t, err)
		if !ok {
			t.Fatal("ResolveAlert found nothing open")
		}
		if ok, _ := e.s.ResolveAlert(e.ctx, e.opA.ID, in.DedupKey(), ""); ok {
			t.Fatal("ResolveAlert twice resolved twice")
		}
		_, err = e.s.AckAlert(e.ctx, e.opA.ID, a.ID, "tech@example.com")
		wantCode(t, err, "alert.state")
		// The condition comes back: a new alert.
		a2, c, err := e.s.RaiseAlert(e.ctx, in)
		must(t, err)
		if !c || a2.ID == a.ID {
			t.Fatalf("raise after resolve = %v created %v, want a new alert", a2.ID, c)
		}

		// Filters and the cursor.
		for i := 0; i < 5; i++ {
			e.clk.Add(time.Second)
			_, _, err := e.s.RaiseAlert(e.ctx, store.NewAlert{Operator: e.opA.ID, Kind: store.AlertUnreported, Device: "dev-a",
				Machine: "w1", Ref: "s" + string(rune('a'+i)), Summary: "unreported"})
			must(t, err)
		}
		var all []store.Alert
		cur := ""
		for {
			page, next, err := e.s.ListAlerts(e.ctx, e.opA.ID, store.AlertFilter{Kind: store.AlertUnreported, Limit: 2, Cursor: cur})
			must(t, err)
			all = append(all, page...)
			if next == "" {
				break
			}
			cur = next
		}
		if len(all) != 5 || all[0].Ref != "se" || all[4].Ref != "sa" {
			t.Fatalf("paged listing: %d alerts, want 5 newest first", len(all))
		}
		res, _, err := e.s.ListAlerts(e.ctx, e.opA.ID, store.AlertFilter{State: store.AlertResolved})
		must(t, err)
		if len(res) != 1 || res[0].ID != a.ID {
			t.Fatalf("resolved listing = %d alerts, want the first one", len(res))
		}
		_, _, err = e.s.ListAlerts(e.ctx, e.opA.ID, store.AlertFilter{Kind: "nope"})
		wantCode(t, err, "store.input")
		_, _, err = e.s.ListAlerts(e.ctx, e.opA.ID, store.AlertFilter{Cursor: "garbage"})
		wantCode(t, err, "store.input")
		_, _, err = e.s.RaiseAlert(e.ctx, store.NewAlert{Operator: e.opA.ID, Kind: store.AlertLowStock, Summary: ""})
		wantCode(t, err, "store.input")
	})
}

func TestAlertSettingsCheck(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		got, err := e.s.AlertSettings(e.ctx, e.opA.ID)
		must(t, err)
		if got.OfflineAfter != store.DefaultOfflineAfter || got.VendFailCount != store.DefaultVendFailCount {
			t.Fatalf("defaults = %+v", got)
		}
		ok := store.DefaultAlertSettings()
		for name, mod := range map[string]func(*store.AlertSettings){
			"email_to":        func(a *store.AlertSettings) { a.EmailTo = "not an address" },
			"webhook_url":     func(a *store.AlertSettings) { a.WebhookURL = "ftp://x" },
			"offline_after":   func(a *store.AlertSettings) { a.OfflineAfter = 0 },
			"vend_fail_count": func(a *store.AlertSettings) { a.VendFailCount = 0 },
			"quiet_start":     func(a *store.AlertSettings) { a.QuietStart, a.QuietEnd = "25:00", "07:00" },
			"set both":        func(a *store.AlertSettings) { a.QuietStart = "22:00" },
			"time_zone":       func(a *store.AlertSettings) { a.TimeZone = "Mars/Olympus" },
		} {
			a := ok
			mod(&a)
			_, err := e.s.PutAlertSettings(e.ctx, e.opA.ID, a)
			wantCode(t, err, "store.input")
			if err != nil && !contains(err.Error(), name) {
				t.Errorf("%s: error %q does not name the field", name, err)
			}
		}
		a := ok
		a.EmailTo, a.QuietStart, a.QuietEnd, a.TimeZone = "Ops <ops@example.com>, b@example.com", "22:00", "07:00", "Europe/Berlin"
		put, err := e.s.PutAlertSettings(e.ctx, e.opA.ID, a)
		must(t, err)
		got, err = e.s.AlertSettings(e.ctx, e.opA.ID)
		must(t, err)
		if got.EmailTo != "ops@example.com, b@example.com" || got.QuietStart != "22:00" || got.TimeZone != "Europe/Berlin" || !got.Updated.Equal(put.Updated) {
			t.Fatalf("settings read back = %+v", got)
		}
	})
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

func TestQuietUntil(t *testing.T) {
	a := store.DefaultAlertSettings()
	a.QuietStart, a.QuietEnd, a.TimeZone = "22:00", "07:00", "Europe/Berlin"
	must(t, a.Check())
	berlin, _ := time.LoadLocation("Europe/Berlin")
	for _, c := range []struct {
		at, want string // Berlin local times; want "" outside
	}{
		{"2026-03-01 21:59", ""},
		{"2026-03-01 22:00", "2026-03-02 07:00"},
		{"2026-03-02 03:00", "2026-03-02 07:00"},
		{"2026-03-02 07:00", ""},
		{"2026-03-02 12:00", ""},
	} {
		at, _ := time.ParseInLocation("2006-01-02 15:04", c.at, berlin)
		got := a.QuietUntil(at.UTC())
		var want time.Time
		if c.want != "" {
			want, _ = time.ParseInLocation("2006-01-02 15:04", c.want, berlin)
		}
		if !got.Equal(want) {
			t.Errorf("QuietUntil(%s) = %v, want %v", c.at, got, want)
		}
	}
	a.QuietStart, a.QuietEnd = "01:00", "05:00"
	at, _ := time.ParseInLocation("2006-01-02 15:04", "2026-03-02 04:59", berlin)
	if got := a.QuietUntil(at); got.In(berlin).Format("15:04") != "05:00" {
		t.Errorf("QuietUntil(04:59) in 01:00-05:00 = %v", got)
	}
}

func TestAlertDeliveryClaims(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		a := store.DefaultAlertSettings()
		a.WebhookURL = "http://127.0.0.1:1/hook"
		_, err := e.s.PutAlertSettings(e.ctx, e.opA.ID, a)
		must(t, err)
		_, _, err = e.s.RaiseAlert(e.ctx, store.NewAlert{Operator: e.opA.ID, Kind: store.AlertFault, Device: "dev-a", Summary: "board fault"})
		must(t, err)
		ds, err := e.s.ClaimDeliveries(e.ctx, time.Minute, 10)
		must(t, err)
		if len(ds) != 1 || ds[0].Attempts != 1 || ds[0].Alert.Summary != "board fault" || ds[0].Target != a.WebhookURL {
			t.Fatalf("claim = %+v", ds)
		}
		// Leased: nobody else takes it.
		if again, _ := e.s.ClaimDeliveries(e.ctx, time.Minute, 10); len(again) != 0 {
			t.Fatalf("claimed a leased delivery: %+v", again)
		}
		// The holder dies; after the lease another instance takes it, and
		// the dead one's late result is ignored.
		e.clk.Add(61 * time.Second)
		ds2, err := e.s.ClaimDeliveries(e.ctx, time.Minute, 10)
		must(t, err)
		if len(ds2) != 1 || ds2[0].Attempts != 2 {
			t.Fatalf("claim after lease = %+v", ds2)
		}
		if ok, _ := e.s.FinishDelivery(e.ctx, ds[0].ID, ds[0].Attempts, store.DeliveryResult{Sent: true}); ok {
			t.Fatal("a stale attempt's result was recorded")
		}
		// A failure with a retry, then a hold, then success.
		ok, err := e.s.FinishDelivery(e.ctx, ds2[0].ID, 2, store.DeliveryResult{Err: "503", Retry: e.clk.Now().Add(10 * time.Second)})
		must(t, err)
		if !ok {
			t.Fatal("retry not recorded")
		}
		if early, _ := e.s.ClaimDeliveries(e.ctx, time.Minute, 10); len(early) != 0 {
			t.Fatal("claimed before its retry time")
		}
		e.clk.Add(10 * time.Second)
		ds3, _ := e.s.ClaimDeliveries(e.ctx, time.Minute, 10)
		if len(ds3) != 1 || ds3[0].Attempts != 3 || ds3[0].LastError != "503" {
			t.Fatalf("claim after retry = %+v", ds3)
		}
		_, err = e.s.FinishDelivery(e.ctx, ds3[0].ID, 3, store.DeliveryResult{Hold: e.clk.Now().Add(time.Hour)})
		must(t, err)
		e.clk.Add(time.Hour)
		ds4, _ := e.s.ClaimDeliveries(e.ctx, time.Minute, 10)
		if len(ds4) != 1 || ds4[0].Attempts != 3 {
			t.Fatalf("a hold counted an attempt: %+v", ds4)
		}
		ok, _ = e.s.FinishDelivery(e.ctx, ds4[0].ID, 3, store.DeliveryResult{Sent: true})
		if !ok {
			t.Fatal("sent not recorded")
		}
		got, err := e.s.AlertDeliveries(e.ctx, e.opA.ID, ds4[0].Alert.ID)
		must(t, err)
		if len(got) != 1 || got[0].State != "sent" || !got[0].Sent.Equal(e.clk.Now()) {
			t.Fatalf("deliveries = %+v", got)
		}
	})
}

func TestAlertOfflineCondition(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, nil, e.clk.Now()))
		if got, _ := e.s.OfflineDevices(e.ctx, 10); len(got) != 0 {
			t.Fatalf("online device listed offline: %+v", got)
		}
		lost := e.clk.Now().Add(time.Second)
		e.clk.Add(time.Second)
		_, err := e.s.SetDeviceLost(e.ctx, "dev-a", lost, 0)
		must(t, err)
		e.clk.Add(store.DefaultOfflineAfter - time.Second)
		if got, _ := e.s.OfflineDevices(e.ctx, 10); len(got) != 0 {
			t.Fatalf("offline below the threshold listed: %+v", got)
		}
		e.clk.Add(time.Second)
		got, err := e.s.OfflineDevices(e.ctx, 10)
		must(t, err)
		if len(got) != 1 || got[0].Device != "dev-a" || !got[0].Since.Equal(lost) {
			t.Fatalf("OfflineDevices = %+v", got)
		}
		_, _, err = e.s.RaiseAlert(e.ctx, store.NewAlert{Operator: e.opA.ID, Kind: store.AlertOffline, Device: "dev-a", Summary: "offline"})
		must(t, err)
		if got, _ := e.s.OfflineDevices(e.ctx, 10); len(got) != 0 {
			t.Fatalf("device with an open alert listed again: %+v", got)
		}
		if res, _ := e.s.ResolveOnlineDevices(e.ctx); len(res) != 0 {
			t.Fatal("resolved while offline")
		}
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, nil, e.clk.Now()))
		res, err := e.s.ResolveOnlineDevices(e.ctx)
		must(t, err)
		if len(res) != 1 || res[0].State != store.AlertResolved {
			t.Fatalf("ResolveOnlineDevices = %+v", res)
		}
	})
}

func TestAlertSessionConditions(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 10000)
		settle := func(units uint64, out vend.Outcome) {
			t.Helper()
			ss, err := e.start(e.user.ID, "w1", "", 2000, fmt.Sprintf("k-%d", e.seq.Add(1)))
			must(t, err)
			must(t, e.s.Advance(e.ctx, ss.ID, store.Authorized, e.clk.Now()))
			must(t, e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now()))
			u, raw := e.usage(ss, units, out)
			_, err = e.s.Settle(e.ctx, u, raw)
			must(t, err)
			e.clk.Add(time.Second)
		}

		// No flow: the latest session on w1 ended no_flow.
		settle(500, vend.OutcomeCompleted)
		if got, _ := e.s.NoFlowMachines(e.ctx, time.Hour, 10); len(got) != 0 {
			t.Fatalf("no-flow after a good session: %+v", got)
		}
		settle(0, vend.OutcomeNoFlow)
		got, err := e.s.NoFlowMachines(e.ctx, time.Hour, 10)
		must(t, err)
		if len(got) != 1 || got[0].Machine != "w1" || got[0].Operator != e.opA.ID {
			t.Fatalf("NoFlowMachines = %+v", got)
		}
		_, _, err = e.s.RaiseAlert(e.ctx, store.NewAlert{Operator: e.opA.ID, Kind: store.AlertNoFlow, Device: "dev-a", Machine: "w1", Summary: "no flow"})
		must(t, err)
		if got, _ := e.s.NoFlowMachines(e.ctx, time.Hour, 10); len(got) != 0 {
			t.Fatalf("listed again with an open alert: %+v", got)
		}
		if res, _ := e.s.ResolveFlowing(e.ctx); len(res) != 0 {
			t.Fatal("resolved before water flowed again")
		}
		settle(700, vend.OutcomeCapReached)
		res, err := e.s.ResolveFlowing(e.ctx)
		must(t, err)
		if len(res) != 1 {
			t.Fatalf("ResolveFlowing = %d, want 1", len(res))
		}

		// Vend failures: three failed sessions within the window.
		for i := 0; i < store.DefaultVendFailCount; i++ {
			if got, _ := e.s.VendFailureMachines(e.ctx, 10); len(got) != 0 {
				t.Fatalf("after %d failures: %+v", i, got)
			}
			ss, err := e.start(e.user.ID, "w1", "", 2000, fmt.Sprintf("f-%d", i))
			must(t, err)
			_, err = e.s.Fail(e.ctx, ss.ID, "device.refused")
			must(t, err)
			e.clk.Add(time.Minute)
		}
		fails, err := e.s.VendFailureMachines(e.ctx, 10)
		must(t, err)
		if len(fails) != 1 || fails[0].Count != 3 {
			t.Fatalf("VendFailureMachines = %+v", fails)
		}
		_, _, err = e.s.RaiseAlert(e.ctx, store.NewAlert{Operator: e.opA.ID, Kind: store.AlertVendFailures, Device: "dev-a", Machine: "w1", Summary: "fails"})
		must(t, err)
		if res, _ := e.s.ResolveVendFailures(e.ctx); len(res) != 0 {
			t.Fatal("resolved within the window")
		}
		e.clk.Add(store.DefaultVendFailWindow)
		if res, _ := e.s.ResolveVendFailures(e.ctx); len(res) != 1 {
			t.Fatalf("ResolveVendFailures after the window = %d, want 1", len(res))
		}

		// Unreported: listed until closed.
		ss := e.reach(store.Unreported, "u-1")
		un, err := e.s.UnreportedAlertSessions(e.ctx, 10)
		must(t, err)
		if len(un) != 1 || un[0].Ref != ss.ID.String() {
			t.Fatalf("UnreportedAlertSessions = %+v", un)
		}
		_, _, err = e.s.RaiseAlert(e.ctx, store.NewAlert{Operator: e.opA.ID, Kind: store.AlertUnreported, Device: "dev-a", Machine: "w1",
			Ref: ss.ID.String(), Summary: "unreported"})
		must(t, err)
		if un, _ := e.s.UnreportedAlertSessions(e.ctx, 10); len(un) != 0 {
			t.Fatalf("listed again: %+v", un)
		}
		if res, _ := e.s.ResolveReported(e.ctx); len(res) != 0 {
			t.Fatal("resolved while unreported")
		}
		_, err = e.s.OperatorVoid(e.ctx, e.opA.ID, ss.ID, "checked the machine")
		must(t, err)
		if res, _ := e.s.ResolveReported(e.ctx); len(res) != 1 {
			t.Fatalf("ResolveReported after void = %d, want 1", len(res))
		}
	})
}
