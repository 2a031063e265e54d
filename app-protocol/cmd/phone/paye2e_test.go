package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Environment of TestPayChannelsEndToEnd. The test command sets them after
// starting the providers' loopback peers; without VEND_PAY_E2E=1 the test
// says what it lacks and skips.
const (
	// envPayE2E=1 runs the test.
	envPayE2E = "VEND_PAY_E2E"
	// envPayConfig is a cloud configuration file whose payments section
	// enables wechatpay and alipay against the peers (base_url,
	// params, credentials with absolute paths, limits) in CNY, with
	// public_url: http://{http}. The rig copies it into its own
	// directory with {http} replaced by a free loopback address and runs
	// `cloud serve -dev -config COPY -data DIR -http ADDR -json`, so the
	// file leaves data_dir, database and the HTTP listen address to the
	// rig (any other listener on port 0); -dev keeps device keys in clear
	// for the rig's `cloud device add -data DIR`.
	envPayConfig = "VEND_PAY_CLOUD_CONFIG"
	// envPeer + channel (VEND_PAY_PEER_WECHATPAY, VEND_PAY_PEER_ALIPAY)
	// is the base URL (http://127.0.0.1:PORT) of the channel's loopback
	// peer (scripts/paypeer-wechat, scripts/paypeer-alipay), the one the
	// configuration's base_url names. The test drives each through its
	// own control endpoint, as a payer would act: WeChat Pay's POST
	// /_control/pay {out_trade_no} and /_control/refund-success
	// {out_refund_no} (its refunds stay PROCESSING until then), Alipay's
	// POST /control {op: "pay", out_trade_no}. Each then POSTs its
	// signed notification to the cloud's public_url.
	envPeer = "VEND_PAY_PEER_"
)

// orderLine finds the order number the phone prints once the order exists.
var orderLine = regexp.MustCompile(`(?m)^order (\S+): .* pay before `)

// TestPayChannelsEndToEnd: a phone tops up through WeChat Pay and through
// Alipay against the providers' loopback peers (the peer pays the order as
// a payer would; the cloud learns it from the notification or its query),
// buys water, and withdraws the rest to the original channels: oldest
// paid order first, each refund with the provider's refund ID; the
// payments then show what was refunded of each.
func TestPayChannelsEndToEnd(t *testing.T) {
	if os.Getenv(envPayE2E) != "1" {
		t.Skipf("set %s=1, %s, %sWECHATPAY and %sALIPAY (the test command does, with the peers running)", envPayE2E, envPayConfig, envPeer, envPeer)
	}
	cfg := os.Getenv(envPayConfig)
	if cfg == "" {
		t.Fatalf("%s=1 without %s", envPayE2E, envPayConfig)
	}
	for _, ch := range []string{"WECHATPAY", "ALIPAY"} {
		if os.Getenv(envPeer+ch) == "" {
			t.Fatalf("%s=1 without %s%s", envPayE2E, envPeer, ch)
		}
	}
	r := newRigWith(t, rigOpts{broker: "embedded", cloudConfig: cfg, currency: "CNY"})
	user := []string{"-email", "payer@test.example", "-password", "payer-password", "-pay-timeout", "60s"}
	with := func(args ...string) []string { return append(append([]string{}, user...), args...) }
	if _, out, err := r.phone(t, nil, with("-signup", "-wallet")...); err != nil {
		t.Fatalf("sign-up: %v\n%s", err, out)
	}

	// Top up through each channel: the phone prints the code and waits;
	// the peer pays; the phone sees the order paid and the wallet credited.
	orders := map[string]string{}
	wallet := int64(0)
	for _, tc := range []struct {
		source string
		amount string
		minor  int64
	}{{"wechatpay", "20.00", 2000}, {"alipay", "10.00", 1000}} {
		t.Run("topup "+tc.source, func(t *testing.T) {
			type result struct {
				m   *Main
				out *syncBuffer
				err error
			}
			started := make(chan *syncBuffer, 1)
			done := make(chan result, 1)
			go func() {
				m, out, err := r.phoneWith(t, nil, started, with("-topup", tc.amount, "-topup-source", tc.source, "-wallet")...)
				done <- result{m, out, err}
			}()
			out := <-started
			out.waitMatch(t, orderLine, 30*time.Second)
			order := orderLine.FindStringSubmatch(out.String())[1]
			codeURL := ""
			if m := regexp.MustCompile(`(?m)^or open: (\S+)$`).FindStringSubmatch(out.String()); m != nil {
				codeURL = m[1]
			}
			if codeURL == "" {
				t.Errorf("no code_url printed for %s:\n%s", tc.source, out)
			}
			payAtPeer(t, tc.source, order)
			res := <-done
			if res.err != nil {
				t.Fatalf("%v\n%s", res.err, res.out)
			}
			p := res.m.Payment
			if p.Order != order || p.State != PaymentPaid || p.Source != tc.source || p.ProviderTxID == "" || p.Amount.Minor != tc.minor || p.Test {
				t.Errorf("payment %+v: want order %s paid through %s with a provider transaction ID", p, order, tc.source)
			}
			wallet += tc.minor
			if got := res.m.WalletAfter.Available.Minor; got != wallet {
				t.Errorf("wallet %d after the top-up, want %d", got, wallet)
			}
			if q := qrText(res.out.String()); q == "" || decodeQR(t, qrPixels(t, q), 4) != codeURL {
				t.Errorf("the printed QR code does not decode to %q", codeURL)
			}
			orders[tc.source] = order
		})
	}
	if t.Failed() {
		return
	}

	var captured int64
	t.Run("buy water", func(t *testing.T) {
		m, out, err := r.phone(t, nil, with("-device", "t-water", "-cap-amount", "2.00", "-stop-after-units", "1000", "-json-receipt")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		rc := checkReceipt(t, m)
		if rc.Currency != "CNY" || rc.Captured.Minor <= 0 {
			t.Errorf("receipt %+v: want water paid in CNY from the wallet", rc)
		}
		captured = rc.Captured.Minor
	})
	if t.Failed() {
		return
	}

	// Withdraw the rest: the oldest paid order (WeChat Pay, 20.00) is
	// refunded first and in full, the rest comes from the Alipay order.
	rest := wallet - captured
	t.Run("withdraw all", func(t *testing.T) {
		m, out, err := r.phone(t, nil, with("-withdraw", "all")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		wd := m.Withdrawal
		if wd.Amount.Minor != rest || (wd.State != "succeeded" && wd.State != "pending") {
			t.Fatalf("withdrawal %+v: want %d withdrawn", wd, rest)
		}
		want := map[string]int64{orders["wechatpay"]: 2000, orders["alipay"]: rest - 2000}
		var sum int64
		for _, rf := range wd.Refunds {
			sum += rf.Amount.Minor
			if want[rf.Order] != rf.Amount.Minor || rf.Source != map[string]string{orders["wechatpay"]: "wechatpay", orders["alipay"]: "alipay"}[rf.Order] {
				t.Errorf("refund %+v: want %d back through the order's own channel", rf, want[rf.Order])
			}
			if rf.State == "succeeded" && rf.ProviderRefundID == "" {
				t.Errorf("refund %+v succeeded without the provider's refund ID", rf)
			}
		}
		if sum != rest || len(wd.Refunds) != 2 {
			t.Errorf("refunds %+v add up to %d, want %d in two refunds", wd.Refunds, sum, rest)
		}
		// WeChat Pay's refunds are PROCESSING until the money is back
		// with the payer: the peer finishes them and notifies the cloud.
		for _, rf := range wd.Refunds {
			if rf.Source == "wechatpay" && rf.State == RefundPending {
				peerControl(t, "wechatpay", "/_control/refund-success", map[string]any{"out_refund_no": rf.RefundNo})
			}
		}
		w, err := m.wallet(context.Background())
		if err != nil || w.Available.Minor != 0 {
			t.Errorf("wallet after withdrawing all: %+v %v", w, err)
		}
	})

	// The payments show what was refunded of each, once the providers
	// confirmed the refunds.
	t.Run("payments", func(t *testing.T) {
		want := map[string]int64{orders["wechatpay"]: 2000, orders["alipay"]: rest - 2000}
		deadline := time.Now().Add(60 * time.Second)
		for {
			m, out, err := r.phone(t, nil, with("-payments")...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			got := map[string]int64{}
			for _, p := range m.Payments {
				got[p.Order] = p.Refunded.Minor
				if p.ProviderTxID == "" || !strings.Contains(out.String(), "provider tx  "+p.ProviderTxID) {
					t.Fatalf("payment %+v: receipt without the provider transaction ID\n%s", p, out)
				}
			}
			if fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("refunded per order %v, want %v\n%s", got, want, out)
			}
			time.Sleep(time.Second)
		}
	})
}

// payAtPeer has the channel's peer pay order as a payer scanning its
// code would.
func payAtPeer(t *testing.T, source, order string) {
	t.Helper()
	switch source {
	case "wechatpay":
		peerControl(t, source, "/_control/pay", map[string]any{"out_trade_no": order})
	case "alipay":
		peerControl(t, source, "/control", map[string]any{"op": "pay", "out_trade_no": order})
	default:
		t.Fatalf("no peer for %s", source)
	}
}

// peerControl POSTs body as JSON to path on the source's peer; anything
// but 2xx fails the test.
func peerControl(t *testing.T, source, path string, body map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := strings.TrimRight(os.Getenv(envPeer+strings.ToUpper(source)), "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s peer %s %s: %v", source, path, b, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s peer %s %s: %s %s", source, path, b, resp.Status, out)
	}
}
