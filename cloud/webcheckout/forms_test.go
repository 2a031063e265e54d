package webcheckout_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/service"
	"beaconvend/cloud/webcheckout"
)

func newServer(t *testing.T, f *fakeBackend) *httptest.Server {
	t.Helper()
	h, err := webcheckout.New(webcheckout.Options{Backend: f})
	if err != nil {
		t.Fatal(err)
	}
	return newServerWith(t, h)
}

func newServerWith(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var hidden = regexp.MustCompile(`<input type="hidden" name="([\w.]+)" value="([^"]*)">`)

// machineForm GETs the machine page and returns its hidden fields.
func machineForm(t *testing.T, c *http.Client, base string) url.Values {
	t.Helper()
	res, err := c.Get(base + "/m/dev1/tap1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("machine page: %d\n%s", res.StatusCode, body)
	}
	v := url.Values{}
	for _, m := range hidden.FindAllStringSubmatch(string(body), -1) {
		v.Set(m[1], m[2])
	}
	return v
}

func post(t *testing.T, c *http.Client, u string, v url.Values) (*http.Response, string) {
	t.Helper()
	res, err := c.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

// A form posted without the browser's cookie, with another browser's
// token, or with a token altered, opens nothing.
func TestForgedFormsOpenNothing(t *testing.T) {
	f := newFake()
	srv := newServer(t, f)
	alice, mallory := client(t), client(t)
	form := machineForm(t, alice, srv.URL)
	form.Set("cap", "u:1000")
	form.Set("source", "wechatpay")
	mform := machineForm(t, mallory, srv.URL)

	for name, try := range map[string]func() *http.Response{
		"no cookie": func() *http.Response {
			r, _ := post(t, &http.Client{CheckRedirect: client(t).CheckRedirect}, srv.URL+"/m/dev1/tap1/checkout", form)
			return r
		},
		"another browser's token": func() *http.Response {
			v := cloneValues(form)
			v.Set("csrf", mform.Get("csrf"))
			r, _ := post(t, alice, srv.URL+"/m/dev1/tap1/checkout", v)
			return r
		},
		"token for another form": func() *http.Response {
			v := cloneValues(form)
			v.Set("form", mform.Get("form"))
			r, _ := post(t, alice, srv.URL+"/m/dev1/tap1/checkout", v)
			return r
		},
		"altered token": func() *http.Response {
			v := cloneValues(form)
			v.Set("csrf", strings.Repeat("0", 64))
			r, _ := post(t, alice, srv.URL+"/m/dev1/tap1/checkout", v)
			return r
		},
	} {
		if res := try(); res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, res.StatusCode)
		}
	}
	if f.calls != 0 {
		t.Fatalf("forged forms reached the service %d times", f.calls)
	}
	res, _ := post(t, alice, srv.URL+"/m/dev1/tap1/checkout", form)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/m/c/co1" || f.calls != 1 {
		t.Fatalf("the genuine form: %d %s, %d calls; want 303 to /m/c/co1, 1 call", res.StatusCode, res.Header.Get("Location"), f.calls)
	}
	var tok *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "wc_token" {
			tok = c
		}
	}
	if tok == nil || tok.Value != "tok-co1" || !tok.HttpOnly || tok.SameSite != http.SameSiteStrictMode || tok.Path != "/m/c/co1" {
		t.Errorf("token cookie = %+v, want tok-co1, HttpOnly, SameSite=Strict, Path=/m/c/co1", tok)
	}
	// Stop: the checkout's token and a stop form's token are both needed.
	res, _ = post(t, mallory, srv.URL+"/m/c/co1/stop", url.Values{"csrf": {mform.Get("csrf")}})
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("stop with a forged token: %d, want 400", res.StatusCode)
	}
	if co := f.checkouts["co1"]; co.State != "awaiting_payment" {
		t.Errorf("a forged stop changed the checkout to %s", co.State)
	}
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// Each bad form field is refused with a message naming it, and the
// service is not called.
func TestBadFormFields(t *testing.T) {
	f := newFake()
	srv := newServer(t, f)
	c := client(t)
	for _, tc := range []struct {
		name, cap, custom, source, want string
	}{
		{"no source", "u:1000", "", "", "choose how to pay"},
		{"wallet", "u:1000", "", "wallet", "choose how to pay"},
		{"unknown source", "u:1000", "", "bitcoin", "choose how to pay"},
		{"no cap", "", "", "alipay", "choose an amount"},
		{"zero units", "u:0", "", "alipay", "amount"},
		{"custom words", "custom", "ten", "alipay", "write it like 3.00"},
		{"custom three decimals", "custom", "1.005", "alipay", "write it like 3.00"},
		{"custom negative", "custom", "-1", "alipay", "write it like 3.00"},
		{"custom zero", "custom", "0.00", "alipay", "more than zero"},
	} {
		v := machineForm(t, c, srv.URL)
		v.Set("cap", tc.cap)
		v.Set("custom", tc.custom)
		v.Set("source", tc.source)
		res, body := post(t, c, srv.URL+"/m/dev1/tap1/checkout", v)
		if res.StatusCode != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, body lacks %q", tc.name, res.StatusCode, tc.want)
		}
	}
	if f.calls != 0 {
		t.Errorf("bad forms reached the service %d times", f.calls)
	}
	v := machineForm(t, c, srv.URL)
	v.Set("cap", "custom")
	v.Set("custom", "3.5")
	v.Set("source", "alipay")
	if res, body := post(t, c, srv.URL+"/m/dev1/tap1/checkout", v); res.StatusCode != 303 {
		t.Fatalf("custom 3.5: %d\n%s", res.StatusCode, body)
	}
	if a := f.lastReq.Cap.Amount; a == nil || a.Minor != 350 || a.Currency != "CNY" || f.lastReq.ExpectedPrice == nil || *f.lastReq.ExpectedPrice != f.offer.Price {
		t.Errorf("request = %+v, want a cap of 350 CNY and the shown price", f.lastReq)
	}
}

// The price the payer was shown goes with the request: for a vending
// machine, the chosen slot's own price, not the machine's.
func TestShownPriceGoesWithTheRequest(t *testing.T) {
	f := newFake()
	f.offer.Kind, f.offer.Unit, f.offer.Price = "vending", 4, phoneapi.Price{Minor: 100, Per: 1}
	f.offer.Slots = []service.OfferSlot{{ID: "A1", Name: "Cola", Price: phoneapi.Price{Minor: 150, Per: 1}}, {ID: "A2", Name: "Water", Price: phoneapi.Price{Minor: 90, Per: 1}}}
	srv := newServer(t, f)
	c := client(t)
	for _, slot := range []service.OfferSlot{f.offer.Slots[0], f.offer.Slots[1]} {
		res, err := c.Get(srv.URL + "/m/dev1/tap1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		v := url.Values{}
		for _, m := range hidden.FindAllStringSubmatch(string(body), -1) {
			v.Set(m[1], m[2])
		}
		// the value the slot's radio button posts
		radio := regexp.MustCompile(`id="slot-` + slot.ID + `" value="([^"]*)"`).FindStringSubmatch(string(body))
		if radio == nil {
			t.Fatalf("no radio button for slot %s", slot.ID)
		}
		v.Set("slot", radio[1])
		v.Set("source", "wechatpay")
		if res, body := post(t, c, srv.URL+"/m/dev1/tap1/checkout", v); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("slot %s: %d\n%s", slot.ID, res.StatusCode, body)
		}
		if r := f.lastReq; r.Slot != phoneapi.MachineID(slot.ID) || r.ExpectedPrice == nil || *r.ExpectedPrice != slot.Price {
			t.Errorf("slot %s: request %+v, want the slot's price %v as shown", slot.ID, r, slot.Price)
		}
	}
}

// Past the payer's budget a form opens nothing and says when to retry.
func TestCheckoutLimit(t *testing.T) {
	f := newFake()
	left := 2
	h, err := webcheckout.New(webcheckout.Options{Backend: f, Limit: func(*http.Request) time.Duration {
		if left == 0 {
			return 30 * time.Second
		}
		left--
		return 0
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServerWith(t, h)
	c := client(t)
	for i := range 3 {
		v := machineForm(t, c, srv.URL)
		v.Set("cap", "u:1000")
		v.Set("source", "alipay")
		res, body := post(t, c, srv.URL+"/m/dev1/tap1/checkout", v)
		switch {
		case i < 2 && res.StatusCode != 303:
			t.Fatalf("checkout %d: %d", i, res.StatusCode)
		case i == 2 && (res.StatusCode != 429 || res.Header.Get("Retry-After") != "31" || !strings.Contains(body, "Try again in 31 seconds")):
			t.Fatalf("checkout past the budget: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
		}
	}
	if f.calls != 2 {
		t.Errorf("the service saw %d checkouts, want 2", f.calls)
	}
}
