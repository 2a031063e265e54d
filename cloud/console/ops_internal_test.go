package console

import (
	"testing"

	"beaconvend/app-protocol/vend"
)

func TestParseMinor(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		code string
	}{
		{"1", 100, ""}, {"1.5", 150, ""}, {"1.50", 150, ""}, {" 0.05 ", 5, ""}, {"0", 0, ""},
		{"", 0, "request.field"}, {"1.", 0, "request.field"}, {".5", 0, "request.field"}, {"1.505", 0, "request.field"},
		{"-1", 0, "request.field"}, {"1,50", 0, "request.field"}, {"1e3", 0, "request.field"}, {"9999999999999", 0, "request.field"},
	} {
		got, err := parseMinor("price", c.in)
		if vend.CodeOf(err) != c.code || (err == nil && got != c.want) {
			t.Errorf("parseMinor(%q) = %d, %v; want %d, code %q", c.in, got, err, c.want, c.code)
		}
	}
}

func TestOpsPagesParse(t *testing.T) {
	tpl, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"ops", "ops_device", "ops_confirm", "ops_result", "ops_provision", "inventory"} {
		if tpl[p] == nil {
			t.Errorf("page %s missing", p)
		}
	}
}
