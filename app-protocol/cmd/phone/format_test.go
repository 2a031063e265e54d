package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/hw/ble"
)

func eur(minor int64) phoneapi.Amount { return vend.Amount{Minor: minor, Currency: "EUR"} }

func TestFormatProgress(t *testing.T) {
	for _, c := range []struct {
		units, capUnits uint64
		unit            phoneapi.Unit
		amount, hold    int64
		want            string
	}{
		{0, 4019, vend.UnitML, 0, 200, "[----------]   0%  0/4019 ml  0.00/2.00 EUR"},
		{2010, 4019, vend.UnitML, 100, 200, "[#####-----]  50%  2010/4019 ml  1.00/2.00 EUR"},
		{4019, 4019, vend.UnitML, 200, 200, "[##########] 100%  4019/4019 ml  2.00/2.00 EUR"},
		{5000, 4019, vend.UnitML, 200, 200, "[##########] 100%  5000/4019 ml  2.00/2.00 EUR"}, // overshoot clamps the bar
		{1, 1, vend.UnitCycle, 350, 350, "[##########] 100%  1/1 cycle  3.50/3.50 EUR"},
		{0, 2, vend.UnitItem, 0, 300, "[----------]   0%  0/2 items  0.00/3.00 EUR"},
		{0, 0, vend.UnitSecond, 0, 0, "[----------]   0%  0/0 s  0.00/0.00 EUR"},
	} {
		got := formatProgress(c.units, c.capUnits, c.unit, eur(c.amount), eur(c.hold), 10)
		if got != c.want {
			t.Errorf("formatProgress(%d, %d, %s, %d, %d) = %q, want %q", c.units, c.capUnits, c.unit, c.amount, c.hold, got, c.want)
		}
	}
}

func TestFormatPrice(t *testing.T) {
	for _, c := range []struct {
		p    phoneapi.Price
		u    phoneapi.Unit
		want string
	}{
		{vend.Price{Minor: 50, Per: 1000}, vend.UnitML, "0.50 EUR per 1000 ml"},
		{vend.Price{Minor: 350, Per: 1}, vend.UnitCycle, "3.50 EUR per cycle"},
		{vend.Price{Minor: 100, Per: 600}, vend.UnitSecond, "1.00 EUR per 600 s"},
	} {
		if got := formatPrice(c.p, "EUR", c.u); got != c.want {
			t.Errorf("formatPrice(%+v, %s) = %q, want %q", c.p, c.u, got, c.want)
		}
	}
}

func TestParseAmount(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2.00", 200, true}, {"2.5", 250, true}, {"2.", 200, true}, {".5", 50, true}, {"200", 200, true}, {" 1.05 ", 105, true},
		{"0", 0, false}, {"0.00", 0, false}, {"-1", 0, false}, {"1.005", 0, false}, {"abc", 0, false}, {"", 0, false}, {".", 0, false},
	} {
		got, err := parseAmount(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseAmount(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func testNearby() []Nearby {
	return []Nearby{
		{Device: phoneapi.Device{ID: "water-1", Name: "Water", State: "idle"}, RSSI: -48, Machines: []phoneapi.Machine{
			{ID: "tap1", Kind: vend.KindWater, Name: "Water 1", Unit: vend.UnitML, Currency: "EUR", Price: vend.Price{Minor: 50, Per: 1000}, State: "idle"}}},
		{Device: phoneapi.Device{ID: "snacks", Name: "snacks", State: "busy"}, RSSI: -70, Machines: []phoneapi.Machine{
			{ID: "vm1", Kind: vend.KindVending, Name: "Vending", Unit: vend.UnitItem, Currency: "EUR", Price: vend.Price{Minor: 150, Per: 1}, State: "busy",
				Slots: []phoneapi.Slot{{ID: "A1", Name: "Cola", Price: vend.Price{Minor: 150, Per: 1}, Available: true}, {ID: "A2", Name: "Gum", Price: vend.Price{Minor: 80, Per: 1}}}}}},
	}
}

func TestFormatNearby(t *testing.T) {
	got := formatNearby(testNearby())
	want := `#  SIGNAL   DEVICE           MACHINE    NAME     STATE      PRICE
1  -48 dBm  water-1 (Water)  tap1       Water 1  idle       0.50 EUR per 1000 ml
2  -70 dBm  snacks           vm1        Vending  busy       2 slots
                               slot A1  Cola     available  1.50 EUR
                               slot A2  Gum      empty      0.80 EUR
`
	if got != want {
		t.Errorf("formatNearby =\n%s\nwant\n%s", got, want)
	}
	if got, want := formatInRange(testNearby()), "in range: water-1 -48 dBm, snacks -70 dBm"; got != want {
		t.Errorf("formatInRange = %q, want %q", got, want)
	}
}

func TestMergeNearby(t *testing.T) {
	t0 := time.Unix(1000, 0)
	dev := func(id string) *phoneapi.ResolveResponse {
		return &phoneapi.ResolveResponse{Device: phoneapi.Device{ID: phoneapi.DeviceID(id)}}
	}
	got := mergeNearby([]resolved{
		{&heard{id: "00000000000000a1", rssiSum: -80 * 4, rssiN: 4, n: 4, last: t0}, dev("far")},
		{&heard{id: "00000000000000b1", rssiSum: -60 * 2, rssiN: 2, n: 2, last: t0}, dev("near")},
		// near again, with the next window's ID heard later: that ID wins.
		{&heard{id: "00000000000000b2", rssiSum: -50 * 2, rssiN: 2, n: 2, last: t0.Add(time.Second)}, dev("near")},
		{&heard{id: "00000000000000c1", rssiSum: -80, rssiN: 1, n: 1, last: t0}, dev("also-far")},
		// a controller that measures nothing (RSSI 127): last, not in front
		{&heard{id: "00000000000000d1", n: 3, last: t0}, dev("unmeasured")},
	})
	var s []string
	for _, n := range got {
		s = append(s, fmt.Sprintf("%s %d %s %d", n.Device.ID, n.RSSI, n.ProximityID, n.Heard))
	}
	want := "near -55 00000000000000b2 4|also-far -80 00000000000000c1 1|far -80 00000000000000a1 4|unmeasured -127 00000000000000d1 3"
	if strings.Join(s, "|") != want {
		t.Errorf("mergeNearby = %s, want %s", strings.Join(s, "|"), want)
	}
}

func TestLineView(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(0, 0)
	v := &lineView{w: &b, hold: eur(200), capUnits: 4000, unit: vend.UnitML, now: func() time.Time { return now }}
	s := phoneapi.Session{State: phoneapi.StateRunning}
	for i := 1; i <= 10; i++ { // ten updates in 1 s: printed on the state change and every 500 ms
		s.Units, s.Amount = uint64(i*100), eur(int64(i*5))
		v.Update(s)
		now = now.Add(100 * time.Millisecond)
	}
	s.State = phoneapi.StateSettled
	v.Update(s)
	want := `  running    [--------------------]   2%  100/4000 ml  0.05/2.00 EUR
             [###-----------------]  15%  600/4000 ml  0.30/2.00 EUR
  settled    [#####---------------]  25%  1000/4000 ml  0.50/2.00 EUR
`
	if b.String() != want {
		t.Errorf("lineView printed\n%s\nwant\n%s", b.String(), want)
	}
}

func TestExitCodes(t *testing.T) {
	api := func(code string) error {
		return fmt.Errorf("phone: start: %w", &phoneapi.APIError{Status: 409, Kind: vend.Conflict, Code: code})
	}
	for _, c := range []struct {
		err  error
		want int
		msg  string
	}{
		{mapAPIError(api("machine.busy"), nil), ExitMachine, "phone: the machine is busy: another session is running on it; try another machine or wait (machine.busy)"},
		{mapAPIError(api("funds.insufficient"), func() string { return "1.00 EUR available" }), ExitFunds,
			"phone: not enough money: 1.00 EUR available; top up the wallet (-topup) or lower the cap (funds.insufficient)"},
		{mapAPIError(api("machine.offline"), nil), ExitMachine, ""},
		{vend.Errorf(ErrNoMachine, "heard 0 beacon IDs"), ExitNoMachine, "phone: no machine in range: heard 0 beacon IDs"},
		{mapAPIError(api("something.else"), nil), ExitError, ""},
		{errors.New("boom\nsecond line"), ExitError, "phone: boom second line"},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
		if c.msg != "" && oneLine(c.err) != c.msg {
			t.Errorf("oneLine = %q, want %q", oneLine(c.err), c.msg)
		}
	}
}

func TestTokenCache(t *testing.T) {
	path := t.TempDir() + "/sub/tokens.json"
	now := time.Now()
	var c tokenCache
	c.put(cachedToken{API: "http://a", Email: "x@e", Token: "t1", ExpiresAt: now.Add(time.Hour)})
	c.put(cachedToken{API: "http://a", Email: "y@e", Token: "t2", ExpiresAt: now.Add(time.Hour)})
	c.put(cachedToken{API: "http://a", Email: "x@e", Token: "t3", ExpiresAt: now.Add(time.Hour)})
	c.put(cachedToken{API: "http://b", Email: "x@e", Token: "old", ExpiresAt: now.Add(-time.Hour)})
	if err := writeTokenCache(path, c); err != nil {
		t.Fatal(err)
	}
	c = readTokenCache(path)
	for _, q := range []struct{ api, email, want string }{
		{"http://a", "x@e", "t3"}, {"http://a", "y@e", "t2"}, {"http://a", "", "t3"}, {"http://b", "x@e", ""}, {"http://c", "", ""},
	} {
		got, _ := c.find(q.api, q.email, now)
		if got.Token != q.want {
			t.Errorf("find(%s, %q) = %q, want %q", q.api, q.email, got.Token, q.want)
		}
	}
}

// An HCI controller that reports RSSI 127 ("not available", as the kernel's
// virtual controllers do) measured nothing: those reports count as heard
// but stay out of the signal mean (the resolve request then carries no
// rssi: the cloud refuses 127 as out of range, and the phone would have
// found no machine).
func TestCollectLeavesUnavailableRSSIOut(t *testing.T) {
	adv, err := beacon.Frame{CompanyID: beacon.DefaultCompanyID, State: beacon.Idle, TxPower: -59}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	tab := map[phoneapi.ProximityID]*heard{}
	for _, rssi := range []int{127, 127, -60, -70, 127} {
		collect(tab, ble.Report{Addr: "aa:bb:cc:dd:ee:ff", RSSI: rssi, Data: adv, At: time.Unix(1000, 0)}, beacon.DefaultCompanyID)
	}
	if len(tab) != 1 {
		t.Fatalf("%d IDs heard, want 1", len(tab))
	}
	for _, h := range tab {
		if h.n != 5 || h.rssiN != 2 || h.rssiSum != -130 {
			t.Errorf("heard %d reports, %d measured, sum %d; want 5, 2, -130", h.n, h.rssiN, h.rssiSum)
		}
	}
}
