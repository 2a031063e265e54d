package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/server"
	"beaconvend/cloud/store"
)

// Every bad configuration is refused with an error naming the field.
func TestConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cert, []byte("x"), 0o644)
	os.WriteFile(key, []byte("x"), 0o600)
	// A minimal valid production file; each case changes one thing.
	base := `
http: {listen: ":8443", tls: {cert_file: ` + cert + `, key_file: ` + key + `}}
admin: {listen: "127.0.0.1:9090"}
broker: {device_listen: ":8883", tls: {cert_file: ` + cert + `, key_file: ` + key + `}}
payments: {channels: []}
key_encryption: {key_env: KEK}
`
	if _, err := server.Parse(strings.NewReader(base), dir); err != nil {
		t.Fatalf("base: %v", err)
	}
	natsOK := strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`,
		`broker: {kind: nats, url: "ssl://mqtt.example:8883", nats_urls: ["tls://n1.example:4222", "tls://n2.example:4222"]}`, 1)
	if c, err := server.Parse(strings.NewReader(natsOK), dir); err != nil || !c.Broker.NATS() || len(c.Broker.NATSURLs) != 2 {
		t.Fatalf("nats broker: %v", err)
	}
	for _, tc := range []struct {
		name, yaml, field string
	}{
		{"unknown field", base + "colour: blue\n", "colour"},
		{"no channels", strings.Replace(base, "payments: {channels: []}", "", 1), "payments.channels"},
		{"sandbox in production", strings.Replace(base, "channels: []", "channels: [sandbox_card]", 1), "payments.channels"},
		{"unknown channel", strings.Replace(base, "channels: []", "channels: [bitcoin]", 1), "payments.channels"},
		{"no kek", strings.Replace(base, "key_encryption: {key_env: KEK}", "", 1), "key_encryption"},
		{"two keks", strings.Replace(base, "{key_env: KEK}", "{key_env: KEK, key_file: /k}", 1), "key_encryption"},
		{"no http tls", strings.Replace(base, `http: {listen: ":8443", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `http: {listen: ":8443"}`, 1), "http.tls"},
		{"tls and proxy", strings.Replace(base, `key_file: `+key+`}}
admin`, `key_file: `+key+`, terminated_by_proxy: true}}
admin`, 1), "http.tls"},
		{"cert without key", strings.Replace(base, `http: {listen: ":8443", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `http: {listen: ":8443", tls: {cert_file: `+cert+`}}`, 1), "http.tls"},
		{"missing cert file", strings.Replace(base, `http: {listen: ":8443", tls: {cert_file: `+cert, `http: {listen: ":8443", tls: {cert_file: /nonexistent.pem`, 1), "http.tls.cert_file"},
		{"no admin", strings.Replace(base, `admin: {listen: "127.0.0.1:9090"}`, "", 1), "admin.listen"},
		{"admin is public", strings.Replace(base, `admin: {listen: "127.0.0.1:9090"}`, `admin: {listen: ":8443"}`, 1), "admin.listen"},
		{"no broker tls", strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, "", 1), "broker.tls"},
		{"plain listener off loopback", strings.Replace(base, `broker: {device_listen`, `broker: {listen: "0.0.0.0:1883", device_listen`, 1), "broker.listen"},
		{"external plain broker off host", strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `broker: {url: "tcp://mqtt.example:1883"}`, 1), "broker.url"},
		{"external with embedded fields", strings.Replace(base, `broker: {device_listen`, `broker: {url: "ssl://mqtt.example:8883", device_listen`, 1), "broker"},
		{"unknown broker kind", strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `broker: {kind: kafka, url: "ssl://mqtt.example:8883"}`, 1), "broker.kind"},
		{"nats without nats_urls", strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `broker: {kind: nats, url: "ssl://mqtt.example:8883"}`, 1), "broker.nats_urls"},
		{"nats embedded", strings.Replace(base, `broker: {device_listen`, `broker: {kind: nats, nats_urls: ["tls://n1:4222"], device_listen`, 1), "broker.url"},
		{"nats plain off host", strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `broker: {kind: nats, url: "ssl://mqtt.example:8883", nats_urls: ["nats://n1.example:4222"]}`, 1), "broker.nats_urls"},
		{"nats_urls on mqtt", strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `broker: {url: "ssl://mqtt.example:8883", nats_urls: ["tls://n1:4222"]}`, 1), "broker.nats_urls"},
		{"fallback plain off host", strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `broker: {url: "ssl://mqtt.example:8883", fallback_urls: ["tcp://m2.example:1883"]}`, 1), "broker.fallback_urls"},
		{"device url plain off host", strings.Replace(base, `broker: {device_listen`, `broker: {device_url: "tcp://mqtt.example:1883", device_listen`, 1), "broker.device_url"},
		{"device url without port", strings.Replace(base, `broker: {device_listen`, `broker: {device_url: "ssl://mqtt.example", device_listen`, 1), "broker.device_url"},
		{"device url scheme", strings.Replace(base, `broker: {device_listen`, `broker: {device_url: "https://mqtt.example:443", device_listen`, 1), "broker.device_url"},
		{"device ca missing", strings.Replace(base, `broker: {device_listen`, `broker: {device_ca_file: nowhere.pem, device_listen`, 1), "broker.device_ca_file"},
		{"device ca not pem", strings.Replace(base, `broker: {device_listen`, `broker: {device_ca_file: `+key+`, device_listen`, 1), "broker.device_ca_file"},
		{"fallback with embedded", strings.Replace(base, `broker: {device_listen`, `broker: {fallback_urls: ["ssl://m2:8883"], device_listen`, 1), "broker.fallback_urls"},
		{"bad duration", base + "sessions: {grant_ttl: soon}\n", "soon"},
		{"bad policy", base + "sessions: {unreported_policy: keep}\n", "sessions.unreported_policy"},
		{"bad kind", base + "sessions: {run_per_unit: {toaster: 1s}}\n", "sessions.run_per_unit"},
		{"api proxy not named", strings.Replace(base, `http: {listen: ":8443", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `http: {listen: ":8080", tls: {terminated_by_proxy: true}}`, 1), "http.trusted_proxies"},
		{"bad proxy prefix", strings.Replace(base, `http: {listen: ":8443", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `http: {listen: ":8080", tls: {terminated_by_proxy: true}, trusted_proxies: [lb]}`, 1), "http.trusted_proxies[0]"},
		{"bad currency", strings.Replace(base, "payments: {channels: []}", "payments: {channels: [], currency: euro}", 1), "payments.currency"},
	} {
		_, err := server.Parse(strings.NewReader(tc.yaml), dir)
		if vend.CodeOf(err) != "config.invalid" || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want config.invalid naming %q", tc.name, err, tc.field)
		}
	}
	// The same relaxations pass under development: true.
	dev := "development: true\npayments: {channels: [sandbox_card]}\n"
	c, err := server.Parse(strings.NewReader(dev), dir)
	if err != nil {
		t.Fatalf("development: %v", err)
	}
	if c.Admin.Listen != "127.0.0.1:0" || c.Database != "sqlite:"+filepath.Join(dir, "cloud-data", "cloud.db") || !c.Broker.Embedded() {
		t.Fatalf("development defaults: %+v", c)
	}
	// An external broker over TLS, or plain on loopback, is production-ready.
	ext := strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `broker: {url: "tcp://127.0.0.1:1883"}`, 1)
	if _, err := server.Parse(strings.NewReader(ext), dir); err != nil {
		t.Fatalf("external loopback broker: %v", err)
	}
	api := strings.Replace(base, `http: {listen: ":8443", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `http: {listen: ":8080", tls: {terminated_by_proxy: true}, trusted_proxies: [10.0.0.0/8]}`, 1)
	if _, err := server.Parse(strings.NewReader(api), dir); err != nil {
		t.Fatalf("API behind a named TLS proxy: %v", err)
	}
	proxy := strings.Replace(base, `broker: {device_listen: ":8883", tls: {cert_file: `+cert+`, key_file: `+key+`}}`, `broker: {listen: "10.0.0.5:1883", tls: {terminated_by_proxy: true}}`, 1)
	if _, err := server.Parse(strings.NewReader(proxy), dir); err != nil {
		t.Fatalf("broker behind a TLS proxy: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The development configuration the demo runs starts, warns at WARN about
// each relaxation, and offers the sandbox card as a test source.
func TestDevelopmentConfigWarnsAndMarksSandbox(t *testing.T) {
	c, err := server.Load("testdata/cloud.dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c.DataDir, c.Database = dir, "sqlite:"+filepath.Join(dir, "cloud.db")
	c.HTTP.Listen, c.Broker.Listen = "127.0.0.1:0", "127.0.0.1:0"
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), c.Database, &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var log syncBuffer
	srv, err := server.New(server.Options{Config: c, Store: st, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() { close(ready) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		done <- err // for the wait on Run's end at cleanup
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started")
	}
	for _, want := range []string{"DEVELOPMENT configuration", "sandbox card is enabled", "stored in clear", "plain HTTP", "plain MQTT"} {
		if !strings.Contains(log.String(), "level=WARN msg=\"server: DEVELOPMENT") || !strings.Contains(log.String(), want) {
			t.Errorf("start log lacks a WARN with %q:\n%s", want, log.String())
		}
	}
	phone := phoneapi.New(srv.HTTPURL, &phoneapi.Opts{HTTPClient: http.DefaultClient})
	if _, err := phone.SignUp(ctx, &phoneapi.SignUpRequest{Email: "dev@example.com", Password: "correct-horse-battery"}); err != nil {
		t.Fatal(err)
	}
	src, err := phone.ListPaymentSources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Sources) != 2 || src.Sources[1].ID != "card_sandbox" || !src.Sources[1].Test || src.Sources[0].Test {
		t.Fatalf("payment sources %+v, want the wallet and card_sandbox marked test", src.Sources)
	}
}

// broker.nats_auth: every bad value is refused naming its field, its
// secret files must be 0600 and hold what `cloud broker nats-files`
// writes, and production wants two responders or more.
func TestConfigNATSAuth(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	acct, _ := nkeys.CreateAccount()
	seed, _ := acct.Seed()
	user, _ := nkeys.CreateUser()
	userSeed, _ := user.Seed()
	seedFile := write("auth-issuer.seed", string(seed)+"\n", 0o600)
	pwFile := write("auth-user.password", "s3cret\n", 0o600)
	open := write("open.seed", string(seed)+"\n", 0o644)
	groupPW := write("group.password", "s3cret\n", 0o640)
	notSeed := write("junk.seed", "hello\n", 0o600)
	userSeedFile := write("user.seed", string(userSeed)+"\n", 0o600)
	emptyPW := write("empty.password", "\n", 0o600)

	base := `
http: {listen: ":8443", tls: {terminated_by_proxy: true}, trusted_proxies: [10.0.0.0/8]}
admin: {listen: "127.0.0.1:9090"}
payments: {channels: []}
key_encryption: {key_env: KEK}
`
	nats := func(auth string) string {
		return base + `broker: {kind: nats, url: "ssl://mqtt.example:8883", nats_urls: ["tls://n1.example:4222"], nats_auth: ` + auth + "}\n"
	}
	c, err := server.Parse(strings.NewReader(nats(`{issuer_seed_file: `+seedFile+`, password_file: `+pwFile+`}`)), dir)
	if err != nil {
		t.Fatalf("valid nats_auth: %v", err)
	}
	if a := c.Broker.NATSAuth; a == nil || a.Responders != 2 {
		t.Fatalf("nats_auth %+v, want responders defaulted to 2", a)
	}
	if s, pw, err := c.NATSAuthSecrets(); err != nil || string(s) != string(seed) || pw != "s3cret" {
		t.Fatalf("NATSAuthSecrets = %q, %q, %v", s, pw, err)
	}
	// Relative paths are relative to the file's directory.
	if _, err := server.Parse(strings.NewReader(nats(`{issuer_seed_file: auth-issuer.seed, password_file: auth-user.password, responders: 3}`)), dir); err != nil {
		t.Fatalf("relative paths: %v", err)
	}
	ok := `issuer_seed_file: ` + seedFile + `, password_file: ` + pwFile
	for _, tc := range []struct {
		name, yaml, code, field string
	}{
		{"nats_auth on mqtt", base + `broker: {url: "ssl://mqtt.example:8883", nats_auth: {` + ok + `}}` + "\n", "config.invalid", "broker.nats_auth"},
		{"no seed file", nats(`{password_file: ` + pwFile + `}`), "config.invalid", "broker.nats_auth.issuer_seed_file"},
		{"no password file", nats(`{issuer_seed_file: ` + seedFile + `}`), "config.invalid", "broker.nats_auth.password_file"},
		{"missing seed file", nats(`{issuer_seed_file: ` + filepath.Join(dir, "none") + `, password_file: ` + pwFile + `}`), "config.key_file", "broker.nats_auth.issuer_seed_file"},
		{"seed readable by others", nats(`{issuer_seed_file: ` + open + `, password_file: ` + pwFile + `}`), "config.key_perms", "broker.nats_auth.issuer_seed_file"},
		{"password readable by group", nats(`{issuer_seed_file: ` + seedFile + `, password_file: ` + groupPW + `}`), "config.key_perms", "broker.nats_auth.password_file"},
		{"seed not a seed", nats(`{issuer_seed_file: ` + notSeed + `, password_file: ` + pwFile + `}`), "config.invalid", "broker.nats_auth.issuer_seed_file"},
		{"user seed", nats(`{issuer_seed_file: ` + userSeedFile + `, password_file: ` + pwFile + `}`), "config.invalid", "want an account seed"},
		{"empty password", nats(`{issuer_seed_file: ` + seedFile + `, password_file: ` + emptyPW + `}`), "config.invalid", "broker.nats_auth.password_file"},
		{"negative responders", nats(`{` + ok + `, responders: -1}`), "config.invalid", "broker.nats_auth.responders"},
		{"too many responders", nats(`{` + ok + `, responders: 17}`), "config.invalid", "broker.nats_auth.responders"},
		{"one responder in production", nats(`{` + ok + `, responders: 1}`), "config.invalid", "broker.nats_auth.responders"},
		{"unknown field", nats(`{` + ok + `, responder: 2}`), "config.invalid", "responder"},
	} {
		_, err := server.Parse(strings.NewReader(tc.yaml), dir)
		if vend.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want %s naming %q", tc.name, err, tc.code, tc.field)
		}
	}
	// A development cloud may run one responder.
	if _, err := server.Parse(strings.NewReader("development: true\n"+nats(`{`+ok+`, responders: 1}`)), dir); err != nil {
		t.Errorf("one responder in development: %v", err)
	}
}

// database_switch_wait reaches the store's SwitchWait; beyond 10m it is
// refused naming the field; unset, the store's default (30s) holds.
func TestConfigDatabaseSwitchWait(t *testing.T) {
	dev := "development: true\npayments: {channels: [sandbox_card]}\n"
	for _, tc := range []struct {
		yaml string
		want time.Duration
		err  string
	}{
		{dev, 0, ""},
		{dev + "database_switch_wait: 75s\n", 75 * time.Second, ""},
		{dev + "database_switch_wait: 11m\n", 0, "database_switch_wait"},
		{dev + "database_switch_wait: -1s\n", 0, "-1s"},
		{dev + "database_switch_wait: soon\n", 0, "soon"},
	} {
		c, err := server.Parse(strings.NewReader(tc.yaml), t.TempDir())
		if tc.err != "" {
			if vend.CodeOf(err) != "config.invalid" || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want config.invalid naming %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		so, err := c.StoreOptions(store.Opts{}, os.Getenv)
		if err != nil || so.SwitchWait != tc.want {
			t.Errorf("%q: SwitchWait %v, %v; want %v", tc.yaml, so.SwitchWait, err, tc.want)
		}
		// A test's own timing is kept.
		if so, _ := c.StoreOptions(store.Opts{SwitchWait: time.Second}, os.Getenv); so.SwitchWait != time.Second {
			t.Errorf("%q: base SwitchWait overridden: %v", tc.yaml, so.SwitchWait)
		}
	}
}
