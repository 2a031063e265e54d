package webcheckout

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
)

// A custom amount parses to exact minor units or to a clear error, never
// a panic; what parses prints back as the same amount.
func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{"3", "3.5", "3.50", "0.01", "1000000.00", "", ".5", "1.", "-1", "1e3", "１", " 2.00 ", "9999999.99", "99999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseMoney(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "webcheckout: ") || vend.KindOf(err) != vend.Invalid {
				t.Fatalf("parseMoney(%q) error %q: want an invalid webcheckout error", s, err)
			}
			return
		}
		if n <= 0 || n > 999999999 {
			t.Fatalf("parseMoney(%q) = %d out of range", s, n)
		}
		back := strconv.FormatInt(n/100, 10) + "." + strconv.FormatInt(100+n%100, 10)[1:]
		if m, err := parseMoney(back); err != nil || m != n {
			t.Fatalf("parseMoney(%q) = %d, but %q parses to %d, %v", s, n, back, m, err)
		}
	})
}

// Any posted form gives a valid request or an error of kind invalid.
func FuzzCheckoutForm(f *testing.F) {
	offers := []service.MachineOffer{
		{Device: "d1", Machine: "tap1", Kind: vend.KindWater, Unit: vend.UnitML, Price: vend.Price{Minor: 50, Per: 1000}, Currency: "CNY",
			Sources: []phoneapi.PaymentSource{{ID: "wallet", Kind: phoneapi.SourceWallet}, {ID: "alipay", Kind: phoneapi.SourceAlipay}}},
		{Device: "d1", Machine: "vm1", Kind: vend.KindVending, Unit: vend.UnitItem, Price: vend.Price{Minor: 150, Per: 1}, Currency: "CNY",
			Slots:   []service.OfferSlot{{ID: "A1", Price: vend.Price{Minor: 150, Per: 1}}, {ID: "B1", Empty: true, Price: vend.Price{Minor: 150, Per: 1}}},
			Sources: []phoneapi.PaymentSource{{ID: "wechatpay", Kind: phoneapi.SourceWeChatPay}}},
	}
	for _, s := range []string{"cap=u:1000&source=alipay&price=50/1000", "cap=custom&custom=2.5&source=alipay", "slot=A1&source=wechatpay&price.A1=150/1", "slot=A1&source=wechatpay&price.A1=1/x",
		"slot=B1&source=wechatpay", "cap=u:18446744073709551615&source=alipay", "price=1/0&cap=u:1&source=alipay", "source=wallet&cap=u:5"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, body string, vending bool) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		o := offers[0]
		if vending {
			o = offers[1]
		}
		req, err := parseCheckoutForm(o, form)
		if err != nil {
			if vend.KindOf(err) != vend.Invalid {
				t.Fatalf("form %q: error %v of kind %s, want invalid", body, err, vend.KindOf(err))
			}
			return
		}
		if verr := req.Validate(); verr != nil {
			t.Fatalf("form %q gave an invalid request %+v: %v", body, req, verr)
		}
		if req.Source == "wallet" || string(req.Device) != o.Device || string(req.Machine) != o.Machine {
			t.Fatalf("form %q gave %+v", body, req)
		}
		if vending && (req.Slot != "A1" || req.Cap.Units != 1) {
			t.Fatalf("form %q: vending request %+v, want slot A1 (B1 is sold out), one item", body, req)
		}
	})
}
