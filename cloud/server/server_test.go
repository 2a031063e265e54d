package server_test

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
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/server"
	"beaconvend/cloud/store"
)

// testCA makes a CA and a server certificate for 127.0.0.1 and localhost
// signed by it, writes the server's PEM chain and key into dir, and
// returns a pool holding the CA and the two file names.
func testCA(t *testing.T, dir, name string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "beaconvend test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}

// prod is the README's production example, started on this machine: its
// file paths and addresses point into a temporary directory and at free
// loopback ports, everything else is as the README shows it.
type prod struct {
	cfg   *server.Config
	srv   *server.Server
	st    *store.Store
	pool  *x509.CertPool // the test CA of the API listener
	mqtt  *x509.CertPool // the test CA of the device listener
	https *http.Client   // trusts pool
	kek   []byte
}

// prodConfig decodes testdata/cloud.prod.yaml (the README's example) and
// points it at dir; edit may change it before it is completed.
func prodConfig(t *testing.T, dir string, edit func(*server.Config)) (*server.Config, [2]*x509.CertPool, []byte, error) {
	t.Helper()
	f, err := os.Open("testdata/cloud.prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := server.Decode(f, "testdata")
	if err != nil {
		t.Fatal(err)
	}
	pool, apiCert, apiKey := testCA(t, dir, "api")
	mqttPool, mqttCert, mqttKey := testCA(t, dir, "mqtt")
	kek := make([]byte, 32)
	rand.Read(kek)
	kekFile := filepath.Join(dir, "kek")
	if err := os.WriteFile(kekFile, []byte(hex.EncodeToString(kek)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.DataDir, c.Database = filepath.Join(dir, "data"), "sqlite:"+filepath.Join(dir, "cloud.db")
	c.HTTP.Listen, c.Admin.Listen, c.Broker.Listen, c.Broker.DeviceListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.HTTP.TLS.CertFile, c.HTTP.TLS.KeyFile = apiCert, apiKey
	c.Broker.TLS.CertFile, c.Broker.TLS.KeyFile = mqttCert, mqttKey
	c.KeyEncryption.KeyFile = kekFile
	if edit != nil {
		edit(c)
	}
	return c, [2]*x509.CertPool{pool, mqttPool}, kek, c.Complete()
}

// startProd starts the production example in process.
func startProd(t *testing.T) *prod {
	t.Helper()
	dir := t.TempDir()
	cfg, pools, kek, err := prodConfig(t, dir, nil)
	if err != nil {
		t.Fatalf("README production example: %v", err)
	}
	p := &prod{cfg: cfg, pool: pools[0], mqtt: pools[1], kek: kek,
		https: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pools[0]}}}}
	p.st = openStore(t, cfg)
	p.srv, err = server.New(server.Options{Config: cfg, Store: p.st})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := runServer(p.srv, 20*time.Second)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("the production example did not start: %v", err)
	}
	return p
}

func (p *prod) get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The README's fleet section shows exactly the production example the
// tests start.
func TestREADMEShowsProductionExample(t *testing.T) {
	example, err := os.ReadFile("testdata/cloud.prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte("```yaml\n"+string(example)+"```\n")) {
		t.Fatal("README.md does not show cloud/server/testdata/cloud.prod.yaml verbatim in a ```yaml block")
	}
}

// The production example refuses the always-paying sandbox card: asking
// for it fails the configuration, naming the field, and the running
// cloud offers no such source and refuses a top-up through it.
func TestProductionRefusesSandboxChannel(t *testing.T) {
	_, _, _, err := prodConfig(t, t.TempDir(), func(c *server.Config) { c.Payments.Channels = []server.ChannelConfig{{Name: "sandbox_card"}} })
	if vend.CodeOf(err) != "config.invalid" || !strings.Contains(err.Error(), "payments.channels") {
		t.Fatalf("production example with sandbox_card: %v, want a config error naming payments.channels", err)
	}
	p := startProd(t)
	ctx := context.Background()
	phone := phoneapi.New(p.srv.HTTPURL, &phoneapi.Opts{HTTPClient: p.https})
	if _, err := phone.SignUp(ctx, &phoneapi.SignUpRequest{Email: "mint@example.com", Password: "correct-horse-battery"}); err != nil {
		t.Fatal(err)
	}
	src, err := phone.ListPaymentSources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Sources) != 1 || src.Sources[0].ID != "wallet" {
		t.Fatalf("payment sources %+v, want the wallet only", src.Sources)
	}
	_, err = phone.TopUp(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 50000, Currency: "EUR"}, Source: "card_sandbox"})
	if vend.CodeOf(err) != "source.not_found" {
		t.Fatalf("sandbox top-up on the production example: %v, want source.not_found", err)
	}
}

// The production example seals identity keys with its key-encryption
// key: the raw row is ciphertext, a store without the key cannot read it,
// and the running cloud resolves the device's proximity IDs.
func TestProductionEncryptsIdentityKeys(t *testing.T) {
	p := startProd(t)
	ctx := context.Background()
	op, err := p.st.CreateOperator(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	ik := proxid.Key{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if err := p.st.CreateDevice(ctx, store.Device{ID: "wd-enc", OperatorID: op.ID, K: 5, SignKey: pub, MQTTHash: "x", IdentityKey: ik,
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := p.st.DB().QueryRow(`SELECT identity_key FROM devices WHERE id = 'wd-enc'`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if raw[0] != 1 || bytes.Contains(raw, ik[:]) {
		t.Fatalf("identity key stored as %x, want sealed", raw)
	}
	bare, err := store.Open(ctx, p.cfg.Database, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if _, err := bare.GetDevice(ctx, "wd-enc"); err == nil {
		t.Fatal("a store without the key-encryption key read the identity key")
	}
	if err := p.srv.Service.Res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := p.srv.Service.Res.Resolve(proxid.Compute(ik, proxid.Counter(time.Now()), 5))
	if err != nil || got.Device != "wd-enc" {
		t.Fatalf("resolve: %+v, %v", got, err)
	}
}

// The key-encryption key comes from a file of mode 0600 or from an
// environment variable; anything else fails with an error naming it.
func TestKeyEncKeySources(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, 32)
	file := filepath.Join(dir, "kek")
	os.WriteFile(file, []byte(hex.EncodeToString(key)), 0o640)
	env := map[string]string{"KEK": hex.EncodeToString(key), "SHORT": "abcd"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		name string
		k    server.KeyEncryption
		code string
	}{
		{"group-readable file", server.KeyEncryption{KeyFile: file}, "config.key_perms"},
		{"missing file", server.KeyEncryption{KeyFile: filepath.Join(dir, "nope")}, "config.key_file"},
		{"unset variable", server.KeyEncryption{KeyEnv: "UNSET"}, "config.key_file"},
		{"short key", server.KeyEncryption{KeyEnv: "SHORT"}, "config.key_file"},
		{"variable", server.KeyEncryption{KeyEnv: "KEK"}, ""},
	} {
		c := &server.Config{KeyEncryption: tc.k}
		cur, _, err := c.KeyEncKeys(getenv)
		if vend.CodeOf(err) != tc.code && !(tc.code == "" && err == nil) {
			t.Errorf("%s: %v, want code %q", tc.name, err, tc.code)
		}
		if tc.code == "" && !bytes.Equal(cur, key) {
			t.Errorf("%s: key %x", tc.name, cur)
		}
	}
	os.Chmod(file, 0o600)
	if cur, _, err := (&server.Config{KeyEncryption: server.KeyEncryption{KeyFile: file}}).KeyEncKeys(getenv); err != nil || !bytes.Equal(cur, key) {
		t.Fatalf("0600 file: %x, %v", cur, err)
	}
}

// The production example serves the phone API and the devices' broker
// listener over TLS with its certificates: a client trusting the test CA
// connects to both, and plain HTTP gets no API answer.
func TestProductionServesTLS(t *testing.T) {
	p := startProd(t)
	if !strings.HasPrefix(p.srv.HTTPURL, "https://") {
		t.Fatalf("HTTPURL %s, want https", p.srv.HTTPURL)
	}
	if code, body := p.get(t, p.https, p.srv.HTTPURL+"/healthz"); code != 200 {
		t.Fatalf("https /healthz: %d %s", code, body)
	}
	plain := "http://" + strings.TrimPrefix(p.srv.HTTPURL, "https://")
	if resp, err := http.Get(plain + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP /healthz on the TLS listener answered 200 %s", b)
		}
	}
	if _, err := http.Get(p.srv.HTTPURL + "/healthz"); err == nil {
		t.Fatal("a client without the test CA trusted the API's certificate")
	}
	if p.srv.MQTTTLS == "" {
		t.Fatal("no device TLS listener")
	}
	_, port, _ := net.SplitHostPort(p.srv.MQTTTLS)
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", port), &tls.Config{RootCAs: p.mqtt})
	if err != nil {
		t.Fatalf("TLS to the device listener %s: %v", p.srv.MQTTTLS, err)
	}
	defer conn.Close()
	chain := conn.ConnectionState().PeerCertificates
	if len(chain) == 0 || chain[0].Subject.CommonName != "mqtt" {
		t.Fatalf("device listener certificate %v, want the configured one", chain)
	}
}

// The production example keeps /metrics and the profiles off the public
// listener (404 there) and serves them, with health detail, on the admin
// listener.
func TestProductionMetricsOnlyOnAdmin(t *testing.T) {
	p := startProd(t)
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		if code, _ := p.get(t, p.https, p.srv.HTTPURL+path); code != 404 {
			t.Errorf("public %s: %d, want 404", path, code)
		}
	}
	code, body := p.get(t, http.DefaultClient, p.srv.AdminURL+"/metrics")
	if code != 200 || !strings.Contains(body, "beaconvend_ledger_imbalance_minor 0\n") {
		t.Fatalf("admin /metrics: %d %.300s", code, body)
	}
	if code, _ := p.get(t, http.DefaultClient, p.srv.AdminURL+"/debug/pprof/"); code != 200 {
		t.Fatalf("admin pprof: %d", code)
	}
	code, body = p.get(t, http.DefaultClient, p.srv.AdminURL+"/healthz")
	var h server.Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 {
		t.Fatalf("admin /healthz: %d %s", code, body)
	}
	if h.Status != "ok" || h.Development || !h.KeyEncryption || h.HTTPTLS != "listener" || h.BrokerTLS != "listener" || !h.BrokerConnected {
		t.Fatalf("admin /healthz: %+v", h)
	}
	code, body = p.get(t, p.https, p.srv.HTTPURL+"/healthz")
	if code != 200 || strings.Contains(body, "key_encryption") {
		t.Fatalf("public /healthz: %d %s, want the minimal answer", code, body)
	}
}

// The production example throttles log-in: repeated wrong passwords for
// one account lock it, and the answer is 429 with a Retry-After, over the
// real TLS listener; the right password is refused while it is locked.
func TestProductionThrottlesLogIn(t *testing.T) {
	p := startProd(t)
	ctx := context.Background()
	phone := phoneapi.New(p.srv.HTTPURL, &phoneapi.Opts{HTTPClient: p.https})
	if _, err := phone.SignUp(ctx, &phoneapi.SignUpRequest{Email: "victim@example.com", Password: "correct-horse-battery"}); err != nil {
		t.Fatal(err)
	}
	post := func(pw string) (int, string, string) {
		body := `{"email":"victim@example.com","password":"` + pw + `"}`
		resp, err := p.https.Post(p.srv.HTTPURL+"/v1/auth/login", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
	}
	limited := -1
	for i := 0; i < 20; i++ {
		code, retry, body := post("wrong-password-" + strings.Repeat("x", i))
		if code == http.StatusTooManyRequests {
			if retry == "" || (!strings.Contains(body, "auth.locked") && !strings.Contains(body, "rate.limited")) {
				t.Fatalf("429 without Retry-After or a limit code: %q %s", retry, body)
			}
			limited = i
			break
		}
		if code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d %s, want 401", i, code, body)
		}
	}
	if limited < 0 {
		t.Fatal("20 wrong passwords in a row were never throttled")
	}
	if code, _, body := post("correct-horse-battery"); code != http.StatusTooManyRequests {
		t.Fatalf("right password while locked: %d %s, want 429", code, body)
	}
}
