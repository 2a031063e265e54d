package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/cloud/server"
	"beaconvend/cloud/service"
)

// The alerts section becomes the service's alert options: SMTP with its
// password read from a 0600 file, the webhook key from a file; mistakes
// name the field.
func TestAlertsConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "smtp.pw"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "hook.key"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "open.pw"), []byte("x"), 0o644)
	c, err := server.Parse(strings.NewReader(`development: true
payments: {channels: [sandbox_card]}
alerts:
  console_url: https://cloud.example.com/console/
  webhook_key_file: hook.key
  smtp: {host: smtp.example.com, port: 465, from: "Alerts <alerts@example.com>", username: alerts, password_file: smtp.pw, tls: tls}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.AlertOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.SMTP.Host != "smtp.example.com" || o.SMTP.Port != 465 || o.SMTP.Password != "s3cret" || o.SMTP.TLS != service.SMTPTLS ||
		len(o.WebhookKey) != 32 || o.ConsoleURL != "https://cloud.example.com/console" {
		t.Fatalf("options %+v", o)
	}
	for _, tc := range []struct{ yaml, field string }{
		{`alerts: {smtp: {host: smtp.example.com, from: a@example.com, tls: maybe}}`, "alerts.smtp.tls"},
		{`alerts: {smtp: {host: smtp.example.com}}`, "alerts.smtp.from"},
		{`alerts: {smtp: {from: a@example.com}}`, "alerts.smtp.host"},
		{`alerts: {smtp: {host: smtp.example.com, from: a@example.com, username: u}}`, "alerts.smtp.password_file"},
		{`alerts: {smtp: {host: smtp.example.com, from: a@example.com, username: u, password_file: open.pw}}`, "want 0600"},
		{`alerts: {webhook_key_file: smtp.pw}`, "64 hex digits"},
	} {
		_, err := server.Parse(strings.NewReader("development: true\npayments: {channels: [sandbox_card]}\n"+tc.yaml+"\n"), dir)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want an error naming %s", tc.yaml, err, tc.field)
		}
	}
}
