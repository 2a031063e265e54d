package alipay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/alipay"
)

// The peer this package is checked against: scripts/paypeer-alipay, whose
// signatures and formats are those of Alipay's own Node SDK.
const peerSDK = "alipay-sdk@4.14.0"

// needService skips the test with a loud message, or fails it when
// VEND_REQUIRE_SERVICES is set (as CI sets it), so that the interop check
// cannot silently vanish.
func needService(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("VEND_REQUIRE_SERVICES") != "" {
		t.Fatalf("VEND_REQUIRE_SERVICES is set and %s", msg)
	}
	t.Skipf("\n!!!!!!!!\n!!! SKIPPED: %s\n!!! The Alipay channel was NOT checked against %s.\n!!! Set VEND_REQUIRE_SERVICES=1 to make this a failure.\n!!!!!!!!", msg, peerSDK)
}

func peerDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "paypeer-alipay")
}

var (
	npmOnce sync.Once
	npmDir  string
	npmErr  error
)

// npmModules installs the peer's locked dependencies with npm ci into the
// user's cache (never into the repository), once per lockfile.
func npmModules(t *testing.T, node string) string {
	t.Helper()
	npmOnce.Do(func() {
		src := peerDir(t)
		lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
		if err != nil {
			npmErr = err
			return
		}
		pkg, err := os.ReadFile(filepath.Join(src, "package.json"))
		if err != nil {
			npmErr = err
			return
		}
		sum := sha256.Sum256(append(append([]byte{}, pkg...), lock...))
		cache, err := os.UserCacheDir()
		if err != nil {
			npmErr = err
			return
		}
		dir := filepath.Join(cache, "beaconvend", "paypeer-alipay-"+hex.EncodeToString(sum[:6]))
		marker := filepath.Join(dir, "node_modules", ".npm-ci-done")
		if _, err := os.Stat(marker); err == nil {
			npmDir = dir
			return
		}
		npm := filepath.Join(filepath.Dir(node), "npm")
		if _, err := os.Stat(npm); err != nil {
			if npm, err = exec.LookPath("npm"); err != nil {
				npmErr = fmt.Errorf("npm is not on PATH")
				return
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			npmErr = err
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			npmErr = err
			return
		}
		for name, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				npmErr = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			npmErr = fmt.Errorf("npm ci: %v\n%s", err, out)
			return
		}
		npmErr = os.WriteFile(marker, nil, 0o644)
		npmDir = dir
	})
	if npmErr != nil {
		needService(t, "the peer's npm packages could not be installed: %v", npmErr)
	}
	return npmDir
}

// keyFiles are the PEM files of one test's keys, generated in the test.
type keyFiles struct {
	appPriv, appPub, aliPriv, aliPub, roguePriv, rogueCert string
}

var (
	keyOnce sync.Once
	keyPEMs [6][]byte // app key, app public key, Alipay key, Alipay public key, rogue key, rogue certificate
)

func testKeys(t *testing.T) keyFiles {
	t.Helper()
	keyOnce.Do(func() {
		for i := 0; i < 2; i++ {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			priv, _ := x509.MarshalPKCS8PrivateKey(k)
			pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
			keyPEMs[2*i] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})
			keyPEMs[2*i+1] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
		}
		// A key with a self-signed certificate that claims to be Alipay's.
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "Ant Financial Certification Authority Class 2 R1"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), SignatureAlgorithm: x509.SHA256WithRSA}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			panic(err)
		}
		priv, _ := x509.MarshalPKCS8PrivateKey(k)
		keyPEMs[4] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})
		keyPEMs[5] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	})
	dir := t.TempDir()
	kf := keyFiles{filepath.Join(dir, "app.key"), filepath.Join(dir, "app.pub"), filepath.Join(dir, "alipay.key"), filepath.Join(dir, "alipay.pub"),
		filepath.Join(dir, "rogue.key"), filepath.Join(dir, "rogue.crt")}
	for i, p := range []string{kf.appPriv, kf.appPub, kf.aliPriv, kf.aliPub, kf.roguePriv, kf.rogueCert} {
		if err := os.WriteFile(p, keyPEMs[i], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return kf
}

const appID = "2021000000000001"

// peer is one running scripts/paypeer-alipay.
type peer struct {
	t    *testing.T
	url  string
	keys keyFiles
}

func startPeer(t *testing.T) *peer {
	t.Helper()
	node := os.Getenv("VEND_NODE")
	if node == "" {
		var err error
		if node, err = exec.LookPath("node"); err != nil {
			needService(t, "node is not on PATH (Node 18+; scripts/node.sh installs it)")
		}
	}
	mods := npmModules(t, node)
	kf := testKeys(t)
	cfgFile := filepath.Join(t.TempDir(), "peer.json")
	cfg, _ := json.Marshal(map[string]string{"appId": appID, "pid": "2088102000000000", "appPublicKeyFile": kf.appPub, "alipayPrivateKeyFile": kf.aliPriv,
		"rogueKeyFile": kf.roguePriv, "rogueCertFile": kf.rogueCert})
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join(peerDir(t), "peer.js"), cfgFile)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(mods, "node_modules"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start peer: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if s := stderr.String(); s != "" {
			t.Logf("peer stderr:\n%s", s)
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		var hello struct{ URL string }
		if !ok || json.Unmarshal([]byte(l), &hello) != nil || hello.URL == "" {
			t.Fatalf("peer did not start: %q\n%s", l, stderr.String())
		}
		return &peer{t: t, url: hello.URL, keys: kf}
	case <-time.After(30 * time.Second):
		t.Fatalf("peer did not start within 30 s\n%s", stderr.String())
	}
	return nil
}

// control sends a control operation and decodes its answer into out.
func (p *peer) control(op string, args map[string]any, out any) error {
	p.t.Helper()
	body := map[string]any{"op": op}
	for k, v := range args {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	res, err := http.Post(p.url+"/control", "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		return fmt.Errorf("peer control %s: %d %s", op, res.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (p *peer) mustControl(op string, args map[string]any, out any) {
	p.t.Helper()
	if err := p.control(op, args, out); err != nil {
		p.t.Fatal(err)
	}
}

type peerOrder struct {
	Status        string `json:"status"`
	Scanned       bool   `json:"scanned"`
	Total         int64  `json:"total"`
	Refunded      int64  `json:"refunded"`
	TradeNo       string `json:"trade_no"`
	TimeExpire    string `json:"time_expire"`
	NotifyURL     string `json:"notify_url"`
	Notifications int    `json:"notifications"`
}

func (p *peer) order(no string) *peerOrder {
	p.t.Helper()
	var o *peerOrder
	p.mustControl("order", map[string]any{"out_trade_no": no}, &o)
	return o
}

type notifyResult struct {
	Notify struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	} `json:"notify"`
	TradeNo string `json:"trade_no"`
}

// receiver is the cloud's notification endpoint: it runs the channel's
// ParseNotification and AckNotification and keeps what they decided.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []payments.Notification
	err []error
	ch  payments.Channel
	new chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{new: make(chan struct{}, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n, err := r.ch.ParseNotification(req.Context(), req)
		r.mu.Lock()
		if err != nil {
			r.err = append(r.err, err)
		} else {
			r.got = append(r.got, n)
		}
		r.mu.Unlock()
		r.ch.AckNotification(w, err)
		r.new <- struct{}{}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// wait waits for n notifications in all (accepted or refused).
func (r *receiver) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		have := len(r.got) + len(r.err)
		r.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-r.new:
		case <-deadline:
			t.Fatalf("%d notifications arrived, want %d", have, n)
		}
	}
}

func (r *receiver) snapshot() ([]payments.Notification, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]payments.Notification(nil), r.got...), append([]error(nil), r.err...)
}

// rig is a channel wired to a fresh peer and a notification receiver.
type rig struct {
	p  *peer
	ch payments.Channel
	rx *receiver
}

func newRig(t *testing.T) *rig {
	t.Helper()
	p := startPeer(t)
	rx := newReceiver(t)
	ch, err := alipay.New(alipay.Config{
		AppID:               appID,
		AppPrivateKeyFile:   p.keys.appPriv,
		AlipayPublicKeyFile: p.keys.aliPub,
		GatewayURL:          p.url + "/gateway.do",
		NotifyURL:           rx.srv.URL + "/v1/channels/alipay/notify",
	})
	if err != nil {
		t.Fatal(err)
	}
	rx.ch = ch
	return &rig{p: p, ch: ch, rx: rx}
}

func cny(minor int64) vend.Amount { return vend.Amount{Minor: minor, Currency: "CNY"} }

func (r *rig) create(t *testing.T, minor int64) string {
	t.Helper()
	no := payments.NewOrderNo("T")
	a, err := r.ch.Create(context.Background(), payments.Order{No: no, Amount: cny(minor), Description: "beaconvend wallet top-up", ExpiresAt: time.Now().Add(15 * time.Minute)})
	if err != nil {
		t.Fatalf("Create(%s) = %v", no, err)
	}
	if !strings.HasPrefix(a.CodeURL, "https://qr.alipay.com/") {
		t.Fatalf("Create(%s) code_url = %q", no, a.CodeURL)
	}
	return no
}

// pay has the buyer pay the order and waits for the cloud to have
// handled the notification.
func (r *rig) pay(t *testing.T, no string) notifyResult {
	t.Helper()
	got, errs := r.rx.snapshot()
	var res notifyResult
	r.p.mustControl("pay", map[string]any{"out_trade_no": no}, &res)
	r.rx.wait(t, len(got)+len(errs)+1)
	return res
}

// testKeysOther writes an application private key that is not the one
// the peer knows.
func testKeysOther(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := x509.MarshalPKCS8PrivateKey(k)
	p := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newRequest(method, url, body string) (*http.Request, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req, err
}
