package natsauth_test

import (
	"slices"
	"testing"

	"github.com/nats-io/nkeys"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/natsauth"
)

// The subject of an MQTT topic is the topic with '/' read as '.'; a
// device's rights are exactly its own subtree.
func TestSubjectMapping(t *testing.T) {
	p, err := natsauth.SubjectPrefix(mqttapi.Tree{})
	if err != nil || p != "bv.v1.dev" {
		t.Fatalf("prefix %q %v", p, err)
	}
	if p, err := natsauth.SubjectPrefix(mqttapi.Tree{Prefix: "site/a"}); err != nil || p != "site.a" {
		t.Fatalf("custom prefix %q %v", p, err)
	}
	d := natsauth.DevicePermissions("bv.v1.dev", "wd-1")
	wantPub := []string{"bv.v1.dev.wd-1.state", "bv.v1.dev.wd-1.telemetry", "bv.v1.dev.wd-1.evt", "bv.v1.dev.wd-1.usage", "bv.v1.dev.wd-1.reply"}
	if !slices.Equal([]string(d.Pub.Allow), wantPub) || !slices.Equal([]string(d.Sub.Allow), []string{"bv.v1.dev.wd-1.cmd"}) {
		t.Fatalf("device permissions %+v", d)
	}
	c := natsauth.CloudPermissions("bv.v1.dev")
	if !slices.Contains(c.Pub.Allow, "bv.v1.dev.*.cmd") || slices.Contains(c.Pub.Allow, "bv.v1.dev.*.usage") || !slices.Contains(c.Sub.Allow, "bv.v1.dev.*.usage") {
		t.Fatalf("cloud permissions %+v", c)
	}
	o := natsauth.OperatorPermissions("bv.v1.dev", []string{"wd-1"})
	if !slices.Equal([]string(o.Pub.Deny), []string{">"}) || len(o.Sub.Allow) != len(broker.OperatorLeaves) {
		t.Fatalf("operator permissions %+v", o)
	}
}

func TestStartRefusesBadOptions(t *testing.T) {
	h, _ := broker.HashPassword("x")
	kp, _ := nkeys.CreateAccount()
	seed, _ := kp.Seed()
	ukp, _ := nkeys.CreateUser()
	useed, _ := ukp.Seed()
	good := natsauth.Options{URLs: []string{"nats://127.0.0.1:1"}, Password: "p", IssuerSeed: seed,
		Credentials: broker.CredentialsFunc(nil), CloudPasswordHash: h}
	for name, edit := range map[string]func(*natsauth.Options){
		"no urls":       func(o *natsauth.Options) { o.URLs = nil },
		"no password":   func(o *natsauth.Options) { o.Password = "" },
		"bad seed":      func(o *natsauth.Options) { o.IssuerSeed = []byte("nope") },
		"user seed":     func(o *natsauth.Options) { o.IssuerSeed = useed },
		"no cloud hash": func(o *natsauth.Options) { o.CloudPasswordHash = "" },
		"bad hash":      func(o *natsauth.Options) { o.CloudPasswordHash = "plain" },
	} {
		o := good
		edit(&o)
		if _, err := natsauth.Start(o); vend.CodeOf(err) != natsauth.ErrOptions.Code {
			t.Errorf("%s: %v", name, err)
		}
	}
}
