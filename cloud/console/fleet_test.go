package console_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/console"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, mqttapi.Message) error { return nil }

// fleetRig is a console over a real store and service with two operators:
// "mine" (devices wd-1 water, wd-2 laundry) and "theirs" (zz-9), and a
// viewer session of mine.
type fleetRig struct {
	srv    *httptest.Server
	svc    *service.Service
	st     *store.Store
	op     string
	tok    string // the viewer's console session
	client *http.Client
}

func newFleetRig(t *testing.T, dsn string) *fleetRig {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: nopPublisher{}, CloudKey: cloud})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := st.CreateOperator(ctx, "mine")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := st.CreateOperator(ctx, "theirs")
	if err != nil {
		t.Fatal(err)
	}
	dev := func(id, op, name string, m store.Machine) {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		var k [16]byte
		rand.Read(k[:])
		if err := st.CreateDevice(ctx, store.Device{ID: id, OperatorID: op, Name: name, K: 5, SignKey: pub, MQTTHash: "x", IdentityKey: k,
			Machines: []store.Machine{m}}); err != nil {
			t.Fatal(err)
		}
	}
	dev("wd-1", mine.ID, "Water <Main>", store.Machine{ID: "tap1", Kind: vend.KindWater, Name: "Tap", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"})
	dev("wd-2", mine.ID, "Laundry", store.Machine{ID: "wash1", Kind: vend.KindWasher, Name: "Washer", Price: vend.Price{Minor: 350, Per: 1}, Currency: "EUR"})
	dev("zz-9", theirs.ID, "Not yours", store.Machine{ID: "tap1", Kind: vend.KindWater, Name: "Secret tap", Price: vend.Price{Minor: 1, Per: 1}, Currency: "EUR"})
	if err := st.SetDeviceLocation(ctx, mine.ID, "wd-2", "Station Road 4"); err != nil {
		t.Fatal(err)
	}
	acc, err := st.CreateOperatorAccountRole(ctx, mine.ID, "viewer@example.com", "password-123", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := st.StartConsoleSession(ctx, acc.ID, console.DefaultSession)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	c, err := console.New(console.Options{Store: st, Service: svc, KeepAlive: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(srv.URL + "/console/")
	jar.SetCookies(u, []*http.Cookie{{Name: "bv_console", Value: tok, Path: "/console/"}})
	r := &fleetRig{srv: srv, svc: svc, st: st, op: mine.ID, tok: tok, client: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	return r
}

func (r *fleetRig) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := r.client.Get(r.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *fleetRig) handle(t *testing.T, device string, leaf mqttapi.Leaf, m mqttapi.Message) {
	t.Helper()
	if err := r.svc.Handle(context.Background(), device, leaf, m); err != nil {
		t.Fatal(err)
	}
}

func onlineState() *mqttapi.State {
	return &mqttapi.State{Envelope: mqttapi.NewEnvelope(time.Now()), Status: mqttapi.Online}
}

func TestFleetPages(t *testing.T) {
	for _, db := range []struct{ name, dsn string }{
		{"sqlite", "sqlite:" + filepath.Join(t.TempDir(), "c.db")},
		{"postgres", ""},
	} {
		t.Run(db.name, func(t *testing.T) {
			dsn := db.dsn
			if dsn == "" {
				dsn = svctest.PostgresDSN(t, "vend_console_fleet")
			}
			r := newFleetRig(t, dsn)
			r.handle(t, "wd-1", mqttapi.LeafState, onlineState())
			tel := &mqttapi.Telemetry{Envelope: mqttapi.NewEnvelope(time.Now()), Board: mqttapi.Board{Status: "ok"}, OutboxDepth: 7,
				Modem:    &mqttapi.Modem{CSQ: 20, Registration: mqttapi.RegHome, Tech: "lte-m"},
				Machines: []mqttapi.MachineStatus{{ID: "tap1", State: mqttapi.MachineIdle, Counters: mqttapi.Counters{Unit: vend.UnitML}}}}
			r.handle(t, "wd-1", mqttapi.LeafTelemetry, tel)

			code, body := r.get(t, "/console/fleet")
			if code != 200 {
				t.Fatalf("GET /console/fleet = %d\n%s", code, body)
			}
			for _, want := range []string{`data-device="wd-1" data-status="online"`, `data-device="wd-2" data-status="offline"`,
				"Water &lt;Main&gt;", "Station Road 4", "CSQ 20", "home, lte-m", `<td class="num">7</td>`, "never heard",
				`sse-connect="/console/fleet/events"`, "2 devices"} {
				if !strings.Contains(body, want) {
					t.Errorf("fleet page lacks %s", want)
				}
			}
			if strings.Contains(body, "zz-9") || strings.Contains(body, "Secret tap") {
				t.Fatal("the fleet page shows another operator's device")
			}
			// Filter and search.
			_, body = r.get(t, "/console/fleet?state=offline")
			if strings.Contains(body, `data-device="wd-1"`) || !strings.Contains(body, `data-device="wd-2"`) {
				t.Error("state=offline does not show only the offline device")
			}
			_, body = r.get(t, "/console/fleet?q=station")
			if strings.Contains(body, `data-device="wd-1"`) || !strings.Contains(body, `data-device="wd-2"`) {
				t.Error("q=station does not find the device by its location")
			}
			_, body = r.get(t, "/console/fleet?q=zz-9")
			if strings.Contains(body, `data-device="zz-9"`) || !strings.Contains(body, "No device matches") {
				t.Error("searching another operator's device ID found something")
			}
			if code, _ := r.get(t, "/console/fleet?state=sideways"); code != 400 {
				t.Errorf("unknown state filter: %d, want 400", code)
			}
			// The device page; another operator's is not found.
			code, body = r.get(t, "/console/fleet/wd-1")
			if code != 200 || !strings.Contains(body, "Cellular signal") || !strings.Contains(body, "<svg") ||
				!strings.Contains(body, "0.50 EUR per 1 L") || !strings.Contains(body, "connected") {
				t.Fatalf("device page = %d\n%s", code, body)
			}
			if strings.Contains(body, "Change the price") {
				t.Error("a viewer is offered the price change")
			}
			for _, p := range []string{"/console/fleet/zz-9", "/console/fleet/events?device=zz-9", "/console/fleet/..%2f", "/console/fleet/nope"} {
				if code, body := r.get(t, p); code != 404 || strings.Contains(body, "Secret") {
					t.Errorf("GET %s = %d, want 404", p, code)
				}
			}
			// Without a session: the log-in page, nothing of the fleet.
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(r.srv.URL + "/console/fleet")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
				t.Fatalf("anonymous GET /console/fleet = %d %s", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

// sseReader reads events from a stream.
type sseReader struct{ sc *bufio.Scanner }

func (s sseReader) next(t *testing.T, within time.Duration) (string, string) {
	t.Helper()
	type ev struct{ name, data string }
	done := make(chan ev, 1)
	go func() {
		var e ev
		var data []string
		for s.sc.Scan() {
			line := s.sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				e.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			case line == "" && e.name != "":
				e.data = strings.Join(data, "\n")
				done <- e
				return
			}
		}
		close(done)
	}()
	select {
	case e, ok := <-done:
		if !ok {
			t.Fatal("event stream ended")
		}
		return e.name, e.data
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
	}
	return "", ""
}

// The stream sends the table at once, then again when a board goes
// offline (the broker's disconnect hook), well within a poll.
func TestFleetEventsLive(t *testing.T) {
	r := newFleetRig(t, "sqlite:"+filepath.Join(t.TempDir(), "c.db"))
	r.handle(t, "wd-1", mqttapi.LeafState, onlineState())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", r.srv.URL+"/console/fleet/events?q=wd-1", nil)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("events = %d %s", resp.StatusCode, ct)
	}
	s := sseReader{bufio.NewScanner(resp.Body)}
	name, data := s.next(t, 2*time.Second)
	if name != "fleet" || !strings.Contains(data, `data-device="wd-1" data-status="online"`) || strings.Contains(data, "wd-2") {
		t.Fatalf("first event %s:\n%s", name, data)
	}
	r.svc.DeviceDisconnected(context.Background(), "wd-1", time.Now())
	name, data = s.next(t, console.FleetPoll/2)
	if name != "fleet" || !strings.Contains(data, `data-device="wd-1" data-status="offline"`) {
		t.Fatalf("after the disconnect %s:\n%s", name, data)
	}
	// Logged out elsewhere: the stream ends at its next poll.
	if err := r.st.EndConsoleSession(context.Background(), r.tok); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() {
		io.Copy(io.Discard, resp.Body)
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(2 * console.FleetPoll):
		t.Fatal("the stream outlived its console session")
	}
}

// A fleet larger than a page lists FleetRows devices and says how many
// more match; search still finds the others.
func TestFleetRowsBounded(t *testing.T) {
	r := newFleetRig(t, "sqlite:"+filepath.Join(t.TempDir(), "c.db"))
	ctx := context.Background()
	for i := 0; i < console.FleetRows; i++ {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		if err := r.st.CreateDevice(ctx, store.Device{ID: fmt.Sprintf("bulk-%04d", i), OperatorID: r.op, Name: "bulk", K: 5, SignKey: pub, MQTTHash: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	total := console.FleetRows + 2
	code, body := r.get(t, "/console/fleet")
	if code != 200 || strings.Count(body, "<tr data-device=") != console.FleetRows ||
		!strings.Contains(body, fmt.Sprintf("(%d of %d)", console.FleetRows, total)) || !strings.Contains(body, "2 more devices match") {
		t.Fatalf("GET /console/fleet = %d with %d rows", code, strings.Count(body, "<tr data-device="))
	}
	if _, body := r.get(t, "/console/fleet?q=wd-2"); strings.Count(body, "<tr data-device=") != 1 {
		t.Fatal("search does not reach a device beyond the first page")
	}
}

// An unchanged fleet is not sent again at each poll.
func TestFleetEventsQuietWhenUnchanged(t *testing.T) {
	r := newFleetRig(t, "sqlite:"+filepath.Join(t.TempDir(), "c.db"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", r.srv.URL+"/console/fleet/events", nil)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := sseReader{bufio.NewScanner(resp.Body)}
	s.next(t, 2*time.Second)
	// Two polls pass; the minute may turn once, which changes the text.
	got := make(chan struct{}, 4)
	go func() {
		for s.sc.Scan() {
			if strings.HasPrefix(s.sc.Text(), "event: ") {
				got <- struct{}{}
			}
		}
	}()
	time.Sleep(2*console.FleetPoll + time.Second)
	if n := len(got); n > 1 {
		t.Fatalf("%d messages for an unchanged fleet over two polls", n)
	}
}
