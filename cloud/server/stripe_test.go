package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/stripe/stripetest"
	"beaconvend/cloud/server"
)

// stripeConfig writes a secret key and webhook secret (mode 0600) and
// returns a config naming them, with extra lines under the entry.
func stripeConfig(t *testing.T, baseURL, extra string) (*server.Config, string, error) {
	dir := t.TempDir()
	key := "sk_test_" + strings.Repeat("a1", 12)
	for name, v := range map[string]string{"sk.key": key, "whsec.key": "whsec_" + strings.Repeat("b2", 16)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	y := `
development: true
payments:
  public_url: https://cloud.example
  currency: EUR
  channels:
    - name: stripe_card
      base_url: ` + baseURL + `
      credentials: {secret_key: file:sk.key, webhook_secret: file:whsec.key}
` + extra
	c, err := server.Parse(strings.NewReader(y), dir)
	return c, key, err
}

func TestStripeChannelFromConfig(t *testing.T) {
	srv := stripetest.NewServer(t)
	c, key, err := stripeConfig(t, srv.URL, "      params: {authorization_validity: 120h}\n")
	if err != nil {
		t.Fatal(err)
	}
	srv.APIKey = key
	chans, err := c.Channels()
	if err != nil || len(chans) != 1 {
		t.Fatalf("Channels = %v, %v", chans, err)
	}
	g := chans[0]
	if g.Name() != "stripe_card" || g.Source().ID != "stripe_card" || g.Source().Kind != "card" {
		t.Fatalf("channel %s source %+v", g.Name(), g.Source())
	}
	hc, ok := g.Channel.(payments.HoldChannel)
	if !ok || hc.AuthorizationValidity() != 120*time.Hour {
		t.Fatalf("hold channel %v, validity %v; want 120h", ok, hc)
	}
	// The cloud wires its payment records without importing the package.
	lk, ok := g.Channel.(interface {
		SetLookupIntent(func(context.Context, string) (string, error))
	})
	if !ok {
		t.Fatal("the channel offers no SetLookupIntent")
	}
	ctx := context.Background()
	a, err := hc.Authorize(ctx, payments.Order{No: "CFG-1", Amount: vend.Amount{Minor: 500, Currency: "EUR"}})
	if err != nil {
		t.Fatalf("authorize through the configured base_url and key: %v", err)
	}
	asked := ""
	lk.SetLookupIntent(func(_ context.Context, no string) (string, error) { asked = no; return a.ProviderRef, nil })
	if st, err := g.Query(ctx, "CFG-1"); err != nil || st.State != payments.PayPending || asked != "CFG-1" {
		t.Fatalf("query = %+v, %v (lookup asked %q)", st, err, asked)
	}
}

func TestStripeChannelConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"unknown param", "      params: {capture: manual}\n", "params.capture: unknown param"},
		{"bad validity", "      params: {authorization_validity: 7d}\n", "params.authorization_validity"},
		{"validity above a month", "      params: {authorization_validity: 800h}\n", "31 days"},
		{"bad tolerance", "      params: {webhook_tolerance: -1s}\n", "params.webhook_tolerance"},
		{"bad currency", "      params: {currency: eur}\n", "params.currency"},
	} {
		c, _, err := stripeConfig(t, "http://127.0.0.1:9", tc.extra)
		if err == nil {
			_, err = c.Channels()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}

	// Credentials must be files (stripe-go's key is read by the channel from a file).
	dir := t.TempDir()
	t.Setenv("VEND_TEST_STRIPE_KEY", "sk_test_x")
	os.WriteFile(filepath.Join(dir, "whsec.key"), []byte("whsec_x"), 0o600)
	os.WriteFile(filepath.Join(dir, "pk.key"), []byte("pk_test_x"), 0o600)
	for _, tc := range []struct{ creds, want string }{
		{"{secret_key: env:VEND_TEST_STRIPE_KEY, webhook_secret: file:whsec.key}", "credentials.secret_key: want file:PATH"},
		{"{secret_key: file:pk.key}", "credentials.webhook_secret: want file:PATH"},
		{"{secret_key: file:pk.key, webhook_secret: file:whsec.key}", "SecretKeyFile"},
	} {
		y := "development: true\npayments:\n  public_url: https://cloud.example\n  channels:\n    - name: stripe_card\n      credentials: " + tc.creds + "\n"
		c, err := server.Parse(strings.NewReader(y), dir)
		if err == nil {
			_, err = c.Channels()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.creds, err, tc.want)
		}
	}
}
