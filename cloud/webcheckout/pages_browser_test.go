package webcheckout_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/service"
)

// The pages' own layout and accessibility, one state at a time, against
// the in-memory backend (the end-to-end tests drive the real service):
// each page renders at a phone's size with no serious or critical axe
// finding, with and without JavaScript.
func TestPagesAccessible(t *testing.T) {
	b := browsertest.Start(t)
	for _, noScript := range []bool{false, true} {
		name := "js"
		if noScript {
			name = "nojs"
		}
		t.Run(name, func(t *testing.T) {
			f := newFake()
			f.offer.Kind, f.offer.State = "vending", "busy"
			srv := newServer(t, f)
			vp := browsertest.Phone
			vp.NoScript = noScript
			p := b.Page(t, vp)

			// vending machine with a sold-out slot
			f.mu.Lock() // the page's script may be asking for the state
			f.offer.Slots = []service.OfferSlot{{ID: "s1", Name: "Water 0.5 L", Price: f.offer.Price}, {ID: "s2", Name: "Cola", Price: f.offer.Price, Empty: true}}
			f.offer.Kind = "vending"
			f.mu.Unlock()
			p.Go(srv.URL + "/m/dev1/tap1")
			if d := browsertest.Eval[bool](p, `document.getElementById("slot-s2").disabled`); !d {
				t.Error("the sold-out slot is not disabled")
			}
			p.Axe()

			f.mu.Lock() // the page's script may be asking for the state
			f.offer.Kind, f.offer.Slots = "water", nil
			f.mu.Unlock()
			p.Go(srv.URL + "/m/dev1/tap1")
			if got := p.Text("#machine-state"); !strings.Contains(got, "In use") {
				t.Errorf("state = %q, want In use", got)
			}
			p.Axe()
			if !noScript { // the state follows the machine without a reload
				browsertest.Eval[bool](p, `window.__samePage = true`)
				f.mu.Lock()
				f.offer.State = "fault"
				f.mu.Unlock()
				p.Wait(`window.__samePage && document.getElementById("machine-state").innerText.includes("Out of order")`)
				if sh := browsertest.Eval[string](p, `document.querySelector("#machine-state .shape").className`); sh != "shape shape-triangle" {
					t.Errorf("shape %q after the machine faulted, want the triangle", sh)
				}
				f.mu.Lock()
				f.offer.State = "busy"
				f.mu.Unlock()
			}
			p.Click("#source-alipay")
			p.ClickAndLoad("#pay")
			p.WaitFor(".qr svg")
			if !strings.HasSuffix(p.URL(), "/m/c/co1") {
				t.Errorf("after Pay: %s, want /m/c/co1", p.URL())
			}
			p.Axe()

			f.mu.Lock()
			co := f.checkouts["co1"]
			co.State, co.Units, co.Captured, co.Returned = phoneapi.CheckoutDone, 1500, phoneapi.Amount{Minor: 75, Currency: "CNY"}, phoneapi.Amount{Minor: 25, Currency: "CNY"}
			co.Refunds = []phoneapi.RefundPart{{RefundNo: "rf1", Order: co.Order, Source: "alipay", Amount: co.Returned, State: phoneapi.RefundSucceeded}}
			f.checkouts["co1"] = co
			f.mu.Unlock()
			p.Go(srv.URL + "/m/c/co1")
			p.Axe()
			p.ClickAndLoad("#receipt")
			p.WaitFor("table.refunds")
			if got := p.Text("#returned"); got != "0.25 CNY" {
				t.Errorf("receipt returned = %q", got)
			}
			p.Axe()

			// Another amount, typed: with scripts typing chooses it,
			// without them the payer picks "Another amount" too.
			p.Go(srv.URL + "/m/dev1/tap1")
			if noScript {
				p.Click("#cap-custom")
			}
			p.Click("#custom")
			p.Do(chromedp.KeyEvent("3.50"))
			p.ClickAndLoad("#pay")
			if a := f.lastReq.Cap.Amount; a == nil || a.Minor != 350 {
				t.Errorf("typed 3.50: request cap %+v, want 350 minor units", f.lastReq.Cap)
			}

			// A card: the client secret would go to Stripe.js, which the
			// policy does not load; the page says so and never shows it.
			f.mu.Lock() // the page's script may be asking for the state
			f.offer.Sources = append(f.offer.Sources, phoneapi.PaymentSource{ID: "card", Kind: phoneapi.SourceCard, Name: "Card"})
			f.mu.Unlock()
			p.Go(srv.URL + "/m/dev1/tap1")
			p.Click("#source-card")
			p.ClickAndLoad("#pay")
			if got := p.Text("#pay-h"); !strings.Contains(got, "by card") {
				t.Errorf("card checkout heading %q", got)
			}
			if html := browsertest.Eval[string](p, "document.documentElement.outerHTML"); strings.Contains(html, "pi_secret_") || strings.Contains(html, "<svg") {
				t.Error("the card page shows the client secret or a code")
			}
			p.Axe()

			f.mu.Lock() // the page's script may be asking for the state
			f.offer.WebCheckout = false
			f.mu.Unlock()
			p.Go(srv.URL + "/m/dev1/tap1")
			if n := browsertest.Eval[int](p, `document.forms.length`); n != 0 {
				t.Errorf("the web-off page has %d forms", n)
			}
			p.Axe()
			p.Go(srv.URL + "/m/dev1/nope")
			p.Axe()
		})
	}
}
