package server_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"beaconvend/cloud/payments/wechatpay/wechattest"
	"beaconvend/cloud/server"
)

// The production example's commented channel entry, uncommented, is one
// the cloud starts with: every credential and setting the provider needs
// is there, each as the kind of reference the provider takes. Only the
// key files' directory is moved into the test's, and the wallet currency
// is CNY (WeChat Pay takes nothing else, as the comment says).
func TestProductionExampleChannelEntry(t *testing.T) {
	example, err := os.ReadFile("testdata/cloud.prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in, entries := false, 0
	for _, l := range strings.Split(string(example), "\n") {
		switch {
		case strings.HasPrefix(l, "  channels: []"):
			in, l = true, "  channels:"
		case in && strings.HasPrefix(l, "  #  "):
			if strings.HasPrefix(l, "  #  - ") {
				entries++
			}
			l = "  " + strings.Replace(l, "#", "", 1)[2:]
		default:
			in = false
		}
		out = append(out, l)
	}
	if entries != 1 {
		t.Fatalf("%d commented channel entries under payments.channels in the example, want 1", entries)
	}
	dir := t.TempDir()
	text := strings.ReplaceAll(strings.Join(out, "\n"), "/etc/beaconvend/", dir+"/")
	text = strings.Replace(text, "currency: EUR", "currency: CNY", 1)
	k := wechattest.NewKeys(t)
	if err := os.MkdirAll(filepath.Join(dir, "wechatpay"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"apiclient_key.pem": k.MerchantKeyFile, "apiv3.key": k.APIv3KeyFile, "pub_key.pem": k.PlatformKeyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "wechatpay", name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	entry, err := server.Decode(bytes.NewReader([]byte(text)), "testdata")
	if err != nil {
		t.Fatalf("the example with its channel entry uncommented: %v\n%s", err, text)
	}
	cfg, _, _, err := prodConfig(t, t.TempDir(), func(c *server.Config) { c.Payments = entry.Payments })
	if err != nil {
		t.Fatalf("the example with its channel entry uncommented: %v", err)
	}
	chs, err := cfg.Channels()
	if err != nil {
		t.Fatalf("the example's channel entry: %v", err)
	}
	if len(chs) != 1 || chs[0].Source().ID != "wechatpay" || chs[0].Priority != 1 {
		t.Fatalf("channels %+v, want wechatpay at priority 1", chs)
	}
}

// The README's fleet instance example (NATS cluster with the auth
// callout, PostgreSQL failover) is a valid production configuration once
// its secret files exist, and the README shows it verbatim.
func TestFleetExample(t *testing.T) {
	example, err := os.ReadFile("testdata/cloud.nats.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte("```yaml\n"+string(example)+"```\n")) {
		t.Error("README.md does not show cloud/server/testdata/cloud.nats.yaml verbatim in a ```yaml block")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "nats"), 0o700); err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateAccount()
	seed, _ := kp.Seed()
	for name, text := range map[string]string{"nats/auth-issuer.seed": string(seed), "nats/auth-user.password": "pw"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := strings.ReplaceAll(string(example), "/etc/beaconvend/", dir+"/")
	c, err := server.Parse(strings.NewReader(text), dir)
	if err != nil {
		t.Fatalf("the fleet example: %v", err)
	}
	if !c.Broker.NATS() || len(c.Broker.NATSURLs) != 3 || c.Broker.NATSAuth == nil || c.Broker.NATSAuth.Responders != 2 || c.DatabaseSwitchWait.D() != time.Minute {
		t.Fatalf("the fleet example parsed as %+v", c)
	}
}
