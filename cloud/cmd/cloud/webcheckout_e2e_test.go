package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/payments/alipay/alipaytest"
	"beaconvend/cloud/payments/wechatpay/wechattest"
	"beaconvend/cloud/stickers"
	"beaconvend/cloud/store"
)

// webRig is the web checkout end to end: the cloud serving in this
// process (its configuration enabling WeChat Pay and Alipay against the
// providers' loopback peers, built on their own SDKs), a real controller
// process on a water board emulated in this process (simdev's relay
// rig), and Chromium.
type webRig struct {
	t       *testing.T
	m       *Main
	data    string
	dsn     string
	wx      *wechattest.Peer
	ali     *alipaytest.Peer
	device  string
	machine string
	b       *browsertest.Browser
}

// buildController compiles the controller program into a temp dir of t.
func buildController(t *testing.T) string {
	t.Helper()
	b := filepath.Join(t.TempDir(), "controller")
	if out, err := exec.Command("go", "build", "-o", b, "beaconvend/controller/cmd/controller").CombinedOutput(); err != nil {
		t.Fatalf("go build controller: %v\n%s", err, out)
	}
	return b
}

func newWebRig(t *testing.T, bins [2]string, dsn string) *webRig {
	t.Helper()
	r := &webRig{t: t, b: browsertest.Start(t), data: t.TempDir(), dsn: dsn, wx: wechattest.Start(t), ali: alipaytest.Start(t)}
	addr := freeLoopback(t)
	ak := r.ali.Keys
	cfg := map[string]any{"development": true, "payments": map[string]any{
		"currency":   "CNY",
		"public_url": "http://" + addr,
		"channels": []map[string]any{
			{"name": "wechatpay", "priority": 1, "base_url": r.wx.URL, "params": r.wx.Params(), "credentials": r.wx.Credentials(),
				"limits": map[string]any{"min": "0.01", "max": "500.00", "currencies": []string{"CNY"}}},
			{"name": "alipay", "priority": 2, "base_url": r.ali.URL + "/gateway.do", "params": map[string]string{"app_id": alipaytest.AppID},
				"credentials": map[string]string{"app_private_key": "file:" + ak.AppPrivateKeyFile, "alipay_public_key": "file:" + ak.AlipayPublicKeyFile},
				"limits":      map[string]any{"min": "0.01", "max": "500.00"}},
		},
	}}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// 3 L/min: 50 ml a second, so a payer sees the litres go by.
	relay, err := simdev.ProvisionRelay(ctx, simdev.RelayConfig{CloudBin: bins[0], ControllerBin: bins[1],
		DataDir: r.data, DSN: dsn, Dir: t.TempDir(), N: 1, FlowLPM: 3, Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-config", cfgFile, "-data", r.data, "-http", addr}
	if dsn != "" {
		args = append(args, "-db", dsn)
	}
	rr := &reconRig{t: t}
	r.m = rr.serve(args)
	t.Cleanup(func() {
		if err := relay.Close(); err != nil {
			t.Logf("relay close: %v", err)
		}
	})
	if err := relay.Start(ctx, r.m.MQTTURL, r.m.HTTPURL); err != nil {
		t.Fatal(err)
	}
	r.device, r.machine = relay.Devices[0].ID, relay.Devices[0].Machine
	return r
}

// cli runs a cloud command in process against the rig's data and database.
func (r *webRig) cli(args ...string) string {
	r.t.Helper()
	var out, errb bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, &errb
	// flags after the command's words, then the positional arguments
	words, rest := args[:1], args[1:]
	if args[0] == "machine" {
		words, rest = args[:2], args[2:]
	}
	full := append(append([]string{}, words...), "-data", r.data)
	if r.dsn != "" {
		full = append(full, "-db", r.dsn)
	}
	full = append(full, rest...)
	if err := m.ParseFlags(full); err != nil {
		r.t.Fatalf("cloud %v: %v\n%s", full, err, errb.String())
	}
	err := m.Run(context.Background())
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.t.Fatalf("cloud %v: %v\n%s", full, err, errb.String())
	}
	return out.String()
}

func decodeQR(t *testing.T, img image.Image) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("gozxing: %v", err)
	}
	return res.GetText()
}

func decodePNG(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// checkoutID is the checkout a progress page shows.
func checkoutID(t *testing.T, p *browsertest.Page) string {
	t.Helper()
	u := p.URL()
	i := strings.Index(u, "/m/c/")
	if i < 0 {
		t.Fatalf("not a checkout page: %s", u)
	}
	return u[i+len("/m/c/"):]
}

func pageState(p *browsertest.Page) string {
	return browsertest.Eval[string](p, `(e => e ? e.dataset.state : "")(document.getElementById("checkout"))`)
}

// reloadUntil presses "Check progress" (a page without JavaScript)
// until the checkout is in one of states.
func reloadUntil(t *testing.T, p *browsertest.Page, states ...string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := pageState(p)
		for _, want := range states {
			if s == want {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkout still %s, want %v", s, states)
		}
		time.Sleep(300 * time.Millisecond)
		if browsertest.Eval[bool](p, `!!document.getElementById("reload")`) {
			p.ClickAndLoad("#reload")
		} else {
			p.Go(p.URL())
		}
	}
}

// TestWebCheckoutInChromium runs the web checkout end to end on SQLite
// and on PostgreSQL.
func TestWebCheckoutInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cloud and the controller and runs Chromium; not with -short")
	}
	browsertest.Start(t) // before building anything: skip (or fail) here without a browser
	bins := [2]string{buildCloud(t), buildController(t)}
	t.Run("sqlite", func(t *testing.T) { webCheckoutEndToEnd(t, bins, "") })
	t.Run("postgres", func(t *testing.T) { webCheckoutEndToEnd(t, bins, svctest.PostgresDSN(t, "webcheckout")) })
}

func webCheckoutEndToEnd(t *testing.T, bins [2]string, dsn string) {
	r := newWebRig(t, bins, dsn)
	ctx := context.Background()
	st := r.m.Store

	// The operator prints the machine's sticker; its code holds the
	// machine's page, which a payer's phone opens.
	sheet := filepath.Join(t.TempDir(), "stickers.png")
	r.cli("stickers", "-device", r.device, "-public-url", r.m.HTTPURL, "-o", sheet)
	b, err := os.ReadFile(sheet)
	if err != nil {
		t.Fatal(err)
	}
	machineURL := decodeQR(t, decodePNG(t, b).(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(stickers.CodeRect(0)))
	if want := r.m.HTTPURL + "/m/" + r.device + "/" + r.machine; machineURL != want {
		t.Fatalf("the sticker's code holds %q, want %q", machineURL, want)
	}

	t.Run("off by default", func(t *testing.T) {
		p := r.b.Page(t, browsertest.Phone)
		p.Go(machineURL)
		if h := p.Text("h1"); !strings.Contains(h, "Web checkout is off") {
			t.Errorf("a machine whose web checkout was never turned on shows %q", h)
		}
		if n := browsertest.Eval[int](p, "document.forms.length"); n != 0 {
			t.Errorf("the web-off page has %d forms", n)
		}
		p.Axe()
		// Turned on, the form is there; turned off while the payer
		// chooses, the service refuses the checkout and nothing is held.
		r.cli("machine", "web-checkout", r.device, r.machine, "on")
		p.Go(machineURL)
		p.WaitFor("form.pay")
		r.cli("machine", "web-checkout", r.device, r.machine, "off")
		p.ClickAndLoad("#pay")
		if h := p.Text("h1"); !strings.Contains(h, "Web checkout is off") {
			t.Errorf("a checkout after the operator turned web checkout off: %q", h)
		}
		var n int
		if err := st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM checkouts`).Scan(&n); err != nil || n != 0 {
			t.Errorf("checkouts after a refused one: %d %v, want 0", n, err)
		}
		p.Axe()
		r.cli("machine", "web-checkout", r.device, r.machine, "on")
	})

	t.Run("guest pays with WeChat Pay, stops early, gets the rest back", func(t *testing.T) {
		p := r.b.Page(t, browsertest.Phone)
		p.Go(machineURL)
		if s := p.Text("#machine-state"); s != "Ready" {
			t.Errorf("machine state %q, want Ready", s)
		}
		if pr := p.Text("#price"); !strings.Contains(pr, "CNY per 1 L") {
			t.Errorf("price %q", pr)
		}
		p.Axe()
		p.Click(`[id="cap-u:2000"]`)
		p.Click("#source-wechatpay")
		p.ClickAndLoad("#pay")
		id := checkoutID(t, p)
		if s := pageState(p); s != "awaiting_payment" {
			t.Fatalf("checkout page state %q, want awaiting_payment", s)
		}
		p.Axe()
		c, err := st.GetCheckout(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		pay, err := st.GetPayment(ctx, c.OrderNo)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Guest || c.Channel != "wechatpay" || c.Mode != phoneapi.HoldModePrepay || c.CapUnits != 2000 {
			t.Errorf("checkout %+v: want a guest's prepaid WeChat Pay checkout for 2000 ml", c)
		}
		// The code on the page is the provider's code_url.
		if got := decodeQR(t, decodePNG(t, p.ElementPNG(".qr svg", 3))); got != pay.CodeURL || !strings.HasPrefix(got, "weixin://wxpay/bizpayurl?pr=") {
			t.Errorf("the page's QR code holds %q, want the order's code_url %q", got, pay.CodeURL)
		}

		if n := r.wx.Pay(c.OrderNo); n.Status != 204 {
			t.Fatalf("the cloud answered WeChat Pay's notification with %d", n.Status)
		}
		// The page follows the events stream: it reloads itself into the
		// running state, then the litres change in the live region
		// without a reload.
		p.Wait(`document.getElementById("checkout") && document.getElementById("checkout").dataset.state === "in_session"`)
		if live := browsertest.Eval[string](p, `document.getElementById("live").getAttribute("aria-live")`); live != "polite" {
			t.Errorf("progress region aria-live=%q", live)
		}
		browsertest.Eval[bool](p, `window.__sameDocument = true`)
		p.Wait(`window.__sameDocument && !["0 L", ""].includes(document.getElementById("units").textContent)`)
		p.Axe()
		// Stop, tapped twice: both answers are the progress page, not
		// an error.
		stops := browsertest.Run(p, chromedp.Evaluate[[]string](`(async () => {
			const f = document.querySelector("form[action$='/stop']");
			const body = new URLSearchParams(new FormData(f)).toString();
			const post = () => fetch(f.action, {method: "POST", body, headers: {"Content-Type": "application/x-www-form-urlencoded"}});
			const rs = await Promise.all([post(), post()]);
			return Promise.all(rs.map(async r => r.status + " " + r.url + " " + (await r.text()).includes('id="checkout"')));
		})()`, chromedp.EvalAwaitPromise))
		for _, s := range stops {
			if want := "200 " + r.m.HTTPURL + "/m/c/" + id + " true"; s != want {
				t.Errorf("a Stop tapped twice answered %q, want %q", s, want)
			}
		}
		p.Go(r.m.HTTPURL + "/m/c/" + id)
		p.Wait(`document.getElementById("checkout") && ["settling", "done"].includes(document.getElementById("checkout").dataset.state)`)

		// WeChat Pay confirms the refund of the unused part later.
		var refunds []store.Refund
		deadline := time.Now().Add(30 * time.Second)
		for len(refunds) == 0 && time.Now().Before(deadline) {
			refunds, _ = st.OrderRefunds(ctx, c.OrderNo)
			time.Sleep(100 * time.Millisecond)
		}
		if len(refunds) != 1 {
			t.Fatalf("refunds of order %s: %+v, want one", c.OrderNo, refunds)
		}
		r.wx.RefundSuccess(refunds[0].RefundNo)
		p.Wait(`document.getElementById("checkout") && document.getElementById("checkout").dataset.state === "done"`)
		p.Axe()

		c, err = st.GetCheckout(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := st.GetSession(ctx, c.Session)
		if err != nil {
			t.Fatal(err)
		}
		cost, _ := c.Price.Cost(ss.Units)
		if c.State != phoneapi.CheckoutDone || ss.Units == 0 || ss.Units >= c.CapUnits || c.Captured != cost || c.Returned != c.Hold-cost || c.Returned <= 0 {
			t.Errorf("checkout %+v, session units %d: want done, stopped early, captured %d, the rest %d returned", c, ss.Units, cost, c.Hold-cost)
		}
		refunds, _ = st.OrderRefunds(ctx, c.OrderNo)
		if len(refunds) != 1 || refunds[0].Channel != "wechatpay" || refunds[0].OrderNo != c.OrderNo || refunds[0].Amount.Minor != c.Returned || refunds[0].State != store.RefundSucceeded {
			t.Errorf("refunds %+v: want %d refunded to the same WeChat Pay order %s", refunds, c.Returned, c.OrderNo)
		}
		if imb, err := st.LedgerImbalance(ctx); err != nil || len(imb) != 0 && imb["CNY"] != 0 {
			t.Errorf("ledger imbalance %v %v", imb, err)
		}

		// The receipt: no account, no cookie needed.
		p.ClickAndLoad("#receipt")
		p.WaitFor("table.refunds")
		want := fmt.Sprintf("%d.%02d CNY", c.Returned/100, c.Returned%100)
		if got := p.Text("#returned"); got != want {
			t.Errorf("receipt returned %q, want %q", got, want)
		}
		if got := p.Text("table.refunds tbody"); !strings.Contains(got, "WeChat Pay") || !strings.Contains(got, "refunded") || !strings.Contains(got, want) {
			t.Errorf("receipt refunds %q: want %s refunded to WeChat Pay", got, want)
		}
		p.Axe()
		receipt := p.URL()
		other := r.b.Page(t, browsertest.Phone) // another browser, no cookies
		other.Go(receipt)
		if got := other.Text("#returned"); got != want {
			t.Errorf("the receipt link in another browser shows returned %q, want %q", got, want)
		}
		other.Go(r.m.HTTPURL + "/m/c/" + id)
		if h := other.Text("h1"); !strings.Contains(h, "not found") || browsertest.Eval[bool](other, `!!document.getElementById("checkout")`) {
			t.Errorf("the checkout page in another browser: %q, want it refused", h)
		}
		other.Axe()
	})

	t.Run("double submit opens one checkout", func(t *testing.T) {
		var before int
		st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM checkouts`).Scan(&before)
		p := r.b.Page(t, browsertest.Phone)
		p.Go(machineURL)
		p.Click("#source-alipay")
		// The form posted twice at once, as a double tap on a slow link
		// does (the page's script would hold the second back: bypass it).
		urls := browsertest.Run(p, chromedp.Evaluate[[]string](`(async () => {
			const f = document.querySelector("form.pay");
			const body = new URLSearchParams(new FormData(f)).toString();
			const post = () => fetch(f.action, {method: "POST", body, headers: {"Content-Type": "application/x-www-form-urlencoded"}});
			const rs = await Promise.all([post(), post()]);
			return rs.map(r => r.ok ? r.url : "status " + r.status);
		})()`, chromedp.EvalAwaitPromise))
		if len(urls) != 2 || urls[0] != urls[1] || !strings.Contains(urls[0], "/m/c/") {
			t.Fatalf("two posts of one form landed on %v, want the same checkout page", urls)
		}
		var after int
		st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM checkouts`).Scan(&after)
		if after != before+1 {
			t.Errorf("two posts of one form opened %d checkouts, want 1", after-before)
		}
		// Stop before paying: cancelled, nothing taken.
		p.Go(urls[0])
		p.Axe()
		p.ClickAndLoad("#stop")
		p.Wait(`document.getElementById("checkout") && document.getElementById("checkout").dataset.state === "cancelled"`)
		c, err := st.GetCheckout(ctx, urls[0][strings.Index(urls[0], "/m/c/")+5:])
		if err != nil || c.State != phoneapi.CheckoutCancelled || c.Captured != 0 {
			t.Errorf("checkout after Stop before paying: %+v %v, want cancelled, nothing captured", c, err)
		}
		p.Axe()
	})

	t.Run("without JavaScript, Alipay", func(t *testing.T) {
		vp := browsertest.Phone
		vp.NoScript = true
		p := r.b.Page(t, vp)
		p.Go(machineURL)
		p.Axe()
		p.Click(`[id="cap-u:1000"]`)
		p.Click("#source-alipay")
		p.ClickAndLoad("#pay")
		id := checkoutID(t, p)
		p.Axe()
		c, err := st.GetCheckout(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeQR(t, decodePNG(t, p.ElementPNG(".qr svg", 3))); !strings.HasPrefix(got, "https://qr.alipay.com/") {
			t.Errorf("the page's QR code holds %q, want Alipay's code", got)
		}
		if n, err := r.ali.Pay(c.OrderNo); err != nil || n.Notify.Body != "success" {
			t.Fatalf("Alipay's notification: %+v %v", n, err)
		}
		reloadUntil(t, p, "in_session", "settling", "done")
		p.Axe()
		if pageState(p) == "in_session" {
			p.ClickAndLoad("#stop")
		}
		reloadUntil(t, p, "done")
		p.Axe()
		p.ClickAndLoad("#receipt")
		p.WaitFor("#returned")
		p.Axe()
		c, _ = st.GetCheckout(ctx, id)
		if c.State != phoneapi.CheckoutDone || c.Captured+c.Returned != c.Hold {
			t.Errorf("checkout %+v: want done, captured + returned = hold", c)
		}
	})
}
