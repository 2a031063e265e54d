package wechatpay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/wechatpay"
)

// The independent WeChat Pay implementation the channel is checked
// against: scripts/paypeer-wechat, whose protocol and cryptography come
// from this npm package (pinned by the committed package-lock.json).
const (
	pluginName    = "wechatpay-axios-plugin"
	pluginVersion = "0.9.6"
)

// needService skips the test loudly, or fails it when
// VEND_REQUIRE_SERVICES is set (as CI sets it).
func needService(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("VEND_REQUIRE_SERVICES") != "" {
		t.Fatalf("VEND_REQUIRE_SERVICES is set and %s", msg)
	}
	t.Skipf("\n!!!!!!!!\n!!! SKIPPED: %s\n!!! WeChat Pay interoperability with %s@%s was NOT checked.\n!!! Set VEND_REQUIRE_SERVICES=1 to make this a failure.\n!!!!!!!!", msg, pluginName, pluginVersion)
}

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
}

var (
	peerOnce sync.Once
	peerNode string
	peerDeps string
	peerErr  string
)

// peerInstall finds node with scripts/node.sh and installs the peer's
// dependencies with npm ci from the committed lockfile into the user's
// cache (not the repository), once per lockfile.
func peerInstall(t testing.TB) (node, deps, script string) {
	t.Helper()
	root := repoRoot(t)
	src := filepath.Join(root, "scripts", "paypeer-wechat")
	peerOnce.Do(func() {
		out, err := exec.Command(filepath.Join(root, "scripts", "node.sh")).Output()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		last := lines[len(lines)-1]
		if err != nil || !strings.HasPrefix(last, "VEND_NODE=") {
			peerErr = fmt.Sprintf("scripts/node.sh found no node: %v", err)
			return
		}
		peerNode = strings.TrimPrefix(last, "VEND_NODE=")
		npm := filepath.Join(filepath.Dir(peerNode), "npm")
		if _, err := os.Stat(npm); err != nil {
			if npm, err = exec.LookPath("npm"); err != nil {
				peerErr = "npm is not installed next to node nor on PATH"
				return
			}
		}
		lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
		if err != nil {
			peerErr = fmt.Sprintf("the peer's lockfile: %v", err)
			return
		}
		pkg, err := os.ReadFile(filepath.Join(src, "package.json"))
		if err != nil {
			peerErr = fmt.Sprintf("the peer's package.json: %v", err)
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			peerErr = fmt.Sprintf("no user cache dir: %v", err)
			return
		}
		sum := sha256.Sum256(append(append([]byte{}, pkg...), lock...))
		peerDeps = filepath.Join(cache, "beaconvend", "paypeer-wechat-"+hex.EncodeToString(sum[:6]))
		if installed(filepath.Join(peerDeps, "node_modules", pluginName, "package.json")) == pluginVersion {
			return
		}
		if err := os.MkdirAll(peerDeps, 0o755); err != nil {
			peerErr = err.Error()
			return
		}
		for name, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
			if err := os.WriteFile(filepath.Join(peerDeps, name), b, 0o644); err != nil {
				peerErr = err.Error()
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = peerDeps
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(peerNode)+string(os.PathListSeparator)+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil || installed(filepath.Join(peerDeps, "node_modules", pluginName, "package.json")) != pluginVersion {
			peerErr = fmt.Sprintf("npm ci in %s failed: %v\n%s", peerDeps, err, out)
		}
	})
	if peerErr != "" {
		needService(t, "%s", peerErr)
	}
	return peerNode, peerDeps, filepath.Join(src, "peer.js")
}

func installed(pkgJSON string) string {
	b, err := os.ReadFile(pkgJSON)
	if err != nil {
		return ""
	}
	var p struct{ Version string }
	_ = json.Unmarshal(b, &p)
	return p.Version
}

// keys are one merchant's test credentials, generated per test.
type keys struct {
	dir                         string
	mchid, appid                string
	merchantSerial              string
	merchant, platform          *rsa.PrivateKey
	platformSerial              string
	apiV3Key                    string
	merchantKeyFile, v3File     string
	platformPubFile, configFile string
	merchantPubPEM, platformPEM string
}

func genKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func privPEM(t testing.TB, k *rsa.PrivateKey) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

func pubPEM(t testing.TB, k *rsa.PublicKey) []byte {
	b, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: b})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

func newKeys(t testing.TB) *keys {
	t.Helper()
	dir := t.TempDir()
	k := &keys{
		dir: dir, mchid: "1900009191", appid: "wxd678efh567hg6787",
		merchantSerial: randHex(20), merchant: genKey(t), platform: genKey(t),
		platformSerial: "PUB_KEY_ID_" + randHex(12),
		apiV3Key:       randHex(16),
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k.merchantKeyFile = write("apiclient_key.pem", privPEM(t, k.merchant))
	k.v3File = write("apiv3.key", []byte(k.apiV3Key+"\n"))
	k.platformPubFile = write("pub_key.pem", pubPEM(t, &k.platform.PublicKey))
	k.merchantPubPEM = string(pubPEM(t, &k.merchant.PublicKey))
	k.platformPEM = string(privPEM(t, k.platform))
	cfg, _ := json.Marshal(map[string]string{
		"mchid": k.mchid, "appid": k.appid, "merchantSerial": k.merchantSerial,
		"merchantPublicKey": k.merchantPubPEM, "platformSerial": k.platformSerial,
		"platformPrivateKey": k.platformPEM, "apiV3Key": k.apiV3Key,
	})
	k.configFile = write("peer.json", cfg)
	return k
}

// peer is a running paypeer-wechat.
type peer struct {
	t    testing.TB
	base string
	keys *keys
}

func startPeer(t testing.TB) *peer {
	t.Helper()
	node, deps, script := peerInstall(t)
	k := newKeys(t)
	cmd := exec.Command(node, script, deps, k.configFile)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	var mu sync.Mutex
	cmd.Stderr = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return stderr.Write(p) })
	if err := cmd.Start(); err != nil {
		needService(t, "starting node: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("peer stderr:\n%s", stderr.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-lines:
		var port int
		if _, err := fmt.Sscanf(l, "LISTEN %d", &port); err != nil {
			t.Fatalf("peer said %q", l)
		}
		return &peer{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), keys: k}
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("peer did not start:\n%s", stderr.String())
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// control calls a control endpoint of the peer and decodes its answer.
func (p *peer) control(path string, req any, resp any) int {
	p.t.Helper()
	b, _ := json.Marshal(req)
	r, err := http.Post(p.base+"/_control/"+path, "application/json", bytes.NewReader(b))
	if err != nil {
		p.t.Fatalf("control %s: %v", path, err)
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	if resp != nil && r.StatusCode == 200 {
		if err := json.Unmarshal(body, resp); err != nil {
			p.t.Fatalf("control %s: %s: %v", path, body, err)
		}
	}
	return r.StatusCode
}

// pushed is the answer of the pay, refund-success and replay controls.
type pushed struct {
	ID            string `json:"id"`
	Status        int    `json:"status"` // what our notify endpoint answered
	TransactionID string `json:"transaction_id"`
}

func (p *peer) pay(orderNo string) pushed {
	p.t.Helper()
	var r pushed
	if code := p.control("pay", map[string]string{"out_trade_no": orderNo}, &r); code != 200 {
		p.t.Fatalf("control pay %s: http %d", orderNo, code)
	}
	return r
}

func (p *peer) fault(kind string) {
	p.t.Helper()
	if code := p.control("fault", map[string]any{"kind": kind, "count": 1}, nil); code != 200 {
		p.t.Fatalf("control fault: http %d", code)
	}
}

// config is the channel's configuration for this peer.
func (p *peer) config(notifyURL string) wechatpay.Config {
	k := p.keys
	return wechatpay.Config{
		MchID: k.mchid, AppID: k.appid, MerchantSerial: k.merchantSerial,
		MerchantKeyFile: k.merchantKeyFile, APIv3KeyFile: k.v3File,
		PlatformKeyFile: k.platformPubFile, PlatformSerial: k.platformSerial,
		BaseURL: p.base, NotifyURL: notifyURL,
		HTTPClient: &http.Client{Timeout: 15 * time.Second},
	}
}

// notified is what our notify endpoint made of one notification.
type notified struct {
	n   payments.Notification
	err error
}

// harness is a channel against a peer, with a notify endpoint that runs
// ParseNotification and AckNotification as the cloud does.
type harness struct {
	*peer
	ch       payments.Channel
	notifies chan notified
	notify   string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	p := startPeer(t)
	h := &harness{peer: p, notifies: make(chan notified, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := h.ch.ParseNotification(r.Context(), r)
		h.notifies <- notified{n, err}
		h.ch.AckNotification(w, err)
	}))
	t.Cleanup(srv.Close)
	h.notify = srv.URL + "/v1/channels/wechatpay/notify"
	ch, err := wechatpay.New(p.config(h.notify))
	if err != nil {
		t.Fatal(err)
	}
	h.ch = ch
	return h
}

func (h *harness) next() notified {
	h.t.Helper()
	select {
	case n := <-h.notifies:
		return n
	case <-time.After(10 * time.Second):
		h.t.Fatal("no notification reached the notify endpoint")
	}
	return notified{}
}

func (h *harness) create(amount int64) string {
	h.t.Helper()
	no := payments.NewOrderNo("T")
	if _, err := h.ch.Create(context.Background(), order(no, amount)); err != nil {
		h.t.Fatalf("Create(%s) = %v", no, err)
	}
	return no
}

func order(no string, amount int64) payments.Order {
	return payments.Order{No: no, Amount: cny(amount), Description: "beaconvend wallet top-up", ExpiresAt: time.Now().Add(15 * time.Minute)}
}
