package phoneapi_test

import (
	"errors"
	"strings"
	"testing"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

func TestValidateNamesTheField(t *testing.T) {
	eur := func(m int64) *vend.Amount { return &vend.Amount{Minor: m, Currency: "EUR"} }
	rssi := 40
	start := func(f func(r *phoneapi.StartSessionRequest)) *phoneapi.StartSessionRequest {
		r := &phoneapi.StartSessionRequest{Device: "d1", Machine: "m1", ProximityID: "0011223344556677", Cap: phoneapi.Cap{Units: 1}, Source: "wallet"}
		f(r)
		return r
	}
	tests := []struct {
		v     interface{ Validate() error }
		field string // "" for valid
	}{
		{start(func(*phoneapi.StartSessionRequest) {}), ""},
		{start(func(r *phoneapi.StartSessionRequest) { r.Device = "" }), "device"},
		{start(func(r *phoneapi.StartSessionRequest) { r.Machine = "m/1" }), "machine"},
		{start(func(r *phoneapi.StartSessionRequest) { r.Slot = "-x" }), "slot"},
		{start(func(r *phoneapi.StartSessionRequest) { r.ProximityID = "00112233445566" }), "proximity_id"},
		{start(func(r *phoneapi.StartSessionRequest) { r.Cap = phoneapi.Cap{} }), "cap"},
		{start(func(r *phoneapi.StartSessionRequest) { r.Cap = phoneapi.Cap{Amount: eur(0)} }), "cap.amount.minor"},
		{start(func(r *phoneapi.StartSessionRequest) {
			r.Cap = phoneapi.Cap{Amount: &vend.Amount{Minor: 5, Currency: "eur"}}
		}), "cap.amount.currency"},
		{start(func(r *phoneapi.StartSessionRequest) { r.Source = "" }), "source"},
		{&phoneapi.ResolveRequest{ProximityID: "3fa8c2d10b9e4471", RSSI: &rssi}, "rssi"},
		{&phoneapi.ResolveRequest{ProximityID: "3fa8c2d10b9e447g"}, "proximity_id"},
		{&phoneapi.TopUpRequest{Amount: *eur(-1), Source: "card"}, "amount.minor"},
		{&phoneapi.TopUpRequest{Amount: *eur(1), Source: "card"}, ""},
		{&phoneapi.SignUpRequest{Email: "Ana <ana@example.com>", Password: "long enough pw"}, "email"},
		{&phoneapi.LogInRequest{Email: "ana@example.com"}, "password"},
		{&phoneapi.Machine{ID: "m1", Kind: "toaster", Unit: vend.UnitML, Currency: "EUR", Price: vend.Price{Minor: 1, Per: 1}, State: "idle"}, "kind"},
		{&phoneapi.Receipt{Number: "R1", Session: testSession, Device: "d", Machine: "m", Units: 3, Unit: vend.UnitItem,
			Price: vend.Price{Minor: 100, Per: 1}, Currency: "EUR", Held: *eur(500), Captured: *eur(200), Released: *eur(300), Outcome: vend.OutcomeCompleted}, "captured.minor"},
	}
	for i, tt := range tests {
		err := tt.v.Validate()
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%d: %T.Validate() = %v, want nil", i, tt.v, err)
		case tt.field == "":
		case !errors.Is(err, phoneapi.ErrField) || vend.CodeOf(err) != "request.field" || vend.KindOf(err) != vend.Invalid:
			t.Errorf("%d: %T.Validate() = %v (code %s), want ErrField", i, tt.v, err, vend.CodeOf(err))
		case !strings.HasPrefix(err.Error(), "phoneapi: invalid field: "+tt.field+": "):
			t.Errorf("%d: %T.Validate() = %q, want it to name %s", i, tt.v, err, tt.field)
		}
	}
}
