package vend_test

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"beaconvend/app-protocol/vend"
)

func TestCost(t *testing.T) {
	cases := []struct {
		p     vend.Price
		units uint64
		want  int64
		err   error
	}{
		{vend.Price{Minor: 50, Per: 1000}, 1234, 61, nil},
		{vend.Price{Minor: 50, Per: 1000}, 0, 0, nil},
		{vend.Price{Minor: 50, Per: 1000}, 19, 0, nil}, // 0.95 minor rounds down
		{vend.Price{Minor: 350, Per: 1}, 2, 700, nil},
		{vend.Price{Minor: 0, Per: 1}, 99, 0, nil},
		{vend.Price{Minor: math.MaxInt64, Per: 1}, 1, math.MaxInt64, nil},
		{vend.Price{Minor: math.MaxInt64, Per: 1}, 2, 0, vend.ErrOverflow},
		{vend.Price{Minor: math.MaxInt64, Per: 2}, 2, math.MaxInt64, nil}, // intermediate exceeds 64 bits, result fits
		{vend.Price{Minor: 1, Per: 0}, 1, 0, vend.ErrPrice},
		{vend.Price{Minor: -1, Per: 1}, 1, 0, vend.ErrPrice},
	}
	for _, tc := range cases {
		got, err := tc.p.Cost(tc.units)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%+v.Cost(%d) = %d, %v; want %d, %v", tc.p, tc.units, got, err, tc.want, tc.err)
		}
	}
}

// UnitsFor is the inverse of Cost: the largest n with Cost(n) <= budget.
func TestUnitsForInvertsCost(t *testing.T) {
	prices := []vend.Price{{Minor: 50, Per: 1000}, {Minor: 30, Per: 1}, {Minor: 7, Per: 3}, {Minor: 1000, Per: 7}, {Minor: 1, Per: 1}}
	for _, p := range prices {
		for budget := int64(1); budget < 500; budget += 7 {
			n, err := p.UnitsFor(budget)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := p.Cost(n)
			c1, _ := p.Cost(n + 1)
			if c > budget || c1 <= budget {
				t.Fatalf("%+v.UnitsFor(%d) = %d: cost %d, cost of one more %d", p, budget, n, c, c1)
			}
		}
	}
	if n, _ := (vend.Price{Minor: 0, Per: 1}).UnitsFor(100); n != 0 {
		t.Errorf("free price buys %d units, want 0 (never unbounded)", n)
	}
}

func TestAmount(t *testing.T) {
	a := vend.Amount{Minor: 150, Currency: "EUR"}
	if s := a.String(); s != "1.50 EUR" {
		t.Errorf("String = %q", s)
	}
	if s := (vend.Amount{Minor: -5, Currency: "EUR"}).String(); s != "-0.05 EUR" {
		t.Errorf("String = %q", s)
	}
	if _, err := a.Add(vend.Amount{Minor: 1, Currency: "CNY"}); !errors.Is(err, vend.ErrMismatch) {
		t.Errorf("Add across currencies: %v", err)
	}
	if _, err := (vend.Amount{Minor: math.MaxInt64, Currency: "EUR"}).Add(vend.Amount{Minor: 1, Currency: "EUR"}); !errors.Is(err, vend.ErrOverflow) {
		t.Errorf("Add overflow: %v", err)
	}
	for _, c := range []vend.Currency{"", "EU", "eur", "EURO", "E1R"} {
		if err := c.Validate(); !errors.Is(err, vend.ErrCurrency) {
			t.Errorf("Currency(%q).Validate() = %v", c, err)
		}
	}
}

func TestSessionID(t *testing.T) {
	s := vend.NewSessionID()
	p, err := vend.ParseSessionID(s.String())
	if err != nil || p != s {
		t.Fatalf("round trip %s: %s, %v", s, p, err)
	}
	if s.String()[14] != '4' {
		t.Errorf("not a version-4 UUID: %s", s)
	}
	for _, bad := range []string{"", "6b1f0c3e8a524d079e312f4c5a6b7c8d", "6b1f0c3e-8a52-4d07-9e31-2f4c5a6b7c8g", "6b1f0c3e-8a52-4d07-9e31_2f4c5a6b7c8d"} {
		if _, err := vend.ParseSessionID(bad); !errors.Is(err, vend.ErrSessionID) {
			t.Errorf("ParseSessionID(%q) = %v", bad, err)
		}
	}
}

func TestIDs(t *testing.T) {
	ok := []string{"dev-0001", "a", "laundry.main_st-4"}
	bad := []string{"", "Dev", "-dev", "dev/1", "dev+", "dev#", "dev 1", string(make([]byte, 65))}
	for _, id := range ok {
		if err := vend.ValidateDeviceID(id); err != nil {
			t.Errorf("ValidateDeviceID(%q) = %v", id, err)
		}
	}
	for _, id := range bad {
		if err := vend.ValidateDeviceID(id); !errors.Is(err, vend.ErrDeviceID) {
			t.Errorf("ValidateDeviceID(%q) = %v", id, err)
		}
	}
	if err := vend.ValidateSlotID(""); err != nil {
		t.Errorf("empty slot: %v", err)
	}
	if err := vend.ValidateMachineID("Washer-3"); err != nil {
		t.Errorf("machine: %v", err)
	}
}

func TestErrorKinds(t *testing.T) {
	err := fmt.Errorf("outer: %w", vend.Errorf(vend.ErrPrice, "per is zero"))
	if vend.KindOf(err) != vend.Invalid || vend.CodeOf(err) != "money.price" {
		t.Errorf("KindOf/CodeOf = %s/%s", vend.KindOf(err), vend.CodeOf(err))
	}
	if vend.KindOf(errors.New("x")) != vend.Internal || vend.CodeOf(nil) != "" {
		t.Errorf("plain errors are internal; nil has no code")
	}
	if err.Error() != "outer: vend: invalid price: per is zero" {
		t.Errorf("message = %q", err.Error())
	}
}

func TestUnitAndOutcomeText(t *testing.T) {
	for _, u := range []vend.Unit{vend.UnitML, vend.UnitSecond, vend.UnitCycle, vend.UnitItem} {
		b, _ := u.MarshalText()
		var back vend.Unit
		if err := back.UnmarshalText(b); err != nil || back != u {
			t.Errorf("unit %s round trip: %v", u, err)
		}
		if vend.MachineKind("x").Unit() != 0 {
			t.Error("unknown kind has a unit")
		}
	}
	var o vend.Outcome
	if err := o.UnmarshalText([]byte("jammed")); !errors.Is(err, vend.ErrOutcome) {
		t.Errorf("unknown outcome: %v", err)
	}
}
