package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/server"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// The console rig: the cloud serving the operator console in this
// process (development configuration, SQLite or PostgreSQL), real
// controller processes on boards emulated in this process (simdev's
// relay rig: one water tap per board), one operator with an account per
// role, a second operator for isolation tests, and Chromium. Every
// console browser test (console_<feature>_e2e_test.go) starts one:
//
//	r := newConsoleRig(t, consoleRigOpts{})
//	p := r.login(t, service.RoleManager)
//	p.Go(r.URL + "/console/fleet")

// consoleRigOpts configure newConsoleRig.
type consoleRigOpts struct {
	// DSN is the cloud's database: "" for SQLite under the data
	// directory, or a PostgreSQL DSN (consolePG(t) makes a scratch one).
	DSN string
	// Boards is how many real controllers on emulated boards to run (one
	// water machine, simdev.RelayMachine, each); 1 when 0.
	Boards int
	// FlowLPM is the boards' emulated flow while a valve is open;
	// simdev.DefaultRelayFlowLPM when 0.
	FlowLPM float64
	// Config is merged (top-level keys replace) into the cloud's YAML
	// configuration, which is {development: true} otherwise.
	Config map[string]any
	// Args are more `cloud serve` flags (e.g. "-presence-stale", "3s").
	Args []string
}

// rigAccount is a console account of the rig: its log-in and IDs.
type rigAccount struct {
	Email, Password string
	Account         string // opa_…
	Operator        string // op_…
	Role            service.Role
}

// consoleRig is a running console rig.
type consoleRig struct {
	t     *testing.T
	URL   string // the cloud's public base URL, http://127.0.0.1:port; the console is URL+"/console/"
	M     *Main  // the in-process cloud: M.Store, M.MQTTURL, M.HTTPURL
	Data  string // the cloud's -data directory
	DSN   string // "" for SQLite
	B     *browsertest.Browser
	Relay *simdev.Relay

	Operator string                      // the rig operator's ID: it owns every board
	Accounts map[service.Role]rigAccount // one per role, of Operator
	Other    rigAccount                  // the owner of a second operator, with no devices
}

var (
	consoleBinsOnce sync.Once
	consoleBinsDir  string
	consoleBinsErr  error
)

// consoleBins builds the cloud and the controller once per test binary
// (TestMain removes them).
func consoleBins(t *testing.T) [2]string {
	t.Helper()
	consoleBinsOnce.Do(func() {
		if consoleBinsDir, consoleBinsErr = os.MkdirTemp("", "console-rig-bin-"); consoleBinsErr != nil {
			return
		}
		for _, b := range [][2]string{{"cloud", "beaconvend/cloud/cmd/cloud"}, {"controller", "beaconvend/controller/cmd/controller"}} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(consoleBinsDir, b[0]), b[1]).CombinedOutput(); err != nil {
				consoleBinsErr = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if consoleBinsErr != nil {
		t.Fatal(consoleBinsErr)
	}
	return [2]string{filepath.Join(consoleBinsDir, "cloud"), filepath.Join(consoleBinsDir, "controller")}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if consoleBinsDir != "" {
		os.RemoveAll(consoleBinsDir)
	}
	os.Exit(code)
}

// consolePG returns a scratch PostgreSQL database for a rig (skipped
// loudly, or failed under VEND_REQUIRE_SERVICES, without VEND_PG_DSN).
func consolePG(t *testing.T) string { return svctest.PostgresDSN(t, "console") }

// newConsoleRig starts a console rig for t; everything stops when t ends.
// It skips (or fails under VEND_REQUIRE_SERVICES) without Chromium, and
// is not run with -short.
func newConsoleRig(t *testing.T, opts consoleRigOpts) *consoleRig {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the cloud and the controller and runs Chromium; not with -short")
	}
	b := browsertest.Start(t) // before building anything: skip (or fail) here without a browser
	bins := consoleBins(t)
	if opts.Boards == 0 {
		opts.Boards = 1
	}
	r := &consoleRig{t: t, B: b, Data: t.TempDir(), DSN: opts.DSN, Accounts: map[service.Role]rigAccount{}}
	cfg := map[string]any{"development": true}
	maps.Copy(cfg, opts.Config)
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(cfgFile, y, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	relay, err := simdev.ProvisionRelay(ctx, simdev.RelayConfig{CloudBin: bins[0], ControllerBin: bins[1],
		DataDir: r.Data, DSN: opts.DSN, Dir: t.TempDir(), N: opts.Boards, FlowLPM: opts.FlowLPM})
	if err != nil {
		t.Fatal(err)
	}
	r.Relay = relay
	args := append([]string{"-config", cfgFile, "-data", r.Data, "-http", freeLoopback(t)}, opts.Args...)
	if opts.DSN != "" {
		args = append(args, "-db", opts.DSN)
	}
	r.M = r.serve(args)
	r.URL = r.M.HTTPURL
	t.Cleanup(func() { // before the cloud stops (cleanups run last-in first-out)
		if err := relay.Close(); err != nil {
			t.Logf("relay close: %v", err)
		}
	})
	if err := relay.Start(ctx, r.M.MQTTURL, r.M.HTTPURL); err != nil {
		t.Fatal(err)
	}
	d, err := r.M.Store.GetDevice(ctx, relay.Devices[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	r.Operator = d.OperatorID
	for _, role := range service.Roles {
		r.Accounts[role] = r.addAccount(r.Operator, string(role)+"@console-rig.example", role)
	}
	pw := r.password("other owner")
	out := r.cli("operator", "add", "-name", "Other operator", "-email", "owner@other-rig.example", "-password-file", pw)
	var res struct{ Operator, Account string }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("cloud operator add printed %q", out)
	}
	r.Other = rigAccount{Email: "owner@other-rig.example", Password: r.readPassword(pw), Account: res.Account, Operator: res.Operator, Role: service.RoleOwner}
	return r
}

// serve runs `cloud serve -dev args` in this process until t ends. The
// per-account log-in rate limit is raised (many tests log the same
// accounts in); the address limit and the lock-out after
// httpapi.DefaultLockoutAfter failures stay as shipped.
func (r *consoleRig) serve(args []string) *Main {
	t := r.t
	m := NewMain()
	m.Stdout, m.Stderr = io.Discard, io.Discard
	m.StoreOpts = store.Opts{BcryptCost: 4}
	m.HTTPOpts.Limits.PerAccount = httpapi.RateLimit{Per: 100 * time.Millisecond, Burst: 200}
	if err := m.ParseFlags(append([]string{"serve", "-dev"}, args...)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { err := m.Run(ctx); m.Close(); done <- err }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && err != context.Canceled {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case <-m.Ready:
	case err := <-done:
		done <- err // for the wait on Run's end at cleanup
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	return m
}

// password writes a fresh password to a file (the CLI reads passwords
// from files only) and returns the file.
func (r *consoleRig) password(what string) string {
	r.t.Helper()
	f := filepath.Join(r.t.TempDir(), "pw")
	pw := fmt.Sprintf("rig %s %d", what, time.Now().UnixNano())
	if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return f
}

func (r *consoleRig) readPassword(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// addAccount adds an account with role to operator through `cloud
// operator add-account -role`.
func (r *consoleRig) addAccount(operator, email string, role service.Role) rigAccount {
	r.t.Helper()
	pw := r.password(string(role))
	out := r.cli("operator", "add-account", "-operator", operator, "-email", email, "-role", string(role), "-password-file", pw)
	var res struct{ Account, Role string }
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Role != string(role) {
		r.t.Fatalf("cloud operator add-account -role %s printed %q", role, out)
	}
	return rigAccount{Email: email, Password: r.readPassword(pw), Account: res.Account, Operator: operator, Role: role}
}

// cli runs a cloud command in process against the rig's data and
// database and returns what it printed; args are the command's words
// (one or two) and then its flags.
func (r *consoleRig) cli(args ...string) string {
	r.t.Helper()
	var out, errb bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, &errb
	m.StoreOpts = store.Opts{BcryptCost: 4}
	n := 1
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		n = 2
	}
	full := append(append([]string{}, args[:n]...), "-data", r.Data)
	if r.DSN != "" {
		full = append(full, "-db", r.DSN)
	}
	full = append(full, args[n:]...)
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

// Store is the cloud's store.
func (r *consoleRig) Store() *store.Store { return r.M.Store }

// Board returns the i-th real controller with its emulated board
// (Board(i).ID is its device ID, .Machine its water machine,
// .Emulator.Board its registers and fault injection).
func (r *consoleRig) Board(i int) *simdev.RelayDevice { return r.Relay.Devices[i] }

// KillBoard ends board i's controller at once (SIGKILL), as a power cut
// does: its MQTT connection drops and the cloud marks it offline within
// the presence bound.
func (r *consoleRig) KillBoard(t *testing.T, i int) {
	t.Helper()
	if err := r.Relay.Kill(i); err != nil {
		t.Fatal(err)
	}
}

// Watch subscribes, as the cloud's broker account, to leaf (reply,
// state, evt, telemetry…) of device, and returns the decoded messages as
// they come (buffered; a full buffer drops the oldest unread). It sees
// what the device really publishes: a command's reply (mqttapi.Reply,
// CmdID and OK), its state. Unsubscribed when t ends.
func (r *consoleRig) Watch(t *testing.T, device string, leaf mqttapi.Leaf) <-chan mqttapi.Message {
	t.Helper()
	sec, err := server.LoadSecrets(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	o := paho.NewClientOptions().AddBroker(r.M.MQTTURL).SetClientID(fmt.Sprintf("_rig-watch-%d", time.Now().UnixNano())).
		SetUsername(broker.DefaultCloudUser).SetPassword(sec.MQTTPassword).SetCleanSession(true).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watch %s/%s: connect: %v", device, leaf, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	topic, err := mqttapi.Topic("", device, leaf)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan mqttapi.Message, 64)
	if tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		msg, err := mqttapi.Decode(leaf, m.Payload())
		if err != nil {
			t.Logf("watch %s: undecodable message: %v", topic, err)
			return
		}
		for {
			select {
			case ch <- msg:
				return
			default:
				select {
				case <-ch:
				default:
				}
			}
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watch %s: subscribe: %v", topic, tok.Error())
	}
	return ch
}

// login opens a fresh browser tab (its own cookies) and logs in as the
// rig operator's account of role through the real log-in form, typing
// the email and password; it returns the tab on the page the log-in led
// to.
func (r *consoleRig) login(t *testing.T, role service.Role) *browsertest.Page {
	t.Helper()
	a, ok := r.Accounts[role]
	if !ok {
		t.Fatalf("no rig account of role %q", role)
	}
	return r.loginAs(t, a)
}

// loginAs is login for any account (r.Other, one a test added).
func (r *consoleRig) loginAs(t *testing.T, a rigAccount) *browsertest.Page {
	t.Helper()
	p := r.B.Page(t, browsertest.Desktop)
	r.submitLogin(p, a.Email, a.Password)
	if strings.Contains(p.URL(), "/console/login") {
		t.Fatalf("log-in as %s failed: %q", a.Email, p.Text("main"))
	}
	return p
}

// submitLogin types email and password into the log-in form of a fresh
// log-in page and submits it.
func (r *consoleRig) submitLogin(p *browsertest.Page, email, password string) {
	p.T.Helper()
	p.Go(r.URL + "/console/login")
	p.Click("#email")
	p.Do(chromedp.KeyEvent(email))
	p.Click("#password")
	p.Do(chromedp.KeyEvent(password))
	p.ClickAndLoad("form.login button[type=submit]")
}

// sessionCookie returns the console session cookie the tab holds ("" when
// none): HttpOnly, so read over DevTools, never by the page.
func sessionCookie(p *browsertest.Page) *network.Cookie {
	p.T.Helper()
	var got *network.Cookie
	p.Do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
		for _, c := range res.Cookies {
			if c.Name == "bv_console" {
				got = c
			}
		}
		return err
	}))
	return got
}

// apiToken logs a into the JSON operator API and returns its bearer
// token.
func (r *consoleRig) apiToken(t *testing.T, a rigAccount) string {
	t.Helper()
	var tok struct{ Token string }
	status, body := r.api(t, "POST", "/v1/operator/auth/login", "", map[string]string{"email": a.Email, "password": a.Password}, &tok)
	if status != http.StatusOK || tok.Token == "" {
		t.Fatalf("operator log-in of %s: %d %s", a.Email, status, body)
	}
	return tok.Token
}

// api sends a JSON request to the cloud (bearer tok when not empty) and
// decodes a 2xx answer into out; it returns the status and the body.
func (r *consoleRig) api(t *testing.T, method, path, tok string, in, out any) (int, string) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return res.StatusCode, string(b)
}

// httpClient returns a client whose cookie jar holds the console session
// cookie value (a stolen or replayed cookie; no browser), not following
// redirects.
func (r *consoleRig) httpClient(t *testing.T, cookie string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(r.URL + "/console/")
	jar.SetCookies(u, []*http.Cookie{{Name: "bv_console", Value: cookie, Path: "/console/"}})
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
