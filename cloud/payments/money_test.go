package payments_test

import (
	"errors"
	"testing"

	"beaconvend/cloud/payments"
)

func TestParseMinor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"12.34", 1234, true}, {"12.3", 1230, true}, {"12", 1200, true}, {"0.01", 1, true}, {"-0.50", -50, true},
		{"0.1", 10, true}, {"999999999999999.99", 99999999999999999, true},
		{"", 0, false}, {"1.234", 0, false}, {"1.", 0, false}, {".5", 0, false}, {"1e3", 0, false}, {"1,5", 0, false},
		{"¥1", 0, false}, {"1 .5", 0, false}, {"9999999999999999", 0, false}, {"--1", 0, false},
	} {
		got, err := payments.ParseMinor(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseMinor(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if !tc.ok && !errors.Is(err, payments.ErrAmount) {
			t.Errorf("ParseMinor(%q) = %d, %v; want ErrAmount", tc.in, got, err)
		}
	}
}

func TestFormatMinorRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 5, 10, 99, 100, 1234, -50, -1234, 99999999999} {
		s := payments.FormatMinor(v)
		back, err := payments.ParseMinor(s)
		if err != nil || back != v {
			t.Errorf("ParseMinor(FormatMinor(%d) = %q) = %d, %v", v, s, back, err)
		}
	}
}

func FuzzParseMinor(f *testing.F) {
	for _, s := range []string{"12.34", "-0.5", "1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := payments.ParseMinor(s)
		if err != nil {
			return
		}
		if back, err := payments.ParseMinor(payments.FormatMinor(v)); err != nil || back != v {
			t.Fatalf("%q → %d → %q → %d, %v", s, v, payments.FormatMinor(v), back, err)
		}
	})
}
