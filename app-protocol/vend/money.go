package vend

import (
	"fmt"
	"math"
	"math/bits"
)

// Money errors.
var (
	ErrCurrency = E(Invalid, "money.currency", "vend: currency must be three upper-case ASCII letters (ISO 4217)")
	ErrPrice    = E(Invalid, "money.price", "vend: invalid price")
	ErrOverflow = E(Invalid, "money.overflow", "vend: amount overflows int64 minor units")
	ErrMismatch = E(Invalid, "money.currency_mismatch", "vend: currencies differ")
)

// Currency is an ISO 4217 alphabetic code such as "EUR" or "CNY".
type Currency string

// Validate returns ErrCurrency unless c is three upper-case ASCII letters.
func (c Currency) Validate() error {
	if len(c) != 3 {
		return Errorf(ErrCurrency, "%q", string(c))
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return Errorf(ErrCurrency, "%q", string(c))
		}
	}
	return nil
}

// Amount is money: Minor units (cents) of Currency. JSON: {"minor":150,"currency":"EUR"}.
type Amount struct {
	Minor    int64    `json:"minor"`
	Currency Currency `json:"currency"`
}

// String formats the amount as "1.50 EUR", assuming two decimal places, for
// logs and receipts only; never parse it back.
func (a Amount) String() string {
	sign := ""
	m := a.Minor
	if m < 0 {
		sign = "-"
		if m == math.MinInt64 {
			return fmt.Sprintf("%d minor %s", a.Minor, a.Currency)
		}
		m = -m
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, m/100, m%100, a.Currency)
}

// Add returns a+b, or ErrMismatch or ErrOverflow.
func (a Amount) Add(b Amount) (Amount, error) {
	if a.Currency != b.Currency {
		return Amount{}, Errorf(ErrMismatch, "%s and %s", a.Currency, b.Currency)
	}
	s, ok := addInt64(a.Minor, b.Minor)
	if !ok {
		return Amount{}, ErrOverflow
	}
	return Amount{Minor: s, Currency: a.Currency}, nil
}

func addInt64(a, b int64) (int64, bool) {
	s := a + b
	if (a > 0 && b > 0 && s < 0) || (a < 0 && b < 0 && s >= 0) {
		return 0, false
	}
	return s, true
}

// Price is Minor units of money per Per metered units: 50 per 1000 ml is
// 0.50 EUR a litre; 350 per 1 cycle is 3.50 a wash. Per is never zero.
type Price struct {
	Minor int64  `json:"minor"` // minor units of money, >= 0
	Per   uint32 `json:"per"`   // metered units the Minor buys, >= 1
}

// Validate returns ErrPrice when Minor is negative or Per is zero.
func (p Price) Validate() error {
	if p.Minor < 0 {
		return Errorf(ErrPrice, "minor %d is negative", p.Minor)
	}
	if p.Per == 0 {
		return Errorf(ErrPrice, "per is zero")
	}
	return nil
}

// Cost returns floor(units × Minor ÷ Per) in minor units: what units of
// delivery cost, rounded down in the payer's favour. It returns ErrPrice for
// an invalid price and ErrOverflow when the result does not fit an int64.
func (p Price) Cost(units uint64) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	hi, lo := bits.Mul64(units, uint64(p.Minor))
	if hi >= uint64(p.Per) {
		return 0, ErrOverflow
	}
	q, _ := bits.Div64(hi, lo, uint64(p.Per))
	if q > math.MaxInt64 {
		return 0, ErrOverflow
	}
	return int64(q), nil
}

// UnitsFor returns the largest number of units whose Cost is at most budget
// minor units: the cap in units that a money cap buys. Because Cost rounds
// down, that can be a little more than budget ÷ price (2.00 at 0.50 a litre
// buys 4019 ml, which cost 2.00). A budget of zero or less, and a zero
// price, buy nothing (0), so a misconfigured free price never runs unbounded.
func (p Price) UnitsFor(budget int64) (uint64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if budget <= 0 || p.Minor == 0 {
		return 0, nil
	}
	// floor(units*Minor/Per) <= budget  <=>  units*Minor < (budget+1)*Per
	// so units = ceil((budget+1)*Per / Minor) - 1.
	hi, lo := bits.Mul64(uint64(budget)+1, uint64(p.Per))
	if hi >= uint64(p.Minor) {
		return math.MaxUint64, nil
	}
	q, r := bits.Div64(hi, lo, uint64(p.Minor))
	if r == 0 {
		q--
	}
	return q, nil
}
