package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"beaconvend/app-protocol/mqttapi"
	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// replyPublisher stands in for the MQTT link to the devices: it keeps the
// commands the cloud sends and, while answer is set, hands the device's
// reply to each to the service's uplink (Service.Handle, leaf reply), as
// the broker subscription does. With answer nil the device is silent.
type replyPublisher struct {
	st     *store.Store
	mu     sync.Mutex
	svc    *service.Service
	answer func(mqttapi.Message) error // the device's verdict: nil accepted, an error refused with its code
	sent   []mqttapi.Message
}

func (p *replyPublisher) Publish(ctx context.Context, device string, msg mqttapi.Message) error {
	p.mu.Lock()
	p.sent = append(p.sent, msg)
	answer, svc := p.answer, p.svc
	p.mu.Unlock()
	if answer == nil || svc == nil {
		return nil
	}
	rep := mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), msg.Head().ID, answer(msg))
	return svc.Handle(ctx, device, mqttapi.LeafReply, rep)
}

// replyWith sets the device's verdict (nil: silent) for svc's commands.
func (p *replyPublisher) replyWith(svc *service.Service, answer func(mqttapi.Message) error) {
	p.mu.Lock()
	p.svc, p.answer = svc, answer
	p.mu.Unlock()
}

// last returns the last command sent, or nil.
func (p *replyPublisher) last() mqttapi.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sent) == 0 {
		return nil
	}
	return p.sent[len(p.sent)-1]
}

// account adds an account of role to Acme and returns its bearer token.
func (e *opEnv) account(role string) string {
	e.t.Helper()
	ctx := context.Background()
	acc, err := e.st.OperatorAccountByEmail(ctx, "ops@acme.example")
	if err != nil {
		e.t.Fatal(err)
	}
	email := role + "@acme.example"
	if _, err := e.st.CreateOperatorAccountRole(ctx, acc.OperatorID, email, role+"-password", role); err != nil {
		e.t.Fatal(err)
	}
	var tok httpapi.OperatorToken
	if code, ec := e.call("POST", "/v1/operator/auth/login", "", `{"email":"`+email+`","password":"`+role+`-password"}`, &tok); code != 200 {
		e.t.Fatalf("log-in %s = %d %s", email, code, ec)
	}
	return tok.Token
}

// audit returns Acme's audit entries whose action begins with prefix.
func (e *opEnv) audit(prefix string) []store.AuditEntry {
	e.t.Helper()
	acc, err := e.st.OperatorAccountByEmail(context.Background(), "ops@acme.example")
	if err != nil {
		e.t.Fatal(err)
	}
	es, err := e.st.AuditLog(context.Background(), acc.OperatorID, store.AuditFilter{Action: prefix})
	if err != nil {
		e.t.Fatal(err)
	}
	return es
}

// raw sends a request through the spec checker and returns the answer
// with its body read.
func (e *opEnv) raw(method, path, tok, body string) (*http.Response, []byte) {
	e.t.Helper()
	r, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Transport: newSpecChecker(e.t)}).Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// A price change is stored and sent to the device as its whole price
// table; the answer reports what the device said: accepted, refused with
// its code, or nothing within the reply timeout (the price is stored all
// the same and goes out again with the next table). A viewer may not.
func TestOperatorSetPriceReachesDevice(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		ctx := context.Background()
		owner, viewer := e.logIn("acme-password").Token, e.account("viewer")
		path := "/v1/operator/devices/dev-1/machines/tap1/price"
		stored := func() vend.Price {
			t.Helper()
			d, err := e.st.GetDevice(ctx, "dev-1")
			if err != nil {
				t.Fatal(err)
			}
			return d.Machines[0].Price
		}

		if code, ec := e.call("PUT", path, viewer, `{"price":{"minor":60,"per":1000}}`, nil); code != 403 || ec != "auth.forbidden" {
			t.Fatalf("viewer's price = %d %s", code, ec)
		}
		if p := stored(); p != (vend.Price{Minor: 50, Per: 1000}) || e.pub.last() != nil {
			t.Fatalf("after a refused change: price %v, sent %v", p, e.pub.last())
		}

		for _, c := range []struct {
			minor  int64
			answer func(mqttapi.Message) error
			status string
			code   string
		}{
			{60, func(mqttapi.Message) error { return nil }, "accepted", ""},
			{70, func(mqttapi.Message) error { return vend.E(vend.Conflict, "machine.busy", "machine busy") }, "refused", "machine.busy"},
			{80, nil, "timeout", ""},
		} {
			e.pub.replyWith(e.svc, c.answer)
			var d httpapi.OperatorDevice
			if code, ec := e.call("PUT", path, owner, `{"price":{"minor":`+strconv.FormatInt(c.minor, 10)+`,"per":1000}}`, &d); code != 200 {
				t.Fatalf("price %d = %d %s", c.minor, code, ec)
			}
			want := vend.Price{Minor: c.minor, Per: 1000}
			if d.Reply == nil || d.Reply.Status != c.status || d.Reply.Code != c.code || d.Machines[0].Price != want {
				t.Fatalf("price %d: answer %+v reply %+v, want %s %q", c.minor, d.Machines, d.Reply, c.status, c.code)
			}
			if p := stored(); p != want {
				t.Fatalf("price %d: stored %v", c.minor, p)
			}
			sp, ok := e.pub.last().(*mqttapi.SetPrices)
			if !ok || sp.ID != d.Reply.Command || sp.Currency != "EUR" || len(sp.Prices) != 1 || sp.Prices[0].Machine != "tap1" || sp.Prices[0].Price != want {
				t.Fatalf("price %d: sent %#v, want the table with %v under command %s", c.minor, e.pub.last(), want, d.Reply.Command)
			}
		}
		if es := e.audit("price.set"); len(es) != 3 || es[0].Target != "dev-1/tap1" || !strings.Contains(string(es[0].After), `"status":"timeout"`) {
			t.Fatalf("audit of three price changes: %+v", es)
		}
		if code, ec := e.call("PUT", "/v1/operator/devices/dev-1/machines/nope/price", owner, `{"price":{"minor":60,"per":1000}}`, nil); code != 404 || ec != "machine.not_found" {
			t.Fatalf("unknown machine = %d %s", code, ec)
		}
	})
}

// The web checkout switch is stored (the checkout reads it), audited with
// the state before and after, refused to a viewer, and names an unknown
// machine.
func TestOperatorWebCheckoutSwitch(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		ctx := context.Background()
		owner, viewer := e.logIn("acme-password").Token, e.account("viewer")
		path := "/v1/operator/devices/dev-1/machines/tap1/web-checkout"
		on := func() bool {
			t.Helper()
			d, err := e.st.GetDevice(ctx, "dev-1")
			if err != nil {
				t.Fatal(err)
			}
			return d.Machines[0].WebCheckout
		}
		if code, ec := e.call("PUT", path, viewer, `{"on":true}`, nil); code != 403 || ec != "auth.forbidden" || on() {
			t.Fatalf("viewer's switch = %d %s (on %v)", code, ec, on())
		}
		var got httpapi.OperatorWebCheckout
		if code, ec := e.call("PUT", path, owner, `{"on":true}`, &got); code != 200 || got != (httpapi.OperatorWebCheckout{Device: "dev-1", Machine: "tap1", WebCheckout: true}) || !on() {
			t.Fatalf("switch on = %d %s %+v (stored %v)", code, ec, got, on())
		}
		es := e.audit("machine.web_checkout")
		if len(es) != 1 || es[0].Target != "dev-1/tap1" || es[0].Email != "ops@acme.example" ||
			string(es[0].Before) != `{"on":false}` || string(es[0].After) != `{"on":true}` {
			t.Fatalf("audit of the switch: %+v", es)
		}
		if code, ec := e.call("PUT", path, owner, `{"on":false}`, &got); code != 200 || got.WebCheckout || on() {
			t.Fatalf("switch off = %d %s %+v", code, ec, got)
		}
		if n := len(e.audit("machine.web_checkout")); n != 2 {
			t.Fatalf("%d audit entries after two switches", n)
		}
		if code, ec := e.call("PUT", "/v1/operator/devices/dev-1/machines/nope/web-checkout", owner, `{"on":true}`, nil); code != 404 || ec != "machine.not_found" {
			t.Fatalf("unknown machine = %d %s", code, ec)
		}
	})
}

// The sticker sheet of a machine, in each format, is a real file of the
// declared type holding the machine's web checkout address; the PNG's
// code decodes to it.
func TestOperatorStickers(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		owner, viewer := e.logIn("acme-password").Token, e.account("viewer")
		const url = "https://cloud.example/m/dev-1/tap1"
		base := "/v1/operator/devices/dev-1/stickers/"

		resp, b := e.raw("GET", base+"svg?machine=tap1", owner, "")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" || !bytes.Contains(b, []byte("<svg")) ||
			!bytes.Contains(b, []byte("cloud.example/m/dev-1/tap1")) {
			t.Fatalf("svg = %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		resp, b = e.raw("GET", base+"png?machine=tap1", owner, "")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("png = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("png: %v", err)
		}
		bmp, err := gozxing.NewBinaryBitmapFromImage(img)
		if err != nil {
			t.Fatal(err)
		}
		res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
		if err != nil || res.GetText() != url {
			t.Fatalf("png code = %v, %v; want %s", res, err, url)
		}
		resp, b = e.raw("GET", base+"pdf", owner, "")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(b, []byte("%PDF-")) {
			t.Fatalf("pdf = %d %s %.20q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}

		for _, c := range []struct {
			path, tok string
			status    int
			code      string
		}{
			{base + "gif", owner, 400, "request.field"},
			{base + "svg", viewer, 403, "auth.forbidden"},
			{base + "svg?machine=nope", owner, 404, "machine.not_found"},
			{"/v1/operator/devices/nope/stickers/svg", owner, 404, "device.not_found"},
		} {
			if code, ec := e.call("GET", c.path, c.tok, "", nil); code != c.status || ec != c.code {
				t.Errorf("GET %s = %d %s, want %d %s", c.path, code, ec, c.status, c.code)
			}
		}
	})
}

// A device added over the API exists for its operator at once; its
// bundle (keys and broker password) is taken once by a manager or owner,
// then the token is spent: 404 bundle.gone. Both steps are audited.
func TestOperatorAddDeviceAndBundle(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		ctx := context.Background()
		prov := &provision.Provisioner{Store: e.st, CloudKeys: []ed25519.PublicKey{e.ck.Public().(ed25519.PublicKey)}}
		e.svc.UseProvisioner(service.Provisioning{Add: func(ctx context.Context, req provision.DeviceRequest) (provision.Result, error) {
			return prov.AddDevice(ctx, req, nil)
		}, MQTTURL: "tcp://127.0.0.1:1883", TempDir: t.TempDir()})
		owner, viewer, mgr := e.logIn("acme-password").Token, e.account("viewer"), e.account("manager")
		add := `{"id":"vend-12","name":"Lobby snacks","kind":"vending","currency":"EUR","k":5,"slots":[{"id":"A1","name":"Crisps","price":{"minor":150,"per":1}}]}`

		if code, ec := e.call("POST", "/v1/operator/devices", viewer, add, nil); code != 403 || ec != "auth.forbidden" {
			t.Fatalf("viewer's add = %d %s", code, ec)
		}
		var pd httpapi.OperatorProvisioned
		if code, ec := e.call("POST", "/v1/operator/devices", mgr, add, &pd); code != 201 || pd.Device != "vend-12" || pd.BundleToken == "" || !pd.BundleUntil.After(time.Now()) {
			t.Fatalf("add = %d %s %+v", code, ec, pd)
		}
		var d httpapi.OperatorDevice
		if code, ec := e.call("GET", "/v1/operator/devices/vend-12", owner, "", &d); code != 200 || d.Name != "Lobby snacks" || len(d.Machines) != 1 ||
			len(d.Machines[0].Slots) != 1 || d.Machines[0].Slots[0].Price != (vend.Price{Minor: 150, Per: 1}) {
			t.Fatalf("the added device = %d %s %+v", code, ec, d)
		}
		if code, ec := e.call("POST", "/v1/operator/devices", owner, add, nil); code != 409 || ec != "device.exists" {
			t.Fatalf("the same id again = %d %s", code, ec)
		}

		if code, ec := e.call("POST", "/v1/operator/bundles/"+pd.BundleToken, viewer, "", nil); code != 403 || ec != "auth.forbidden" {
			t.Fatalf("viewer's bundle = %d %s", code, ec)
		}
		resp, b := e.raw("POST", "/v1/operator/bundles/"+pd.BundleToken, owner, "")
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" ||
			resp.Header.Get("Content-Disposition") != `attachment; filename="vend-12-bundle.json"` {
			t.Fatalf("bundle = %d %v %s", resp.StatusCode, resp.Header, b)
		}
		bun, err := pb.Decode(bytes.NewReader(b))
		if err != nil || bun.DeviceID != "vend-12" || bun.MQTT.URL != "tcp://127.0.0.1:1883" || bun.MQTT.Password == "" || len(bun.DeviceKey) == 0 {
			t.Fatalf("bundle = %+v, %v", bun, err)
		}
		sd, err := e.st.GetDevice(ctx, "vend-12")
		if err != nil || sd.IdentityKey != bun.IdentityKey {
			t.Fatalf("stored device %v: its identity key is not the bundle's", err)
		}
		if code, ec := e.call("POST", "/v1/operator/bundles/"+pd.BundleToken, owner, "", nil); code != 404 || ec != "bundle.gone" {
			t.Fatalf("second download = %d %s", code, ec)
		}
		add2 := es(e.audit("device."))
		if add2 != "device.bundle_download device.add" {
			t.Fatalf("audit = %s", add2)
		}
	})
}

// es lists the entries' actions, newest first.
func es(entries []store.AuditEntry) string {
	var out []string
	for _, x := range entries {
		out = append(out, x.Action)
	}
	return strings.Join(out, " ")
}

// The refund threshold reads back as set (absent before); a refund above
// it waits for an owner, whose rejection refunds nothing; the revenue by
// device and day adds the captures of the settled sessions.
func TestOperatorRejectThresholdRevenue(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		ctx := context.Background()
		m := newMoneyAPI(t, e, 3)
		mgr, viewer, owner := m.login("manager"), m.login("viewer"), m.login("owner")

		var th httpapi.OperatorRefundThreshold
		if code, body := m.do("GET", "/v1/operator/refund-threshold", viewer, "", nil, &th); code != 200 || th.Threshold != nil {
			t.Fatalf("threshold before any = %d %s", code, body)
		}
		if code, body := m.do("PUT", "/v1/operator/refund-threshold", owner, "", map[string]any{"threshold": eurJSON(100)}, nil); code != 200 {
			t.Fatalf("set threshold = %d %s", code, body)
		}
		if code, body := m.do("GET", "/v1/operator/refund-threshold", viewer, "", nil, &th); code != 200 || th.Threshold == nil || *th.Threshold != (vend.Amount{Minor: 100, Currency: "EUR"}) {
			t.Fatalf("threshold read back = %d %s", code, body)
		}

		id := m.sessions[0].String()
		var ap httpapi.OperatorApproval
		if code, body := m.do("POST", "/v1/operator/sessions/"+id+"/refund", mgr, "k-reject-1", map[string]any{"amount": eurJSON(150), "reason": "leak"}, &ap); code != 202 || ap.State != "pending" {
			t.Fatalf("refund above the threshold = %d %s", code, body)
		}
		if code, body := m.do("POST", "/v1/operator/refund-approvals/"+ap.ID+"/reject", mgr, "", map[string]any{"note": "no"}, nil); code != 403 {
			t.Fatalf("manager's reject = %d %s", code, body)
		}
		var rej httpapi.OperatorApproval
		if code, body := m.do("POST", "/v1/operator/refund-approvals/"+ap.ID+"/reject", owner, "", map[string]any{"note": "not our fault"}, &rej); code != 200 ||
			rej.ID != ap.ID || rej.State != "rejected" || rej.Note != "not our fault" || rej.DecidedBy == "" || rej.Refund != "" || rej.DecidedAt.IsZero() {
			t.Fatalf("owner's reject = %d %s", code, body)
		}
		if rs, err := m.st.SessionRefunds(ctx, m.sessions[0]); err != nil || len(rs) != 0 {
			t.Fatalf("refunds after a rejection = %+v, %v", rs, err)
		}
		var d httpapi.OperatorSessionDetail
		if code, body := m.do("GET", "/v1/operator/sessions/"+id, viewer, "", nil, &d); code != 200 || d.Refundable.Minor != 200 {
			t.Fatalf("refundable after a rejection = %d %s", code, body)
		}
		if code, body := m.do("POST", "/v1/operator/refund-approvals/"+ap.ID+"/approve", owner, "", map[string]any{"note": "changed my mind"}, nil); code != 409 ||
			!strings.Contains(body, "refund.approval_state") {
			t.Fatalf("approve after reject = %d %s", code, body)
		}
		var list httpapi.OperatorApprovalList
		if code, body := m.do("GET", "/v1/operator/refund-approvals", viewer, "", nil, &list); code != 200 || len(list.Approvals) != 0 {
			t.Fatalf("open approvals after the rejection = %d %s", code, body)
		}

		var rev httpapi.OperatorRevenueList
		if code, body := m.do("GET", "/v1/operator/revenue?from=2026-02-28&to=2026-03-02", viewer, "", nil, &rev); code != 200 || len(rev.Revenue) != 1 ||
			rev.Revenue[0] != (httpapi.OperatorRevenue{Device: "dev-m", Day: "2026-03-01", Amount: vend.Amount{Minor: 600, Currency: "EUR"}, Sessions: 3}) {
			t.Fatalf("revenue = %d %s", code, body)
		}
		if code, body := m.do("GET", "/v1/operator/revenue?from=2026-03-02&to=2026-03-09", viewer, "", nil, &rev); code != 200 || len(rev.Revenue) != 0 ||
			!strings.Contains(body, `"revenue":[]`) {
			t.Fatalf("revenue of an empty week = %d %s", code, body)
		}
		if code, body := m.do("GET", "/v1/operator/revenue?from=yesterday", viewer, "", nil, nil); code != 400 || !strings.Contains(body, "from") {
			t.Fatalf("bad from = %d %s", code, body)
		}
	})
}
