// Package wechattest runs scripts/paypeer-wechat, a loopback WeChat Pay
// API v3 endpoint whose signatures, notification encryption and bill
// format are decided by the npm package wechatpay-axios-plugin@0.9.6, for
// the tests of the WeChat Pay channel and of anything built on it (the
// cloud's payment machinery, the phone's end-to-end test). The peer's npm
// packages are installed with npm ci from its committed lockfile into the
// user's cache, never into the repository; the merchant's and the
// platform's keys are generated in the test.
//
// Without node or npm, Start skips the test with a loud message, or fails
// it when VEND_REQUIRE_SERVICES is set (as CI sets it), so the
// interoperability check cannot silently vanish.
package wechattest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/cloud/internal/nodepeer"
	"beaconvend/cloud/payments/wechatpay"
)

// The independent WeChat Pay implementation the peer delegates to, pinned
// by scripts/paypeer-wechat/package-lock.json.
const (
	pluginName    = "wechatpay-axios-plugin"
	pluginVersion = "0.9.6"
)

// The merchant and application the peer serves.
const (
	MchID = "1900009191"
	AppID = "wxd678efh567hg6787"
)

// peer is scripts/paypeer-wechat.
var peer = nodepeer.Peer{Name: "paypeer-wechat", SDK: pluginName + "@" + pluginVersion}

// Keys are one merchant's credentials for one test: the merchant's and
// the platform's RSA keys (generated once per process), fresh serial
// numbers and APIv3 key, and the files the channel reads (mode 0600, in a
// temporary directory of the test).
type Keys struct {
	Dir            string // the directory holding the files
	MchID, AppID   string
	MerchantSerial string // the merchant certificate's serial, sent with each request
	PlatformSerial string // the platform public key's ID (PUB_KEY_ID_…)
	APIv3Key       string // 32 characters

	Merchant, Platform *rsa.PrivateKey

	MerchantKeyFile string // the merchant's private key, PKCS#8 PEM (apiclient_key.pem)
	APIv3KeyFile    string // the APIv3 key, one line
	PlatformKeyFile string // the platform's public key, PKIX PEM (pub_key.pem)
}

var (
	keyOnce       sync.Once
	keyPair       [2]*rsa.PrivateKey // merchant, platform
	keyGenerating error
)

// GenKey returns a fresh 2048-bit RSA key.
func GenKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// PrivatePEM encodes k as a PKCS#8 "PRIVATE KEY" PEM block.
func PrivatePEM(t testing.TB, k *rsa.PrivateKey) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

// PublicPEM encodes k as a PKIX "PUBLIC KEY" PEM block.
func PublicPEM(t testing.TB, k *rsa.PublicKey) []byte {
	t.Helper()
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

// NewKeys writes a merchant's credentials into a temporary directory of
// the test.
func NewKeys(t testing.TB) *Keys {
	t.Helper()
	keyOnce.Do(func() {
		for i := range keyPair {
			if keyPair[i], keyGenerating = rsa.GenerateKey(rand.Reader, 2048); keyGenerating != nil {
				return
			}
		}
	})
	if keyGenerating != nil {
		t.Fatal(keyGenerating)
	}
	dir := t.TempDir()
	k := &Keys{
		Dir: dir, MchID: MchID, AppID: AppID,
		MerchantSerial: randHex(20), PlatformSerial: "PUB_KEY_ID_" + randHex(12), APIv3Key: randHex(16),
		Merchant: keyPair[0], Platform: keyPair[1],
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k.MerchantKeyFile = write("apiclient_key.pem", PrivatePEM(t, k.Merchant))
	k.APIv3KeyFile = write("apiv3.key", []byte(k.APIv3Key+"\n"))
	k.PlatformKeyFile = write("pub_key.pem", PublicPEM(t, &k.Platform.PublicKey))
	return k
}

// Peer is one running scripts/paypeer-wechat.
type Peer struct {
	tb   testing.TB
	URL  string // the peer's base URL (http://127.0.0.1:PORT), the channel's BaseURL
	Keys *Keys
}

// Start runs the peer for the rest of the test with fresh credentials.
// Without node or npm it skips the test loudly, or fails it when
// VEND_REQUIRE_SERVICES is set.
func Start(t testing.TB) *Peer {
	t.Helper()
	node := peer.Node(t)
	deps := peer.Modules(t, node)
	k := NewKeys(t)
	cfg, _ := json.Marshal(map[string]string{
		"mchid": k.MchID, "appid": k.AppID, "merchantSerial": k.MerchantSerial,
		"merchantPublicKey": string(PublicPEM(t, &k.Merchant.PublicKey)), "platformSerial": k.PlatformSerial,
		"platformPrivateKey": string(PrivatePEM(t, k.Platform)), "apiV3Key": k.APIv3Key,
	})
	cfgFile := filepath.Join(t.TempDir(), "peer.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, peer.Script(), deps, cfgFile)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		peer.Need(t, "starting node: %v", err)
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
		if s := stderr.String(); t.Failed() && s != "" {
			t.Logf("paypeer-wechat stderr:\n%s", s)
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		var port int
		if _, err := fmt.Sscanf(l, "LISTEN %d", &port); !ok || err != nil {
			t.Fatalf("paypeer-wechat did not start: %q\n%s", l, stderr.String())
		}
		return &Peer{tb: t, URL: fmt.Sprintf("http://127.0.0.1:%d", port), Keys: k}
	case <-time.After(30 * time.Second):
		t.Fatalf("paypeer-wechat did not start within 30 s\n%s", stderr.String())
	}
	return nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Control POSTs req as JSON to the peer's control endpoint
// /_control/<op> (see the peer's header), decodes a 200 answer into resp
// when it is not nil, and returns the HTTP status. A transport failure
// fails the test.
func (p *Peer) Control(op string, req, resp any) int {
	p.tb.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		p.tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/_control/"+op, bytes.NewReader(b))
	if err != nil {
		p.tb.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(hr)
	if err != nil {
		p.tb.Fatalf("paypeer-wechat control %s: %v", op, err)
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	if resp != nil && r.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, resp); err != nil {
			p.tb.Fatalf("paypeer-wechat control %s: %s: %v", op, body, err)
		}
	}
	return r.StatusCode
}

// mustControl is Control that fails the test unless the peer answers 200.
func (p *Peer) mustControl(op string, req, resp any) {
	p.tb.Helper()
	if code := p.Control(op, req, resp); code != http.StatusOK {
		p.tb.Fatalf("paypeer-wechat control %s %v: http %d", op, req, code)
	}
}

// Pushed is what the pay, refund-success and replay controls answer: the
// notification's ID and how the notify endpoint answered it.
type Pushed struct {
	ID            string `json:"id"`             // the notification's event ID
	Status        int    `json:"status"`         // the HTTP status our notify endpoint answered
	TransactionID string `json:"transaction_id"` // WeChat Pay's transaction ID (pay only)
}

// Pay has the payer pay the order as a scan of its code_url would; the
// peer POSTs TRANSACTION.SUCCESS to the order's notify_url before Pay
// returns. Anything but a paid order fails the test.
func (p *Peer) Pay(orderNo string) Pushed {
	p.tb.Helper()
	var r Pushed
	p.mustControl("pay", map[string]string{"out_trade_no": orderNo}, &r)
	return r
}

// PayAt is Pay with the payment dated at (for a bill of another day).
func (p *Peer) PayAt(orderNo string, at time.Time) Pushed {
	p.tb.Helper()
	var r Pushed
	p.mustControl("pay", map[string]any{"out_trade_no": orderNo, "paid_ms": at.UnixMilli()}, &r)
	return r
}

// RefundSuccess finishes a refund that is PROCESSING (the money is back
// with the payer); the peer POSTs REFUND.SUCCESS to the refund's
// notify_url, if it had one, before RefundSuccess returns.
func (p *Peer) RefundSuccess(refundNo string) Pushed {
	p.tb.Helper()
	var r Pushed
	p.mustControl("refund-success", map[string]string{"out_refund_no": refundNo}, &r)
	return r
}

// RefundSuccessAt is RefundSuccess with the refund dated at.
func (p *Peer) RefundSuccessAt(refundNo string, at time.Time) Pushed {
	p.tb.Helper()
	var r Pushed
	p.mustControl("refund-success", map[string]any{"out_refund_no": refundNo, "done_ms": at.UnixMilli()}, &r)
	return r
}

// Replay POSTs a notification the peer sent before again, byte for byte.
func (p *Peer) Replay(id string) Pushed {
	p.tb.Helper()
	var r Pushed
	p.mustControl("replay", map[string]string{"id": id}, &r)
	return r
}

// Fault makes the peer's next answer or notification faulty: tamper (the
// body changed after signing), stale (a timestamp 10 minutes old),
// wrong_key (signed by another key) or http500.
func (p *Peer) Fault(kind string) {
	p.tb.Helper()
	p.mustControl("fault", map[string]any{"kind": kind, "count": 1}, nil)
}

// SetPlatformKey makes the peer sign as the platform with pemKey from
// now on (a wrong platform key for the channel).
func (p *Peer) SetPlatformKey(pemKey []byte) {
	p.tb.Helper()
	p.mustControl("platform-key", map[string]string{"pem": string(pemKey)}, nil)
}

// InjectBill adds a discrepancy to the bills the peer serves. args holds
// kind — missing_in_ours {out_trade_no, total}, missing_in_theirs
// {out_trade_no}, amount {out_trade_no, delta}, status {out_trade_no or
// out_refund_no, status}, currency {out_trade_no, currency}, duplicate
// {out_trade_no}, wrong_day {out_trade_no}, bad_summary, bad_hash — and
// the fields it names.
func (p *Peer) InjectBill(args map[string]any) {
	p.tb.Helper()
	p.mustControl("bill", args, nil)
}

// ResetBill drops every injected bill discrepancy and pending fault.
func (p *Peer) ResetBill() {
	p.tb.Helper()
	p.mustControl("reset-bill", map[string]any{}, nil)
}

// Config is the channel's configuration against the peer; WeChat Pay
// POSTs payment notifications to notifyURL.
func (p *Peer) Config(notifyURL string) wechatpay.Config {
	k := p.Keys
	return wechatpay.Config{
		MchID: k.MchID, AppID: k.AppID, MerchantSerial: k.MerchantSerial,
		MerchantKeyFile: k.MerchantKeyFile, APIv3KeyFile: k.APIv3KeyFile,
		PlatformKeyFile: k.PlatformKeyFile, PlatformSerial: k.PlatformSerial,
		BaseURL: p.URL, NotifyURL: notifyURL,
		HTTPClient: &http.Client{Timeout: 15 * time.Second},
	}
}

// Params are the non-secret settings of a cloud configuration's
// payments.channels entry for wechatpay against this peer (with base_url:
// Peer.URL).
func (p *Peer) Params() map[string]string {
	return map[string]string{"mch_id": p.Keys.MchID, "app_id": p.Keys.AppID,
		"merchant_serial": p.Keys.MerchantSerial, "platform_serial": p.Keys.PlatformSerial}
}

// Credentials are the credentials of that entry: file: references to
// the key files (absolute paths, mode 0600).
func (p *Peer) Credentials() map[string]string {
	return map[string]string{"merchant_key": "file:" + p.Keys.MerchantKeyFile,
		"api_v3_key": "file:" + p.Keys.APIv3KeyFile, "platform_key": "file:" + p.Keys.PlatformKeyFile}
}
