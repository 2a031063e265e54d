// Package alipaytest runs scripts/paypeer-alipay, a loopback Alipay
// gateway whose signatures and formats are decided by Alipay's own Node SDK
// (alipay-sdk@4.14.0), for the tests of the Alipay channel and of anything
// built on it. The peer's npm packages are installed with npm ci from its
// committed lockfile into the user's cache, never into the repository.
package alipaytest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"beaconvend/cloud/internal/nodepeer"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/alipay"
)

// peerSDK names the third-party code the peer delegates to.
const peerSDK = "alipay-sdk@4.14.0"

// peer is scripts/paypeer-alipay.
var peer = nodepeer.Peer{Name: "paypeer-alipay", SDK: peerSDK}

// Keys are the PEM files of one test's keys, generated in the test.
type Keys struct {
	AppPrivateKeyFile, AppPublicKeyFile       string // the application's key pair (the cloud signs with it)
	AlipayPrivateKeyFile, AlipayPublicKeyFile string // "Alipay's" key pair (the peer signs with it)
	RogueKeyFile, RogueCertFile               string // a key and a self-signed certificate that only pretend to be Alipay's
}

var (
	keyOnce sync.Once
	keyPEMs [6][]byte // app key, app public key, Alipay key, Alipay public key, rogue key, rogue certificate
)

// NewKeys writes the test's keys (generated once per process) into a
// temporary directory.
func NewKeys(t testing.TB) Keys {
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
	kf := Keys{filepath.Join(dir, "app.key"), filepath.Join(dir, "app.pub"), filepath.Join(dir, "alipay.key"), filepath.Join(dir, "alipay.pub"),
		filepath.Join(dir, "rogue.key"), filepath.Join(dir, "rogue.crt")}
	for i, p := range []string{kf.AppPrivateKeyFile, kf.AppPublicKeyFile, kf.AlipayPrivateKeyFile, kf.AlipayPublicKeyFile, kf.RogueKeyFile, kf.RogueCertFile} {
		if err := os.WriteFile(p, keyPEMs[i], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return kf
}

// AppID is the application the peer serves.
const AppID = "2021000000000001"

// Peer is one running scripts/paypeer-alipay.
type Peer struct {
	tb   testing.TB
	URL  string // the peer's base URL; the gateway is URL + "/gateway.do"
	Keys Keys
}

// Start runs the peer for the rest of the test, with fresh keys. Without
// node it skips the test loudly, or fails it when VEND_REQUIRE_SERVICES
// is set.
func Start(t testing.TB) *Peer {
	t.Helper()
	node := peer.Node(t)
	mods := peer.Modules(t, node)
	kf := NewKeys(t)
	cfgFile := filepath.Join(t.TempDir(), "peer.json")
	cfg, _ := json.Marshal(map[string]string{"appId": AppID, "pid": "2088102000000000", "appPublicKeyFile": kf.AppPublicKeyFile, "alipayPrivateKeyFile": kf.AlipayPrivateKeyFile,
		"rogueKeyFile": kf.RogueKeyFile, "rogueCertFile": kf.RogueCertFile})
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, peer.Script(), cfgFile)
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
		return &Peer{tb: t, URL: hello.URL, Keys: kf}
	case <-time.After(30 * time.Second):
		t.Fatalf("peer did not start within 30 s\n%s", stderr.String())
	}
	return nil
}

// Control sends a control operation (see the peer's header) and decodes
// its answer into out.
func (p *Peer) Control(op string, args map[string]any, out any) error {
	p.tb.Helper()
	body := map[string]any{"op": op}
	for k, v := range args {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	res, err := http.Post(p.URL+"/control", "application/json", bytes.NewReader(b))
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

func (p *Peer) MustControl(op string, args map[string]any, out any) {
	p.tb.Helper()
	if err := p.Control(op, args, out); err != nil {
		p.tb.Fatal(err)
	}
}

// Order is the peer's record of an order; amounts are fen.
type Order struct {
	Status        string `json:"status"` // WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_CLOSED
	Scanned       bool   `json:"scanned"`
	Total         int64  `json:"total"`
	Refunded      int64  `json:"refunded"`
	TradeNo       string `json:"trade_no"`
	TimeExpire    string `json:"time_expire"`
	NotifyURL     string `json:"notify_url"`
	Notifications int    `json:"notifications"`
}

func (p *Peer) Order(no string) *Order {
	p.tb.Helper()
	var o *Order
	p.MustControl("order", map[string]any{"out_trade_no": no}, &o)
	return o
}

// NotifyResult is what the pay, replay and tamper operations report: how
// the cloud answered the notification.
type NotifyResult struct {
	Notify struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	} `json:"notify"`
	TradeNo string `json:"trade_no"`
}

// Config returns a channel configuration that talks to the peer; Alipay
// POSTs notifications to notifyURL.
func (p *Peer) Config(notifyURL string) alipay.Config {
	return alipay.Config{
		AppID:               AppID,
		AppPrivateKeyFile:   p.Keys.AppPrivateKeyFile,
		AlipayPublicKeyFile: p.Keys.AlipayPublicKeyFile,
		GatewayURL:          p.URL + "/gateway.do",
		NotifyURL:           notifyURL,
	}
}

// Pay has the buyer scan and pay the order; the peer POSTs the payment
// notification to the order's notify_url before Pay returns.
func (p *Peer) Pay(orderNo string) (NotifyResult, error) {
	var res NotifyResult
	err := p.Control("pay", map[string]any{"out_trade_no": orderNo}, &res)
	return res, err
}

// InjectBill makes the bill of day carry a discrepancy: kind is
// missing_in_ours, missing_in_theirs, amount, status, duplicate or summary.
func (p *Peer) InjectBill(day payments.Day, kind, orderNo string) error {
	return p.Control("bill_inject", map[string]any{"day": day.String(), "kind": kind, "out_trade_no": orderNo}, nil)
}

// SetClock fixes the peer's time (payments, refunds and bills are dated
// by it); the zero time returns it to real time.
func (p *Peer) SetClock(at time.Time) error {
	var v any
	if !at.IsZero() {
		v = at.Format(time.RFC3339)
	}
	return p.Control("clock", map[string]any{"at": v}, nil)
}
