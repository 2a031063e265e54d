package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/paytest"
	"beaconvend/cloud/server"
)

func init() {
	// A channel for these tests: its constructor wants a "secret"
	// credential, as a real provider wants its keys.
	server.RegisterChannel("testpay", func(e server.ChannelEnv) (payments.Channel, error) {
		if len(e.Secrets["secret"]) == 0 || e.Files["secret"] == "" || !filepath.IsAbs(e.Files["secret"]) ||
			e.NotifyURL != "https://cloud.example/v1/channels/testpay/notify" || e.Params["mch_id"] != "1900000001" {
			return nil, os.ErrInvalid
		}
		return &paytest.Channel{ID: e.Name, Secret: e.Secrets["secret"]}, nil
	})
}

func TestChannelConfig(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.key")
	os.WriteFile(secret, []byte("s3cret"), 0o600)
	open := filepath.Join(dir, "open.key")
	os.WriteFile(open, []byte("s3cret"), 0o644)
	base := `
development: true
payments:
  public_url: https://cloud.example
  channels:
    - sandbox_card
    - name: testpay
      priority: 1
      base_url: http://127.0.0.1:9
      params: {mch_id: "1900000001"}
      credentials: {secret: file:secret.key}
      limits: {min: "0.01", max: "500.00", per_user_day: "2000.00", per_operator_day: "50000.00"}
`
	c, err := server.Parse(strings.NewReader(base), dir)
	if err != nil {
		t.Fatal(err)
	}
	chans, err := c.Channels()
	if err != nil || len(chans) != 2 {
		t.Fatalf("Channels = %v, %v", chans, err)
	}
	var tp *payments.Guarded
	for _, g := range chans {
		if g.Name() == "testpay" {
			tp = g
		}
	}
	if tp == nil || tp.Priority != 1 || tp.Limits.Min != 1 || tp.Limits.Max != 50000 || tp.Limits.PerUserDay != 200000 ||
		tp.Limits.PerDay != 5000000 || len(tp.Limits.Currencies) != 1 || tp.Limits.Currencies[0] != "EUR" {
		t.Fatalf("testpay = %+v", tp)
	}

	// Credentials that do not load refuse the start, naming the field.
	for _, tc := range []struct{ name, from, to, field string }{
		{"missing file", "file:secret.key", "file:nope.key", "payments.channels.testpay.credentials.secret"},
		{"file readable by others", "file:secret.key", "file:open.key", "payments.channels.testpay.credentials.secret"},
		{"unset env", "file:secret.key", "env:VEND_TEST_NO_SUCH_VAR", "payments.channels.testpay.credentials.secret"},
	} {
		c, err := server.Parse(strings.NewReader(strings.Replace(base, tc.from, tc.to, 1)), dir)
		if err != nil {
			t.Fatalf("%s: Parse: %v", tc.name, err)
		}
		_, err = c.Channels()
		if vend.CodeOf(err) != "config.invalid" || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Channels = %v, want config.invalid naming %s", tc.name, err, tc.field)
		}
	}
	// Bad entries are refused at Parse, naming the field.
	for _, tc := range []struct{ name, from, to, field string }{
		{"bad limit", `max: "500.00"`, `max: "5e2"`, "payments.channels.testpay.limits"},
		{"min above max", `min: "0.01"`, `min: "600.00"`, "payments.channels.testpay.limits"},
		{"bad credential ref", "file:secret.key", "/etc/secret.key", "payments.channels.testpay.credentials.secret"},
		{"bad base_url", "http://127.0.0.1:9", "ftp://x", "payments.channels.testpay.base_url"},
		{"unknown channel", "name: testpay", "name: bitcoin", "payments.channels.bitcoin"},
		{"twice", "    - sandbox_card\n", "    - sandbox_card\n    - sandbox_card\n", "payments.channels"},
	} {
		_, err := server.Parse(strings.NewReader(strings.Replace(base, tc.from, tc.to, 1)), dir)
		if vend.CodeOf(err) != "config.invalid" || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Parse = %v, want config.invalid naming %s", tc.name, err, tc.field)
		}
	}
	// Production: the sandbox is refused, a real channel needs public_url.
	prod := strings.Replace(base, "development: true\n", "", 1)
	if _, err := server.Parse(strings.NewReader(prod), dir); err == nil || !strings.Contains(err.Error(), "sandbox_card") {
		t.Errorf("production with the sandbox = %v", err)
	}
	prod = strings.Replace(strings.Replace(prod, "    - sandbox_card\n", "", 1), "  public_url: https://cloud.example\n", "", 1)
	if _, err := server.Parse(strings.NewReader(prod), dir); err == nil || !strings.Contains(err.Error(), "payments.public_url") {
		t.Errorf("production without public_url = %v", err)
	}
	// A disabled sandbox entry is allowed in production (it is off).
	off := strings.Replace(strings.Replace(base, "development: true\n", "", 1), "    - sandbox_card\n", "    - {name: sandbox_card, enabled: false}\n", 1)
	if _, err := server.Parse(strings.NewReader(off), dir); err != nil && !strings.Contains(err.Error(), "http") && !strings.Contains(err.Error(), "admin") &&
		!strings.Contains(err.Error(), "broker") && !strings.Contains(err.Error(), "key_encryption") {
		t.Errorf("disabled sandbox in production = %v", err)
	} else if err != nil && strings.Contains(err.Error(), "sandbox_card") {
		t.Errorf("disabled sandbox refused: %v", err)
	}
}
