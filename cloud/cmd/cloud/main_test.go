package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/controller/config"
)

// ---- operation coverage ----

type opRoute struct {
	method string
	re     *regexp.Regexp
	id     string
}

// specRoutes reads every operation of openapi.yaml but the operator API.
func specRoutes(t *testing.T) []opRoute {
	t.Helper()
	b, err := os.ReadFile("../../../app-protocol/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string   `yaml:"operationId"`
			Tags        []string `yaml:"tags"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var out []opRoute
	for p, ops := range doc.Paths {
		re := regexp.MustCompile("^" + regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(p, "[^/]+") + "$")
		for m, op := range ops {
			// The operator API is the console's and has its own coverage
			// check (cloud/httpapi's TestMain); this test is the phone's.
			if op.OperationID != "" && !slices.Contains(op.Tags, "operator") {
				out = append(out, opRoute{strings.ToUpper(m), re, op.OperationID})
			}
		}
	}
	if len(out) < 14 {
		t.Fatalf("only %d operations in openapi.yaml", len(out))
	}
	return out
}

// recorder is a RoundTripper that notes which operations got a 2xx answer.
type recorder struct {
	routes []opRoute
	mu     sync.Mutex
	seen   map[string]bool
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && resp.StatusCode < 300 {
		for _, rt := range r.routes {
			if rt.method == req.Method && rt.re.MatchString(req.URL.Path) {
				r.mu.Lock()
				r.seen[rt.id] = true
				r.mu.Unlock()
			}
		}
	}
	return resp, err
}

// ---- the simulated device ----

type simDevice struct {
	t      *testing.T
	id     string
	cfg    *config.Config
	idKey  proxid.Key
	sign   ed25519.PrivateKey
	cloud  signed.Keys
	client paho.Client
	seq    uint64

	mu      sync.Mutex
	refuse  string // reply code for the next Authorize; "" is ok
	grants  map[vend.SessionID]signed.Grant
	acks    map[string]int
	stops   int
	prices  []*mqttapi.SetPrices
	replies int
}

func newSimDevice(t *testing.T, dir, brokerURL string) *simDevice {
	t.Helper()
	cfg, err := config.Load(filepath.Join(dir, "controller.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := cfg.LoadSecrets()
	if err != nil {
		t.Fatal(err)
	}
	d := &simDevice{t: t, id: cfg.DeviceID, cfg: cfg, idKey: keys.Identity, sign: keys.Device, cloud: keys.Cloud, grants: map[vend.SessionID]signed.Grant{}, acks: map[string]int{}}
	will, _ := mqttapi.Tree{}.LastWill(d.id, time.Now())
	o := paho.NewClientOptions().AddBroker(brokerURL).SetClientID(d.id).SetUsername(d.id).SetPassword(keys.MQTTPass).
		SetCleanSession(true).SetAutoReconnect(false).SetBinaryWill(will.Topic, will.Payload, will.QoS, will.Retain)
	d.client = paho.NewClient(o)
	if tok := d.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device %s connect: %v", d.id, tok.Error())
	}
	t.Cleanup(func() { d.client.Disconnect(100) })
	cmd, _ := mqttapi.Topic("", d.id, mqttapi.LeafCmd)
	if tok := d.client.Subscribe(cmd, 1, d.onCmd); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	d.publish(&mqttapi.State{Envelope: mqttapi.NewEnvelope(time.Now()), Status: mqttapi.Online, Firmware: "sim-1"})
	return d
}

func (d *simDevice) publish(msg mqttapi.Message) {
	d.t.Helper()
	p, err := mqttapi.Tree{}.Publication(d.id, msg)
	if err != nil {
		d.t.Fatal(err)
	}
	if tok := d.client.Publish(p.Topic, p.QoS, p.Retain, p.Payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		d.t.Fatalf("publish: %v", tok.Error())
	}
}

func (d *simDevice) onCmd(_ paho.Client, m paho.Message) {
	msg, err := mqttapi.Decode(mqttapi.LeafCmd, m.Payload())
	if err != nil {
		d.t.Errorf("device %s: bad command: %v", d.id, err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var replyErr error
	switch c := msg.(type) {
	case *mqttapi.Ack:
		for _, id := range c.IDs {
			d.acks[id]++
		}
		return
	case *mqttapi.Authorize:
		g, err := signed.OpenGrant(c.Grant, d.cloud)
		if err != nil {
			replyErr = err
			break
		}
		if d.refuse != "" {
			replyErr = &vend.Error{Kind: vend.Conflict, Code: d.refuse, Msg: "sim: " + d.refuse}
			break
		}
		d.grants[g.Session] = g
	case *mqttapi.Stop:
		d.stops++
	case *mqttapi.SetPrices:
		d.prices = append(d.prices, c)
	}
	d.replies++
	rep := mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), msg.Head().ID, replyErr)
	go d.publish(rep)
}

func (d *simDevice) proximityID(at time.Time) phoneapi.ProximityID {
	return phoneapi.ProximityID(proxid.Compute(d.idKey, proxid.Counter(at), *d.cfg.Beacon.K).String())
}

func (d *simDevice) grant(id vend.SessionID) signed.Grant {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.grants[id]
}

func (d *simDevice) acked(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acks[id]
}

func (d *simDevice) event(kind mqttapi.EventKind, g signed.Grant, units uint64) *mqttapi.Event {
	ev := &mqttapi.Event{Envelope: mqttapi.NewEnvelope(time.Now()), Kind: kind, Session: g.Session, Machine: g.Machine}
	switch kind {
	case mqttapi.EventProgress, mqttapi.EventEnded:
		cost, _ := g.Price.Cost(units)
		ev.Units, ev.Unit, ev.Amount = &units, g.Unit, &vend.Amount{Minor: cost, Currency: g.Currency}
		if kind == mqttapi.EventEnded {
			ev.Outcome = vend.OutcomeUserStop
		}
	case mqttapi.EventAuthorized:
		ev.Amount = &vend.Amount{Minor: g.CapMoney, Currency: g.Currency}
	}
	return ev
}

// usage signs a report for the grant with key (the device's unless given).
func (d *simDevice) usage(g signed.Grant, units uint64, outcome vend.Outcome, key ed25519.PrivateKey) *mqttapi.Usage {
	d.t.Helper()
	if key == nil {
		key = d.sign
	}
	d.mu.Lock()
	d.seq++
	seq := d.seq
	d.mu.Unlock()
	cost, _ := g.Price.Cost(units)
	now := time.Now()
	u := signed.Usage{Device: d.id, Seq: seq, Session: g.Session, Machine: g.Machine, Slot: g.Slot, Unit: g.Unit, Units: units,
		Price: g.Price, Currency: g.Currency, Amount: cost, StartedAt: now.Add(-time.Second), EndedAt: now, MeterStart: 10, MeterEnd: 10 + units, Outcome: outcome}
	if units == 0 {
		u.StartedAt = time.Time{}
	}
	rep, err := signed.SignUsage(key, u)
	if err != nil {
		d.t.Fatal(err)
	}
	return &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(now), Session: g.Session, Seq: seq, Report: rep}
}

// ---- harness ----

func runCLI(t *testing.T, data string, args ...string) map[string]string {
	t.Helper()
	var out bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, io.Discard
	m.StoreOpts.BcryptCost = 4
	if err := m.ParseFlags(append(args, "-data", data)); err != nil {
		t.Fatal(err)
	}
	err := m.Run(context.Background())
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("cloud %s: %v", strings.Join(args, " "), err)
	}
	var raw map[string]any
	if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatalf("cloud %s printed %q", strings.Join(args, " "), out.String())
	}
	res := map[string]string{}
	for k, v := range raw {
		res[k] = fmt.Sprint(v)
	}
	return res
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if vend.CodeOf(err) != code {
		t.Fatalf("error %v: code %q, want %q", err, vend.CodeOf(err), code)
	}
}

type env struct {
	m      *Main
	rec    *recorder
	water  *simDevice
	vend   *simDevice
	other  *simDevice
	phone  *phoneapi.Client
	ctx    context.Context
	opTok  string
	opTok2 string
}

func setup(t *testing.T) *env {
	data := t.TempDir()
	out := t.TempDir()
	op1 := runCLI(t, data, "operator", "add", "-name", "Acme Water", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))
	runCLI(t, data, "operator", "add", "-name", "Other Co", "-email", "ops@other.example", "-password-file", passwordFile(t, "other-password-1"))
	const url = "tcp://127.0.0.1:1883"
	runCLI(t, data, "device", "add", "-id", "wd-1", "-operator", op1["operator"], "-kind", "water", "-out", filepath.Join(out, "wd-1"), "-mqtt-url", url,
		"-mosquitto-dir", filepath.Join(out, "mosq"), "-mosquitto-group", "", "-mosquitto-user", "")
	runCLI(t, data, "device", "add", "-id", "vm-1", "-operator", "Acme Water", "-kind", "vending", "-out", filepath.Join(out, "vm-1"), "-mqtt-url", url)
	runCLI(t, data, "device", "add", "-id", "ow-1", "-operator", "Other Co", "-kind", "washer", "-out", filepath.Join(out, "ow-1"), "-mqtt-url", url)
	for _, dev := range []string{"wd-1", "vm-1", "ow-1"} {
		if err := simdev.WriteController(filepath.Join(out, dev), simdev.Wiring{Port: "/dev/null"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"passwords", "acl", "mosquitto.conf"} {
		if _, err := os.Stat(filepath.Join(out, "mosq", f)); err != nil {
			t.Fatalf("mosquitto file: %v", err)
		}
	}
	if st, err := os.Stat(filepath.Join(out, "wd-1", "bundle.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("bundle.json: %v %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(data, "cloud.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cloud.key: %v %v", st, err)
	}

	var stdout bytes.Buffer
	m := serveInProcessWith(t, func(m *Main) {
		m.Stdout = &stdout
		m.ServiceOpts.GrantTTL = 2 * time.Second
	}, "-data", data, "-json")
	ctx := context.Background()
	var line map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &line); err != nil || line["http"] != m.HTTPURL || line["mqtt"] == "" {
		t.Fatalf("-json line %q: %v", stdout.String(), err)
	}
	e := &env{m: m, ctx: ctx, rec: &recorder{routes: specRoutes(t), seen: map[string]bool{}}}
	e.water = newSimDevice(t, filepath.Join(out, "wd-1"), m.MQTTURL)
	e.vend = newSimDevice(t, filepath.Join(out, "vm-1"), m.MQTTURL)
	e.other = newSimDevice(t, filepath.Join(out, "ow-1"), m.MQTTURL)
	e.phone = e.newPhone()
	if _, err := e.phone.SignUp(ctx, &phoneapi.SignUpRequest{Email: "ana@example.com", Password: "correct-horse-battery"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"wd-1", "vm-1", "ow-1"} {
		eventually(t, d+" online", func() bool {
			r, err := e.phone.GetDevice(ctx, phoneapi.DeviceID(d))
			return err == nil && r.Device.State == phoneapi.DeviceIdle
		})
	}
	return e
}

func (e *env) newPhone() *phoneapi.Client {
	return phoneapi.New(e.m.HTTPURL, &phoneapi.Opts{HTTPClient: &http.Client{Transport: e.rec}})
}

func (e *env) start(t *testing.T, d *simDevice, machine, slot string, cap uint64) (*phoneapi.Session, signed.Grant) {
	t.Helper()
	s, err := e.phone.StartSession(e.ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{
		Device: phoneapi.DeviceID(d.id), Machine: phoneapi.MachineID(machine), Slot: phoneapi.MachineID(slot),
		ProximityID: d.proximityID(time.Now()), Cap: phoneapi.Cap{Units: cap}, Source: "wallet"})
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	if s.State != phoneapi.StateAuthorized {
		t.Fatalf("state %s, want authorized", s.State)
	}
	g := d.grant(s.ID)
	if g.Session != s.ID {
		t.Fatalf("device has no grant for %s", s.ID)
	}
	return s, g
}

func (e *env) wallet(t *testing.T) (int64, int64) {
	t.Helper()
	w, err := e.phone.GetWallet(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return w.Available.Minor, w.Held.Minor
}

func (e *env) raw(t *testing.T, method, path, token, key, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.m.HTTPURL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// ---- the test ----

func TestCloudEndToEnd(t *testing.T) {
	e := setup(t)
	ctx := e.ctx
	if _, err := e.phone.Health(ctx); err != nil {
		t.Fatal(err)
	}
	src, err := e.phone.ListPaymentSources(ctx)
	if err != nil || len(src.Sources) < 2 || src.Sources[0].ID != "wallet" || !src.Sources[0].Default {
		t.Fatalf("sources %+v %v", src, err)
	}
	topKey := phoneapi.NewIdempotencyKey()
	pay, err := e.phone.TopUp(ctx, topKey, &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 1000, Currency: "EUR"}, Source: "card_sandbox"})
	if err != nil || pay.State != phoneapi.PaymentPaid || pay.ProviderTxID == "" {
		t.Fatalf("TopUp: %+v %v", pay, err)
	}
	if w, err := e.phone.GetWallet(ctx); err != nil || w.Available.Minor != 1000 {
		t.Fatalf("wallet after the sandbox top-up: %+v %v", w, err)
	}
	// The top-up's receipt, the list, and a withdrawal of a second top-up
	// back to the sandbox card: the wallet ends where it was.
	if got, err := e.phone.GetPayment(ctx, pay.Order); err != nil || got.State != phoneapi.PaymentPaid || !got.Test {
		t.Fatalf("GetPayment: %+v %v", got, err)
	}
	if _, err := e.phone.TopUp(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 200, Currency: "EUR"}, Source: "card_sandbox"}); err != nil {
		t.Fatal(err)
	}
	if l, err := e.phone.ListPayments(ctx, nil); err != nil || len(l.Payments) != 2 {
		t.Fatalf("ListPayments: %+v %v", l, err)
	}
	if wd, err := e.phone.Withdraw(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: 200, Currency: "EUR"}}); err != nil ||
		wd.State != phoneapi.WithdrawalSucceeded || len(wd.Refunds) != 1 || wd.Refunds[0].Order != pay.Order {
		t.Fatalf("Withdraw: %+v %v", wd, err)
	}
	if w, err := e.phone.GetWallet(ctx); err != nil || w.Available.Minor != 1000 {
		t.Fatalf("wallet after the withdrawal: %+v %v", w, err)
	}

	t.Run("IdempotentReplayAndReuse", func(t *testing.T) {
		body := `{"amount":{"minor":1000,"currency":"EUR"},"source":"card_sandbox"}`
		resp, b := e.raw(t, "POST", "/v1/wallet/topups", e.phone.Token(), topKey, body)
		if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d %q %s", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), b)
		}
		if av, _ := e.wallet(t); av != 1000 {
			t.Fatalf("replay charged again: available %d", av)
		}
		_, err := e.phone.TopUp(ctx, topKey, &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 999, Currency: "EUR"}, Source: "card_sandbox"})
		wantCode(t, err, "idempotency.key_reused")
		resp, _ = e.raw(t, "POST", "/v1/wallet/topups", e.phone.Token(), "", body)
		if resp.StatusCode != 400 {
			t.Fatalf("no key: %d", resp.StatusCode)
		}
		resp, b = e.raw(t, "POST", "/v1/wallet/topups", e.phone.Token(), phoneapi.NewIdempotencyKey(), `{"amount":{"minor":5,"currency":"EUR"},"source":"card_sandbox","tip":1}`)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "request.field") || !strings.Contains(string(b), "tip") {
			t.Fatalf("unknown field: %d %s", resp.StatusCode, b)
		}
		resp, b = e.raw(t, "GET", "/v1/wallet", "", "", "")
		if resp.StatusCode != 401 || !strings.Contains(string(b), "auth.required") {
			t.Fatalf("no token: %d %s", resp.StatusCode, b)
		}
	})

	t.Run("Purchase", func(t *testing.T) {
		res, err := e.phone.Resolve(ctx, &phoneapi.ResolveRequest{ProximityID: e.water.proximityID(time.Now())})
		if err != nil || res.Device.ID != "wd-1" || len(res.Machines) != 1 || res.Machines[0].Price != (vend.Price{Minor: 50, Per: 1000}) {
			t.Fatalf("Resolve: %+v %v", res, err)
		}
		s, g := e.start(t, e.water, "tap1", "", 2000) // 2 l, hold 1.00
		if av, held := e.wallet(t); av != 900 || held != 100 {
			t.Fatalf("after hold: %d/%d", av, held)
		}
		stream, err := e.phone.SessionEvents(ctx, s.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		ev, err := stream.Next()
		if err != nil || ev.Type != phoneapi.EventState || ev.Session.State != phoneapi.StateAuthorized {
			t.Fatalf("first event %+v %v", ev, err)
		}
		started := e.water.event(mqttapi.EventStarted, g, 0)
		e.water.publish(started)
		e.water.publish(e.water.event(mqttapi.EventProgress, g, 800))
		ended := e.water.event(mqttapi.EventEnded, g, 1500)
		e.water.publish(ended)
		usage := e.water.usage(g, 1500, vend.OutcomeUserStop, nil)
		// Five deliveries, reordered with the events.
		e.water.publish(usage)
		e.water.publish(started)
		e.water.publish(usage)
		e.water.publish(ended)
		for range 3 {
			e.water.publish(usage)
		}
		var sawProgress, sawEnded bool
		for !sawEnded {
			ev, err := stream.Next()
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			switch ev.Type {
			case phoneapi.EventProgress:
				sawProgress = sawProgress || ev.Progress.Units == 800
			case phoneapi.EventEnded:
				sawEnded = true
				if ev.Session.State != phoneapi.StateSettled || ev.Session.Amount.Minor != 75 {
					t.Fatalf("ended %+v", ev.Session)
				}
			}
		}
		if !sawProgress {
			t.Error("no progress event")
		}
		eventually(t, "usage acked 5 times", func() bool { return e.water.acked(usage.ID) >= 5 && e.water.acked(ended.ID) >= 2 })
		rc, err := e.phone.GetReceipt(ctx, s.ID)
		if err != nil || rc.Captured.Minor != 75 || rc.Released.Minor != 25 || rc.Units != 1500 || rc.Validate() != nil {
			t.Fatalf("receipt %+v %v", rc, err)
		}
		if av, held := e.wallet(t); av != 925 || held != 0 {
			t.Fatalf("after settle: %d/%d, want 925/0", av, held)
		}
		got, err := e.phone.GetSession(ctx, s.ID)
		if err != nil || got.State != phoneapi.StateSettled || got.Outcome != vend.OutcomeUserStop {
			t.Fatalf("GetSession %+v %v", got, err)
		}
		if list, err := e.phone.ListSessions(ctx, &phoneapi.ListSessionsParams{Limit: 1}); err != nil || len(list.Sessions) != 1 || list.Sessions[0].ID != s.ID {
			t.Fatalf("ListSessions = %+v %v, want the settled session first", list, err)
		}
		// Stopping an ended session answers it unchanged.
		st, err := e.phone.StopSession(ctx, phoneapi.NewIdempotencyKey(), s.ID)
		if err != nil || st.State != phoneapi.StateSettled {
			t.Fatalf("stop ended: %+v %v", st, err)
		}
		// Reconnecting to an ended session: a snapshot and ended.
		st2, err := e.phone.SessionEvents(ctx, s.ID, stream.LastEventID())
		if err != nil {
			t.Fatal(err)
		}
		for {
			ev, err := st2.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type == phoneapi.EventEnded && ev.Session.State != phoneapi.StateSettled {
				t.Fatalf("resumed ended %+v", ev.Session)
			}
		}
		st2.Close()
	})

	t.Run("StopAndBadSignature", func(t *testing.T) {
		before := e.m.Service.Metrics.SignatureFailures()
		s, g := e.start(t, e.water, "tap1", "", 1000)
		e.water.publish(e.water.event(mqttapi.EventStarted, g, 0))
		eventually(t, "running", func() bool {
			x, err := e.phone.GetSession(ctx, s.ID)
			return err == nil && x.State == phoneapi.StateRunning
		})
		st, err := e.phone.StopSession(ctx, phoneapi.NewIdempotencyKey(), s.ID)
		if err != nil || st.State != phoneapi.StateEnding {
			t.Fatalf("stop: %+v %v", st, err)
		}
		eventually(t, "stop command", func() bool { e.water.mu.Lock(); defer e.water.mu.Unlock(); return e.water.stops > 0 })
		_, forged, _ := ed25519.GenerateKey(rand.Reader)
		bad := e.water.usage(g, 1000, vend.OutcomeUserStop, forged)
		e.water.publish(bad)
		eventually(t, "signature failure counted", func() bool { return e.m.Service.Metrics.SignatureFailures() > before })
		if x, _ := e.phone.GetSession(ctx, s.ID); x.State != phoneapi.StateEnding {
			t.Fatalf("forged report moved the session to %s", x.State)
		}
		// It can never verify: dead-lettered once and acked, so the outbox
		// stops resending it; a resend is acked again, not stored again.
		eventually(t, "forged report acked", func() bool { return e.water.acked(bad.ID) == 1 })
		e.water.publish(bad)
		eventually(t, "forged report acked again", func() bool { return e.water.acked(bad.ID) == 2 })
		if dl, err := e.m.Store.DeadLetters(ctx, "wd-1", 0); err != nil || len(dl) != 1 || dl[0].MessageID != bad.ID {
			t.Fatalf("dead letters = %+v, %v; want the forged report once", dl, err)
		}
		e.water.publish(e.water.usage(g, 400, vend.OutcomeUserStop, nil))
		eventually(t, "settled", func() bool {
			x, err := e.phone.GetSession(ctx, s.ID)
			return err == nil && x.State == phoneapi.StateSettled && x.Amount.Minor == 20
		})
	})

	t.Run("Relay", func(t *testing.T) {
		// The operator sets the water tap to relay always: the phone gets
		// the grant to carry, no Authorize goes over MQTT, and the board's
		// report comes back through the phone; the same report over MQTT
		// later is acknowledged, not settled twice.
		resp, b := e.raw(t, "POST", "/v1/operator/auth/login", "", "", `{"email":"ops@acme.example","password":"acme-password-1"}`)
		if resp.StatusCode != 200 {
			t.Fatalf("operator login %d %s", resp.StatusCode, b)
		}
		var tok struct{ Token string }
		json.Unmarshal(b, &tok)
		relayAlways := func(on bool) {
			resp, b := e.raw(t, "PUT", "/v1/operator/devices/wd-1/relay-always", tok.Token, phoneapi.NewIdempotencyKey(),
				fmt.Sprintf(`{"on":%t,"machine":"tap1"}`, on))
			if resp.StatusCode != 200 {
				t.Fatalf("relay-always %t: %d %s", on, resp.StatusCode, b)
			}
		}
		relayAlways(true)
		defer relayAlways(false)
		av0, _ := e.wallet(t)
		s, err := e.phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{Device: "wd-1", Machine: "tap1",
			ProximityID: e.water.proximityID(time.Now()), Cap: phoneapi.Cap{Units: 1000}, Source: "wallet", CanRelay: true})
		if err != nil || s.State != phoneapi.StatePending || s.Relay == nil {
			t.Fatalf("StartSession = %+v, %v; want pending with a relay", s, err)
		}
		if g := e.water.grant(s.ID); g.Session == s.ID {
			t.Fatal("the grant also went over MQTT")
		}
		g, err := signed.OpenGrant(s.Relay.Grant, e.water.cloud)
		if err != nil || g.Session != s.ID {
			t.Fatalf("relayed grant %+v, %v", g, err)
		}
		u := e.water.usage(g, 600, vend.OutcomeCompleted, nil)
		ua, err := e.phone.UploadUsage(ctx, phoneapi.NewIdempotencyKey(), s.ID, u.Report)
		if err != nil || ua.Session.State != phoneapi.StateSettled || ua.Session.Amount.Minor != 30 || len(ua.CloudAck) == 0 {
			t.Fatalf("UploadUsage = %+v, %v", ua, err)
		}
		e.water.publish(u)
		eventually(t, "the MQTT copy acked", func() bool { return e.water.acked(u.ID) == 1 })
		if x, err := e.phone.GetSession(ctx, s.ID); err != nil || x.State != phoneapi.StateSettled || x.Amount.Minor != 30 {
			t.Fatalf("after the MQTT copy: %+v, %v", x, err)
		}
		if av, held := e.wallet(t); av != av0-30 || held != 0 {
			t.Fatalf("wallet %d held %d, want %d and 0", av, held, av0-30)
		}
	})

	t.Run("JamReleasesAll", func(t *testing.T) {
		av0, _ := e.wallet(t)
		s, g := e.start(t, e.vend, "vm1", "A1", 1)
		if av, held := e.wallet(t); av != av0-150 || held != 150 {
			t.Fatalf("hold: %d/%d", av, held)
		}
		e.vend.publish(e.vend.usage(g, 0, vend.OutcomeVendFailed, nil))
		eventually(t, "refunded", func() bool {
			x, err := e.phone.GetSession(ctx, s.ID)
			return err == nil && x.State == phoneapi.StateRefunded
		})
		if av, held := e.wallet(t); av != av0 || held != 0 {
			t.Fatalf("after jam: %d/%d, want %d/0", av, held, av0)
		}
		rc, err := e.phone.GetReceipt(ctx, s.ID)
		if err != nil || rc.Captured.Minor != 0 || rc.Released.Minor != 150 || rc.Outcome != vend.OutcomeVendFailed {
			t.Fatalf("receipt %+v %v", rc, err)
		}
	})

	t.Run("DeviceRefusesBusy", func(t *testing.T) {
		av0, _ := e.wallet(t)
		e.vend.mu.Lock()
		e.vend.refuse = mqttapi.CodeMachineBusy
		e.vend.mu.Unlock()
		defer func() { e.vend.mu.Lock(); e.vend.refuse = ""; e.vend.mu.Unlock() }()
		_, err := e.phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{
			Device: "vm-1", Machine: "vm1", Slot: "A2", ProximityID: e.vend.proximityID(time.Now()), Cap: phoneapi.Cap{Units: 1}, Source: "wallet"})
		wantCode(t, err, "machine.busy")
		var ae *phoneapi.APIError
		if !errors.As(err, &ae) || ae.Status != 409 {
			t.Fatalf("status: %v", err)
		}
		if av, held := e.wallet(t); av != av0 || held != 0 {
			t.Fatalf("after refusal: %d/%d", av, held)
		}
	})

	t.Run("ProximityWindows", func(t *testing.T) {
		period := time.Duration(1<<*e.water.cfg.Beacon.K) * time.Second
		_, err := e.phone.Resolve(ctx, &phoneapi.ResolveRequest{ProximityID: e.water.proximityID(time.Now().Add(-3 * period))})
		wantCode(t, err, "proximity.expired")
		_, err = e.phone.Resolve(ctx, &phoneapi.ResolveRequest{ProximityID: "0123456789abcdef"})
		wantCode(t, err, "proximity.unknown")
		_, err = e.phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{
			Device: "wd-1", Machine: "tap1", ProximityID: e.water.proximityID(time.Now().Add(-3 * period)), Cap: phoneapi.Cap{Units: 100}, Source: "wallet"})
		wantCode(t, err, "proximity.expired")
		_, err = e.phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{
			Device: "wd-1", Machine: "tap1", ProximityID: e.vend.proximityID(time.Now()), Cap: phoneapi.Cap{Units: 100}, Source: "wallet"})
		wantCode(t, err, "proximity.unknown")
	})

	t.Run("Operator", func(t *testing.T) {
		login := func(email, pw string) string {
			resp, b := e.raw(t, "POST", "/v1/operator/auth/login", "", "", fmt.Sprintf(`{"email":%q,"password":%q}`, email, pw))
			if resp.StatusCode != 200 {
				t.Fatalf("operator login %d %s", resp.StatusCode, b)
			}
			var tok struct{ Token string }
			json.Unmarshal(b, &tok)
			return tok.Token
		}
		acme, other := login("ops@acme.example", "acme-password-1"), login("ops@other.example", "other-password-1")
		resp, b := e.raw(t, "GET", "/v1/operator/devices", acme, "", "")
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"wd-1"`) || strings.Contains(string(b), `"ow-1"`) || !strings.Contains(string(b), `"online":true`) {
			t.Fatalf("devices %d %s", resp.StatusCode, b)
		}
		for _, c := range []struct{ method, path, tok, body string }{
			{"GET", "/v1/operator/devices/ow-1", acme, ""},
			{"GET", "/v1/operator/devices/wd-1", other, ""},
			{"PUT", "/v1/operator/devices/wd-1/machines/tap1/price", other, `{"price":{"minor":1,"per":1}}`},
		} {
			resp, b := e.raw(t, c.method, c.path, c.tok, "", c.body)
			if resp.StatusCode != 404 || !strings.Contains(string(b), "device.not_found") {
				t.Fatalf("%s %s: %d %s, want 404 device.not_found", c.method, c.path, resp.StatusCode, b)
			}
		}
		resp, b = e.raw(t, "PUT", "/v1/operator/devices/wd-1/machines/tap1/price", acme, "", `{"price":{"minor":60,"per":1000}}`)
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"minor":60`) {
			t.Fatalf("set price %d %s", resp.StatusCode, b)
		}
		eventually(t, "set_prices at the device", func() bool {
			e.water.mu.Lock()
			defer e.water.mu.Unlock()
			return len(e.water.prices) == 1 && e.water.prices[0].Prices[0].Price.Minor == 60
		})
		resp, b = e.raw(t, "GET", "/v1/operator/sessions?device=wd-1", acme, "", "")
		if resp.StatusCode != 200 || strings.Count(string(b), `"settled"`) < 2 {
			t.Fatalf("sessions %d %s", resp.StatusCode, b)
		}
		resp, b = e.raw(t, "GET", "/v1/operator/sessions", other, "", "")
		if resp.StatusCode != 200 || strings.Contains(string(b), "wd-1") {
			t.Fatalf("other's sessions %d %s", resp.StatusCode, b)
		}
		resp, b = e.raw(t, "GET", "/v1/operator/revenue", acme, "", "")
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"minor":125`) { // 0.95, and the relayed 0.30
			t.Fatalf("revenue %d %s", resp.StatusCode, b)
		}
		resp, _ = e.raw(t, "GET", "/v1/operator/devices", e.phone.Token(), "", "")
		if resp.StatusCode != 401 {
			t.Fatalf("phone token on operator API: %d", resp.StatusCode)
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		resp, _ := e.raw(t, "GET", "/metrics", "", "", "")
		if resp.StatusCode != 404 {
			t.Fatalf("/metrics on the public listener: %d, want 404", resp.StatusCode)
		}
		if err := e.m.Service.RefreshGauges(ctx); err != nil { // the periodic job, now
			t.Fatal(err)
		}
		resp, err := http.Get(e.m.AdminURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatal(resp.StatusCode)
		}
		for _, want := range []string{"beaconvend_ledger_imbalance_minor 0\n", `beaconvend_sessions_total{state="settled"} 3`, "beaconvend_usage_signature_failures_total 1", "beaconvend_devices_online 3", "beaconvend_authorize_latency_seconds_count"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		for _, p := range []string{"/healthz", "/readyz"} {
			if resp, b := e.raw(t, "GET", p, "", "", ""); resp.StatusCode != 200 {
				t.Errorf("%s: %d %s", p, resp.StatusCode, b)
			}
		}
		if bad, err := e.m.Store.CheckBalances(ctx); err != nil || len(bad) != 0 {
			t.Fatalf("balances %v %v", bad, err)
		}
	})

	t.Run("GuestCheckout", func(t *testing.T) {
		// A payer without an account pays one session through the sandbox
		// card (a prepayment), stops early and reads the receipt link: the
		// unused part went back to the same order.
		guest := e.newPhone()
		co, err := guest.CreateCheckout(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.CheckoutRequest{Device: "wd-1", Machine: "tap1",
			ProximityID: e.water.proximityID(time.Now()), Cap: phoneapi.Cap{Units: 2000}, Source: "card_sandbox"})
		if err != nil || co.Token == "" || co.Mode != phoneapi.HoldModePrepay {
			t.Fatalf("CreateCheckout: %+v %v", co, err)
		}
		var cur *phoneapi.Checkout
		eventually(t, "checkout in session", func() bool {
			cur, err = guest.GetCheckout(ctx, co.ID, co.Token)
			return err == nil && cur.State == phoneapi.CheckoutInSession && cur.Session != nil
		})
		g := e.water.grant(*cur.Session)
		if g.Session != *cur.Session || g.CapMoney != co.Hold.Minor {
			t.Fatalf("grant %+v for checkout %+v", g, co)
		}
		if _, err := guest.StopCheckout(ctx, co.ID, co.Token); err != nil {
			t.Fatal(err)
		}
		eventually(t, "stop command", func() bool { e.water.mu.Lock(); defer e.water.mu.Unlock(); return e.water.stops > 1 })
		e.water.publish(e.water.usage(g, 1000, vend.OutcomeUserStop, nil))
		eventually(t, "checkout done", func() bool {
			cur, err = guest.GetCheckout(ctx, co.ID, co.Token)
			return err == nil && cur.State == phoneapi.CheckoutDone
		})
		half := co.Hold.Minor / 2
		rc, err := e.newPhone().GetCheckoutReceipt(ctx, cur.ReceiptURL[strings.LastIndex(cur.ReceiptURL, "/")+1:])
		if err != nil || rc.Captured.Minor != half || rc.Returned.Minor != co.Hold.Minor-half || len(rc.Refunds) != 1 || rc.Refunds[0].Order != co.Order {
			t.Fatalf("receipt %+v %v", rc, err)
		}
		if imb, err := e.m.Store.LedgerImbalance(ctx); err != nil || len(imb) != 0 {
			t.Fatalf("ledger %v %v", imb, err)
		}
	})

	t.Run("StepUp", func(t *testing.T) {
		// A payer sets a PIN and a threshold (itself behind a step-up);
		// a checkout whose cap is above it is refused without a step-up
		// token and opened with one, which cannot be spent twice.
		p := e.newPhone()
		if _, err := p.SignUp(ctx, &phoneapi.SignUpRequest{Email: "pin@example.com", Password: "pin-payer-password"}); err != nil {
			t.Fatal(err)
		}
		if err := p.SetPIN(ctx, &phoneapi.SetPINRequest{PIN: "4829"}); err != nil {
			t.Fatal(err)
		}
		tok, err := p.StepUp(ctx, &phoneapi.StepUpRequest{PIN: "4829", Scope: "settings"})
		if err != nil {
			t.Fatal(err)
		}
		limit := phoneapi.Amount{Minor: 1, Currency: "EUR"}
		if _, err := p.SetStepUpThresholds(phoneapi.WithStepUpToken(ctx, tok.Token), &phoneapi.StepUpThresholds{SessionCapAbove: &limit}); err != nil {
			t.Fatal(err)
		}
		if st, err := p.GetStepUpSettings(ctx); err != nil || !st.PINSet || st.SessionCapAbove == nil || st.SessionCapAbove.Minor != 1 {
			t.Fatalf("settings %+v %v", st, err)
		}
		req := &phoneapi.CheckoutRequest{Device: "wd-1", Machine: "tap1", ProximityID: e.water.proximityID(time.Now()),
			Cap: phoneapi.Cap{Units: 1000}, Source: "card_sandbox"}
		key := phoneapi.NewIdempotencyKey()
		_, err = p.CreateCheckout(ctx, key, req)
		wantCode(t, err, "step_up.required")
		_, err = p.SetStepUpThresholds(phoneapi.WithStepUpToken(ctx, tok.Token), &phoneapi.StepUpThresholds{})
		wantCode(t, err, "step_up.invalid") // spent
		tok, err = p.StepUp(ctx, &phoneapi.StepUpRequest{PIN: "4829", Scope: "checkout"})
		if err != nil {
			t.Fatal(err)
		}
		co, err := p.CreateCheckout(phoneapi.WithStepUpToken(ctx, tok.Token), key, req)
		if err != nil {
			t.Fatalf("checkout with a step-up: %v", err)
		}
		if _, err := p.StopCheckout(ctx, co.ID, ""); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Auth", func(t *testing.T) {
		p := e.newPhone()
		if _, err := p.LogIn(ctx, &phoneapi.LogInRequest{Email: "ana@example.com", Password: "correct-horse-battery"}); err != nil {
			t.Fatal(err)
		}
		_, err := p.SignUp(ctx, &phoneapi.SignUpRequest{Email: "ana@example.com", Password: "another-password"})
		wantCode(t, err, "auth.email_taken")
		tok := p.Token()
		if err := p.LogOut(ctx); err != nil {
			t.Fatal(err)
		}
		p.SetToken(tok)
		_, err = p.GetWallet(ctx)
		wantCode(t, err, "auth.token")
		_, err = e.newPhone().LogIn(ctx, &phoneapi.LogInRequest{Email: "ana@example.com", Password: "wrong-password"})
		wantCode(t, err, "auth.credentials")
	})

	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	for _, r := range e.rec.routes {
		if !e.rec.seen[r.id] {
			t.Errorf("operation %s was not exercised with a 2xx answer", r.id)
		}
	}
}
