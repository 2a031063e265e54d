package service_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/mailpittest"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// alertClock is a settable clock shared by a store and its services.
type alertClock struct{ ms atomic.Int64 }

func (c *alertClock) Now() time.Time      { return time.UnixMilli(c.ms.Load()).UTC() }
func (c *alertClock) Add(d time.Duration) { c.ms.Add(d.Milliseconds()) }
func (c *alertClock) Set(t time.Time)     { c.ms.Store(t.UnixMilli()) }

type alertEnv struct {
	t     *testing.T
	ctx   context.Context // the owner's
	clk   *alertClock
	st    *store.Store
	op    store.Operator
	cloud ed25519.PrivateKey
}

func newAlertEnv(t *testing.T) *alertEnv {
	t.Helper()
	e := &alertEnv{t: t, clk: &alertClock{}}
	e.clk.Set(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	ctx := context.Background()
	var err error
	e.st, err = store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), &store.Opts{BcryptCost: 4, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.op, _ = e.st.CreateOperator(ctx, "op")
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	var key [16]byte
	rand.Read(key[:])
	if err := e.st.CreateDevice(ctx, store.Device{ID: "wd-1", OperatorID: e.op.ID, Name: "lobby tap", IdentityKey: key, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	_, e.cloud, _ = ed25519.GenerateKey(rand.Reader)
	e.ctx = service.WithActor(ctx, service.Actor{Operator: e.op.ID, Account: "opa_owner", Email: "owner@example.com", Role: service.RoleOwner})
	return e
}

func (e *alertEnv) service(a service.AlertOptions) *service.Service {
	e.t.Helper()
	svc, err := service.New(context.Background(), service.Options{Store: e.st, Publisher: &FakePublisher{}, CloudKey: e.cloud,
		Now: e.clk.Now, Alerts: a})
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

func (e *alertEnv) settings(svc *service.Service, mod func(*store.AlertSettings)) {
	e.t.Helper()
	set := store.DefaultAlertSettings()
	mod(&set)
	if _, err := svc.PutAlertSettings(e.ctx, set); err != nil {
		e.t.Fatal(err)
	}
}

func (e *alertEnv) as(role service.Role) context.Context {
	return service.WithActor(context.Background(), service.Actor{Operator: e.op.ID, Account: "opa_" + string(role), Email: string(role) + "@example.com", Role: role})
}

func (e *alertEnv) alerts(svc *service.Service, kind store.AlertKind) []store.Alert {
	e.t.Helper()
	as, _, err := svc.Alerts(e.ctx, store.AlertFilter{Kind: kind})
	if err != nil {
		e.t.Fatal(err)
	}
	return as
}

// A device that flaps stays quiet until it has been offline for the
// threshold without a break; a late will about an older connection
// changes nothing; evaluating twice (or on two instances) raises once;
// back online resolves it, and offline again past the threshold opens a
// new one.
func TestAlertEngineOfflineFlapping(t *testing.T) {
	e := newAlertEnv(t)
	svc1, svc2 := e.service(service.AlertOptions{}), e.service(service.AlertOptions{})
	e.settings(svc1, func(s *store.AlertSettings) { s.OfflineAfter = 2 * time.Minute })
	ctx := context.Background()
	online := func() {
		if err := e.st.SetDeviceStatus(ctx, "wd-1", true, nil, e.clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	lost := func(at time.Time) {
		if _, err := e.st.SetDeviceLost(ctx, "wd-1", at, 0); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(svc *service.Service) (int, int) {
		r, s, err := svc.EvaluateAlerts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r, s
	}
	online()
	e.clk.Add(time.Minute)
	lost(e.clk.Now())
	e.clk.Add(90 * time.Second)
	online() // back after 1.5 min: below the threshold
	e.clk.Add(10 * time.Second)
	lost(e.clk.Now())
	e.clk.Add(110 * time.Second) // offline 1 min 50 s this time
	if r, _ := eval(svc1); r != 0 {
		t.Fatalf("raised %d alerts for a flapping device below the threshold", r)
	}
	e.clk.Add(10 * time.Second)
	// Two instances evaluate at once: one alert.
	var wg sync.WaitGroup
	var raised atomic.Int64
	for _, s := range []*service.Service{svc1, svc2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := s.EvaluateAlerts(ctx)
			if err != nil {
				t.Error(err)
			}
			raised.Add(int64(r))
		}()
	}
	wg.Wait()
	if raised.Load() != 1 {
		t.Fatalf("two instances raised %d alerts, want 1", raised.Load())
	}
	if r, _ := eval(svc1); r != 0 {
		t.Fatal("a duplicate evaluation raised again")
	}
	as := e.alerts(svc1, service.AlertOffline)
	if len(as) != 1 || as[0].State != store.AlertOpen || as[0].Severity != "critical" || !strings.Contains(as[0].Summary, "lobby tap") {
		t.Fatalf("alerts = %+v", as)
	}
	// Back online: resolved. A will about the old connection, delivered
	// late, is ignored and opens nothing.
	online()
	lost(e.clk.Now().Add(-time.Minute))
	if _, s := eval(svc2); s != 1 {
		t.Fatalf("resolved %d, want 1", s)
	}
	e.clk.Add(10 * time.Minute)
	if r, _ := eval(svc1); r != 0 {
		t.Fatal("a late will raised an alert for an online device")
	}
	// Offline again past the threshold: a new alert.
	lost(e.clk.Now())
	e.clk.Add(2 * time.Minute)
	if r, _ := eval(svc1); r != 1 {
		t.Fatalf("raised %d after a second outage, want 1", r)
	}
	if got := e.alerts(svc1, service.AlertOffline); len(got) != 2 || got[1].State != store.AlertResolved {
		t.Fatalf("alerts after a second outage = %+v", got)
	}
}

// Faults from telemetry: a board fault and a faulted machine raise with
// their codes; an online device's clean telemetry resolves them; an
// offline device's stale telemetry does not.
func TestAlertEngineFaults(t *testing.T) {
	e := newAlertEnv(t)
	svc := e.service(service.AlertOptions{})
	ctx := context.Background()
	tel := func(board string, machine string) {
		b := `{"status":"ok"}`
		if board != "" {
			b = `{"status":"fault","fault_code":"` + board + `","consecutive_failures":5}`
		}
		m := `"idle"`
		if machine != "" {
			m = `"fault"`
		}
		raw := `{"v":1,"id":"t","ts":"2026-03-02T12:00:00Z","type":"telemetry","uptime_s":1,"board":` + b +
			`,"outbox_depth":0,"machines":[{"id":"tap1","state":` + m + `,"counters":{"unit":1,"units_total":0,"sessions_total":0,"faults_total":1}}]}`
		if err := e.st.SetDeviceStatus(ctx, "wd-1", true, json.RawMessage(raw), e.clk.Now()); err != nil {
			t.Fatal(err)
		}
		e.clk.Add(time.Second)
	}
	tel("board.timeout", "x")
	if r, _, err := svc.EvaluateAlerts(ctx); err != nil || r != 2 {
		t.Fatalf("EvaluateAlerts = %d, %v; want 2 raised", r, err)
	}
	as := e.alerts(svc, service.AlertFault)
	codes := map[string]bool{}
	for _, a := range as {
		codes[a.Code] = true
	}
	if !codes["board.timeout"] || !codes["machine.fault"] {
		t.Fatalf("fault codes = %v", codes)
	}
	tel("", "x") // the board recovered; the machine did not
	if _, s, _ := svc.EvaluateAlerts(ctx); s != 1 {
		t.Fatalf("resolved %d, want the board's", s)
	}
	// Offline with stale fault telemetry: nothing resolves or raises.
	if _, err := e.st.SetDeviceLost(ctx, "wd-1", e.clk.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if r, s, _ := svc.EvaluateAlerts(ctx); r != 0 || s != 0 {
		t.Fatalf("offline device: raised %d resolved %d", r, s)
	}
}

// RaiseAlert is idempotent while open; ResolveAlert closes it; viewers
// cannot acknowledge, technicians can; settings are the owner's.
func TestRaiseAlertAPIAndRoles(t *testing.T) {
	e := newAlertEnv(t)
	svc := e.service(service.AlertOptions{})
	in := service.AlertInput{Operator: e.op.ID, Kind: service.AlertLowStock, Device: "wd-1", Machine: "tap1", Slot: "A1", Summary: "A1 has 1 left"}
	for i := 0; i < 3; i++ {
		if err := svc.RaiseAlert(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	as := e.alerts(svc, service.AlertLowStock)
	if len(as) != 1 {
		t.Fatalf("%d low-stock alerts, want 1", len(as))
	}
	if err := svc.RaiseAlert(context.Background(), service.AlertInput{Operator: e.op.ID, Kind: "stock.lowish", Summary: "x"}); vend.CodeOf(err) != "store.input" {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := svc.AckAlert(e.as(service.RoleViewer), as[0].ID); vend.CodeOf(err) != "auth.forbidden" || !strings.Contains(err.Error(), "ack_alert") {
		t.Fatalf("viewer ack = %v, want auth.forbidden naming ack_alert", err)
	}
	a, err := svc.AckAlert(e.as(service.RoleTechnician), as[0].ID)
	if err != nil || a.State != store.AlertAcknowledged || a.AckedBy != "technician@example.com" {
		t.Fatalf("technician ack = %+v, %v", a, err)
	}
	if n, _ := svc.OpenAlertCount(e.ctx); n != 0 {
		t.Fatalf("open count after ack = %d", n)
	}
	if _, err := svc.PutAlertSettings(e.as(service.RoleManager), store.DefaultAlertSettings()); vend.CodeOf(err) != "auth.forbidden" {
		t.Fatalf("manager settings = %v, want auth.forbidden", err)
	}
	if _, err := svc.WebhookSecret(e.as(service.RoleTechnician)); vend.CodeOf(err) != "auth.forbidden" {
		t.Fatalf("technician secret = %v, want auth.forbidden", err)
	}
	// Another operator's alert is not found.
	other := service.WithActor(context.Background(), service.Actor{Operator: "op_other", Account: "opa_x", Role: service.RoleOwner})
	if _, err := svc.AckAlert(other, as[0].ID); vend.CodeOf(err) != "alert.not_found" {
		t.Fatalf("other operator's ack = %v", err)
	}
	if err := svc.ResolveAlert(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if as := e.alerts(svc, service.AlertLowStock); as[0].State != store.AlertResolved {
		t.Fatalf("after ResolveAlert: %+v", as[0])
	}
}

// opensslHMAC computes the hex HMAC-SHA256 of data under key with the
// openssl command, not with our code.
func opensslHMAC(t *testing.T, key string, data []byte) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		svctest.Missing(t, "openssl", "apt-get install openssl")
	}
	cmd := exec.Command("openssl", "dgst", "-sha256", "-hmac", key, "-hex")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("openssl: %v", err)
		return ""
	}
	f := strings.Fields(string(out))
	return f[len(f)-1]
}

// hookRecv is a webhook receiver that checks signatures with openssl.
type hookRecv struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	got    []service.AlertWebhook
	ids    []string
	fail   int // answer 503 to this many requests first
}

func (h *hookRecv) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sig := r.Header.Get(service.WebhookSignatureHeader)
	var ts, v1 string
	for _, p := range strings.Split(sig, ",") {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	if want := opensslHMAC(h.t, h.secret, append([]byte(ts+"."), body...)); want == "" || want != v1 {
		h.t.Errorf("signature %q does not match openssl's %q", v1, want)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	tampered := bytes.Replace(body, []byte(`"severity":"`), []byte(`"severity":"x`), 1)
	if opensslHMAC(h.t, h.secret, append([]byte(ts+"."), tampered...)) == v1 {
		h.t.Error("a tampered body matched the signature")
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || sec <= 0 {
		h.t.Errorf("signature time %q", ts)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, r.Header.Get(service.WebhookDeliveryHeader))
	if h.fail > 0 {
		h.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var m service.AlertWebhook
	if err := json.Unmarshal(body, &m); err != nil {
		h.t.Errorf("webhook body: %v", err)
	}
	h.got = append(h.got, m)
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookRecv) count() (int, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got), append([]string(nil), h.ids...)
}

// The webhook is signed (checked by openssl), a tampered body fails the
// check, a 503 is retried after the backoff with the same delivery id,
// and the result is recorded.
func TestAlertWebhookSignedRetried(t *testing.T) {
	e := newAlertEnv(t)
	svc := e.service(service.AlertOptions{Backoff: 30 * time.Second})
	secret, err := svc.WebhookSecret(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &hookRecv{t: t, secret: secret, fail: 1}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e.settings(svc, func(s *store.AlertSettings) { s.WebhookURL = srv.URL + "/hook" })
	if err := svc.RaiseAlert(context.Background(), service.AlertInput{Operator: e.op.ID, Kind: service.AlertLowStock,
		Device: "wd-1", Machine: "tap1", Slot: "A1", Summary: "A1 low"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, err := svc.DeliverAlerts(ctx); n != 0 || err != nil {
		t.Fatalf("DeliverAlerts against a 503 = %d, %v", n, err)
	}
	if n, _ := svc.DeliverAlerts(ctx); n != 0 {
		t.Fatal("retried before the backoff")
	}
	e.clk.Add(30 * time.Second)
	if n, err := svc.DeliverAlerts(ctx); n != 1 || err != nil {
		t.Fatalf("DeliverAlerts after the backoff = %d, %v", n, err)
	}
	n, ids := h.count()
	if n != 1 || len(ids) != 2 || ids[0] != ids[1] || ids[0] == "" {
		t.Fatalf("received %d webhooks, delivery ids %v; want 1 after 2 attempts with one id", n, ids)
	}
	as := e.alerts(svc, service.AlertLowStock)
	if h.got[0].Alert.ID != as[0].ID || h.got[0].Alert.Kind != "stock.low" || h.got[0].Alert.Summary != "A1 low" {
		t.Fatalf("webhook body = %+v", h.got[0])
	}
	_, ds, _ := svc.Alert(e.ctx, as[0].ID)
	if len(ds) != 1 || ds[0].State != "sent" || ds[0].Attempts != 2 || ds[0].LastError != "" {
		t.Fatalf("deliveries = %+v", ds)
	}
}

// A process that dies after the raise, or after claiming a delivery
// without sending it, leaves it to another instance: it is sent once.
func TestAlertDeliveryAcrossRestart(t *testing.T) {
	e := newAlertEnv(t)
	svc1 := e.service(service.AlertOptions{})
	secret, _ := svc1.WebhookSecret(e.ctx)
	h := &hookRecv{t: t, secret: secret}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e.settings(svc1, func(s *store.AlertSettings) { s.WebhookURL = srv.URL })
	ctx := context.Background()
	for _, dev := range []string{"a", "b"} {
		if err := svc1.RaiseAlert(ctx, service.AlertInput{Operator: e.op.ID, Kind: service.AlertLowStock, Device: "wd-1", Slot: dev, Summary: "low " + dev}); err != nil {
			t.Fatal(err)
		}
	}
	// svc1 dies holding one claim.
	held, err := e.st.ClaimDeliveries(ctx, time.Minute, 1)
	if err != nil || len(held) != 1 {
		t.Fatalf("claim = %v, %v", held, err)
	}
	svc2 := e.service(service.AlertOptions{})
	if n, err := svc2.DeliverAlerts(ctx); n != 1 || err != nil {
		t.Fatalf("restarted instance sent %d, %v; want the unclaimed one", n, err)
	}
	if n, _ := svc2.DeliverAlerts(ctx); n != 0 {
		t.Fatal("sent a leased delivery")
	}
	e.clk.Add(time.Minute + time.Second)
	if n, err := svc2.DeliverAlerts(ctx); n != 1 || err != nil {
		t.Fatalf("after the lease: sent %d, %v", n, err)
	}
	if n, _ := svc2.DeliverAlerts(ctx); n != 0 {
		t.Fatal("sent again")
	}
	if n, ids := h.count(); n != 2 || ids[0] == ids[1] {
		t.Fatalf("received %d webhooks (%v), want 2 distinct", n, ids)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool trusting it.
func selfSigned(t *testing.T) (string, string, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	cert, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return cert, kf, pool
}

// An offline alert is e-mailed over STARTTLS with authentication to a
// real SMTP server (Mailpit, which refuses clients that do not upgrade);
// read back through its API: subject and body. A quiet period holds the
// mail until it ends.
func TestAlertMailToMailpit(t *testing.T) {
	cert, key, pool := selfSigned(t)
	mp := mailpittest.Start(t, mailpittest.Opts{TLSCert: cert, TLSKey: key, RequireTLS: true})
	host, port, _ := net.SplitHostPort(mp.SMTPAddr)
	p, _ := strconv.Atoi(port)
	e := newAlertEnv(t)
	svc := e.service(service.AlertOptions{ConsoleURL: "https://cloud.example.com/console", SMTP: service.SMTPOptions{
		Host: host, Port: p, From: "Beaconvend alerts <alerts@example.com>", Username: "alerts", Password: "pw",
		TLS: service.SMTPStartTLS, TLSConfig: &tls.Config{RootCAs: pool}}})
	// Quiet 11:00-13:00 UTC; it is 12:00.
	e.settings(svc, func(s *store.AlertSettings) {
		s.EmailTo, s.OfflineAfter, s.QuietStart, s.QuietEnd = "ops@example.com", time.Minute, "11:00", "13:00"
	})
	ctx := context.Background()
	if err := e.st.SetDeviceStatus(ctx, "wd-1", true, nil, e.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.SetDeviceLost(ctx, "wd-1", e.clk.Now(), 0); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Minute)
	if r, _, err := svc.EvaluateAlerts(ctx); r != 1 || err != nil {
		t.Fatalf("EvaluateAlerts = %d, %v", r, err)
	}
	if n, err := svc.DeliverAlerts(ctx); n != 0 || err != nil {
		t.Fatalf("DeliverAlerts in the quiet period = %d, %v", n, err)
	}
	if as := e.alerts(svc, service.AlertOffline); len(as) != 1 || as[0].State != store.AlertOpen {
		t.Fatalf("the alert is not in the inbox during the quiet period: %+v", as)
	}
	time.Sleep(200 * time.Millisecond)
	if ms := mp.Messages(t); len(ms) != 0 {
		t.Fatalf("mail sent in the quiet period: %+v", ms)
	}
	e.clk.Set(time.Date(2026, 3, 2, 13, 0, 0, 0, time.UTC))
	if n, err := svc.DeliverAlerts(ctx); n != 1 || err != nil {
		t.Fatalf("DeliverAlerts after the quiet period = %d, %v", n, err)
	}
	ms := mp.Wait(t, 1, 10*time.Second)
	m := mp.Message(t, ms[0].ID)
	if !strings.Contains(m.Subject, "[beaconvend critical] Device lobby tap (wd-1) is offline") {
		t.Errorf("subject = %q", m.Subject)
	}
	if len(m.To) != 1 || m.To[0].Address != "ops@example.com" || m.From.Address != "alerts@example.com" {
		t.Errorf("from %v to %v", m.From, m.To)
	}
	for _, want := range []string{"Not connected since 2026-03-02 12:00:00 UTC", "Kind: device.offline", "Device: wd-1",
		"https://cloud.example.com/console/alerts/alr_"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Text)
		}
	}
	if ms[0].Username != "alerts" {
		t.Errorf("authenticated as %q, want alerts", ms[0].Username)
	}
}

// Without STARTTLS offered, a starttls configuration refuses to send in
// clear; the failure is recorded for a retry.
func TestAlertMailRequiresTLS(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Opts{})
	host, port, _ := net.SplitHostPort(mp.SMTPAddr)
	p, _ := strconv.Atoi(port)
	e := newAlertEnv(t)
	svc := e.service(service.AlertOptions{SMTP: service.SMTPOptions{Host: host, Port: p, From: "alerts@example.com", TLS: service.SMTPStartTLS}})
	e.settings(svc, func(s *store.AlertSettings) { s.EmailTo = "ops@example.com" })
	ctx := context.Background()
	if err := svc.RaiseAlert(ctx, service.AlertInput{Operator: e.op.ID, Kind: service.AlertLowStock, Slot: "A1", Summary: "low"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := svc.DeliverAlerts(ctx); n != 0 {
		t.Fatal("sent without TLS")
	}
	as := e.alerts(svc, service.AlertLowStock)
	_, ds, _ := svc.Alert(e.ctx, as[0].ID)
	if len(ds) != 1 || ds[0].State != "pending" || !strings.Contains(ds[0].LastError, "STARTTLS") {
		t.Fatalf("deliveries = %+v", ds)
	}
	// Plain SMTP when configured so (a loopback relay).
	svc2 := e.service(service.AlertOptions{SMTP: service.SMTPOptions{Host: host, Port: p, From: "alerts@example.com", TLS: service.SMTPNone}})
	e.clk.Add(time.Minute)
	if n, err := svc2.DeliverAlerts(ctx); n != 1 || err != nil {
		t.Fatalf("plain delivery = %d, %v", n, err)
	}
	if ms := mp.Wait(t, 1, 10*time.Second); ms[0].Subject != "[beaconvend warning] low" {
		t.Fatalf("subject = %q", ms[0].Subject)
	}
}
