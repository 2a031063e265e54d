package server_test

import (
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/server"
)

// The step_up section becomes the service's step-up options, its limits
// in the wallet currency; a bad amount is an error naming the field.
func TestStepUpConfig(t *testing.T) {
	dir := t.TempDir()
	c, err := server.Parse(strings.NewReader(`development: true
payments: {channels: [sandbox_card], currency: CNY}
step_up: {token_ttl: 2m, max_failures: 3, window: 30m, top_up_above: "200.00", cap_above: "0"}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.StepUpOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.TokenTTL != 2*time.Minute || o.MaxFailures != 3 || o.Window != 30*time.Minute ||
		o.TopUpAbove["CNY"] != 20000 || len(o.TopUpAbove) != 1 || o.CapAbove["CNY"] != 0 || len(o.CapAbove) != 1 || o.WithdrawalAbove != nil {
		t.Fatalf("options %+v", o)
	}
	for _, tc := range []struct{ yaml, field string }{
		{`step_up: {top_up_above: lots}`, "step_up.top_up_above"},
		{`step_up: {withdrawal_above: "-1.00"}`, "step_up.withdrawal_above"},
		{`step_up: {max_failures: -1}`, "step_up"},
		{`step_up: {pin: "1234"}`, "pin"},
	} {
		_, err := server.Parse(strings.NewReader("development: true\npayments: {channels: [sandbox_card]}\n"+tc.yaml+"\n"), dir)
		if vend.CodeOf(err) != "config.invalid" || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want config.invalid naming %s", tc.yaml, err, tc.field)
		}
	}
}
