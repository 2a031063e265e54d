package payments

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
)

// ParseMinor parses a decimal amount in major units with at most two
// decimals ("12.34", "12.3", "12", "-0.50") into minor units exactly,
// without a float. Anything else is ErrAmount naming the text.
func ParseMinor(s string) (int64, error) {
	t := strings.TrimSpace(s)
	neg := strings.HasPrefix(t, "-")
	if neg {
		t = t[1:]
	}
	whole, frac, dot := strings.Cut(t, ".")
	if whole == "" || len(frac) > 2 || (dot && frac == "") || len(whole) > 15 {
		return 0, errAmount(s)
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return 0, errAmount(s)
		}
	}
	for len(frac) < 2 {
		frac += "0"
	}
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errAmount(s)
	}
	v := w*100 + f
	if neg {
		v = -v
	}
	return v, nil
}

// FormatMinor formats minor units as a decimal with two places: 1234 is
// "12.34", 5 is "0.05".
func FormatMinor(minor int64) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return sign + strconv.FormatInt(minor/100, 10) + "." + strconv.FormatInt(100+minor%100, 10)[1:]
}

func errAmount(s string) error {
	return &amountError{s}
}

type amountError struct{ text string }

func (e *amountError) Error() string { return ErrAmount.Msg + ": " + strconv.Quote(e.text) }
func (e *amountError) Unwrap() error { return ErrAmount }

// NewOrderNo returns a fresh order (or refund) number: prefix and 24 hex
// digits, at most 32 characters of [A-Za-z0-9_], which both WeChat Pay
// (6–32) and Alipay (up to 64) accept.
func NewOrderNo(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
