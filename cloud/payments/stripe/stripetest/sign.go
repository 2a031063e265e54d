package stripetest

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sign returns the Stripe-Signature header "t=<unix>,v1=<hex>" for body
// signed at time at under secret, the HMAC-SHA256 of "<t>.<body>"
// computed by openssl (`openssl dgst -sha256 -hmac <secret>`), not by Go.
func Sign(t testing.TB, secret string, at time.Time, body []byte) string {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		Need(t, "openssl is not installed: webhook signatures cannot be made independently")
	}
	ts := strconv.FormatInt(at.Unix(), 10)
	cmd := exec.Command(bin, "dgst", "-sha256", "-hmac", secret, "-hex")
	cmd.Stdin = bytes.NewReader(append([]byte(ts+"."), body...))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("stripetest: openssl dgst: %v", err)
	}
	// "HMAC-SHA2-256(stdin)= 5f…" (OpenSSL 3) or "(stdin)= 5f…" (1.1)
	f := strings.Fields(string(out))
	if len(f) == 0 || len(f[len(f)-1]) != 64 {
		t.Fatalf("stripetest: openssl dgst printed %q, want a SHA-256 HMAC in hex", out)
	}
	return fmt.Sprintf("t=%s,v1=%s", ts, f[len(f)-1])
}
