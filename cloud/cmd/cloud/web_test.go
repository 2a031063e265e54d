package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// webCLI runs one cloud command in process against data.
func webCLI(t *testing.T, data string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, &errb
	if err := m.ParseFlags(args); err != nil {
		return errb.String(), err
	}
	err := m.Run(context.Background())
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return out.String(), err
}

func TestWebCommands(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(data, "cloud.db"), &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	op, err := st.CreateOperator(ctx, "Web Co")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	var idk proxid.Key
	rand.Read(idk[:])
	price := vend.Price{Minor: 50, Per: 1000}
	if err := st.CreateDevice(ctx, store.Device{ID: "d1", OperatorID: op.ID, Name: "d1", IdentityKey: idk, K: proxid.DefaultK, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{
			{ID: "tap1", Kind: vend.KindWater, Name: "Tap one", Price: price, Currency: "CNY"},
			{ID: "tap2", Kind: vend.KindWater, Name: "Tap two", Price: price, Currency: "CNY"},
		}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	dd := []string{"-data", data}

	// Bad input: a clear error naming what was wrong, nothing changed or written.
	sheet := filepath.Join(t.TempDir(), "s.svg")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"machine", "web-checkout", "d1", "tap1", "maybe"}, `"maybe": want on or off`},
		{[]string{"machine", "web-checkout", "d1", "tap1"}, "usage: cloud machine web-checkout"},
		{[]string{"machine", "web-checkout", "d1", "nope", "on"}, "nope"},
		{[]string{"stickers", "-o", sheet}, "needs -device"},
		{[]string{"stickers", "-device", "d1"}, "needs -o"},
		{[]string{"stickers", "-device", "d1", "-o", sheet, "-format", "gif"}, `"gif": want svg, png or pdf`},
		{[]string{"stickers", "-device", "d1", "-o", sheet}, "needs -public-url"},
		{[]string{"stickers", "-device", "d1", "-o", sheet, "-public-url", "pay.example.com"}, "want an absolute http(s) URL"},
		{[]string{"stickers", "-device", "d9", "-o", sheet, "-public-url", "https://pay.example.com"}, "d9"},
		{[]string{"stickers", "-device", "d1", "-machine", "tap9", "-o", sheet, "-public-url", "https://pay.example.com"}, `no machine "tap9"`},
	} {
		args := append(append([]string{}, tc.args...), dd...)
		if _, err := webCLI(t, data, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cloud %v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(sheet); !os.IsNotExist(err) {
		t.Errorf("a failed stickers command left %s", sheet)
	}

	// On, then off: the store's switch follows, and prints what it did.
	webOn := func(m string) bool {
		st, err := store.Open(ctx, "sqlite:"+filepath.Join(data, "cloud.db"), &store.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var on bool
		if err := st.DB().QueryRowContext(ctx, `SELECT web_checkout <> 0 FROM machines WHERE device_id = 'd1' AND id = $1`, m).Scan(&on); err != nil {
			t.Fatal(err)
		}
		return on
	}
	if webOn("tap1") {
		t.Fatal("web checkout is on before anyone turned it on")
	}
	out, err := webCLI(t, data, "machine", "web-checkout", "-data", data, "d1", "tap1", "on")
	if err != nil || !strings.Contains(out, `"web_checkout":"on"`) || !webOn("tap1") || webOn("tap2") {
		t.Fatalf("web-checkout on: %q %v; tap1 %v tap2 %v", out, err, webOn("tap1"), webOn("tap2"))
	}
	if _, err := webCLI(t, data, "machine", "web-checkout", "d1", "tap1", "off", "-data", data); err != nil || webOn("tap1") {
		t.Fatalf("web-checkout off (flags after the arguments): %v, on %v", err, webOn("tap1"))
	}

	// Stickers: one per machine, or the one asked for; the format from -o.
	for _, tc := range []struct {
		name, machine, magic string
		n                    int
	}{{"all.svg", "", "<?xml", 2}, {"one.pdf", "tap2", "%PDF-1.4", 1}, {"all.png", "", "\x89PNG", 2}} {
		out := filepath.Join(t.TempDir(), tc.name)
		args := append([]string{"stickers", "-device", "d1", "-public-url", "https://pay.example.com", "-o", out}, dd...)
		if tc.machine != "" {
			args = append(args, "-machine", tc.machine)
		}
		if _, err := webCLI(t, data, args...); err != nil {
			t.Fatalf("stickers %s: %v", tc.name, err)
		}
		b, err := os.ReadFile(out)
		if err != nil || !bytes.HasPrefix(b, []byte(tc.magic)) {
			t.Fatalf("%s: %q… %v", tc.name, b[:min(len(b), 8)], err)
		}
		if tc.name == "all.svg" && (bytes.Count(b, []byte("pay.example.com/m/d1/")) != tc.n || !bytes.Contains(b, []byte("Tap one"))) {
			t.Errorf("the SVG sheet does not have %d stickers with names", tc.n)
		}
		if tc.name == "one.pdf" && (!bytes.Contains(b, []byte("(pay.example.com/m/d1/tap2) Tj")) || bytes.Contains(b, []byte("tap1"))) {
			t.Error("the one-machine PDF does not hold just tap2")
		}
	}
}
