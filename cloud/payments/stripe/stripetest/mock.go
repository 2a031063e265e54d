// Package stripetest is test support for the Stripe card channel:
//
//   - StartMock runs stripe-mock (github.com/stripe/stripe-mock, Stripe's
//     own server that validates every request against Stripe's OpenAPI
//     spec), pinned as a Go tool dependency of the module, on loopback.
//     It keeps no state: a retrieve answers a fixture.
//   - Server is the project's own stateful stand-in for the subset of
//     Stripe's API the channel uses, so the hold → capture → cancel
//     sequencing can be tested. It is written here, not by Stripe: what
//     it enforces is what Stripe documents, and request shapes are checked
//     against stripe-mock, not against it.
//   - Sign signs a webhook body with openssl (`openssl dgst -sha256
//     -hmac`), an implementation of HMAC-SHA256 independent of the
//     channel's and of stripe-go's.
//
// A helper that needs a tool (go, openssl) skips the test loudly when it
// is missing, or fails it when VEND_REQUIRE_SERVICES is set.
package stripetest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MockVersion is the stripe-mock the module pins (go.mod tool directive).
const MockVersion = "v0.203.0"

// Need skips t loudly naming what was not checked, or fails it when
// VEND_REQUIRE_SERVICES is set.
func Need(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("VEND_REQUIRE_SERVICES") != "" {
		t.Fatalf("VEND_REQUIRE_SERVICES is set and %s", msg)
	}
	t.Skipf("\n!!!!!!!!\n!!! SKIPPED: %s\n!!! The Stripe channel was NOT checked against it.\n!!! Set VEND_REQUIRE_SERVICES=1 to make this a failure.\n!!!!!!!!", msg)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// mockBinary builds the pinned stripe-mock once per version into the
// user's cache (never into the repository).
func mockBinary() (string, error) {
	buildOnce.Do(func() {
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			if gobin, err = exec.LookPath("go"); err != nil {
				buildErr = fmt.Errorf("no go command to build stripe-mock: %v", err)
				return
			}
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "beaconvend", "stripe-mock-"+MockVersion)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		out := filepath.Join(dir, "stripe-mock")
		if _, err := os.Stat(out); err == nil {
			buildPath = out
			return
		}
		_, file, _, _ := runtime.Caller(0)
		tmp := out + fmt.Sprintf(".%d", os.Getpid())
		cmd := exec.Command(gobin, "build", "-o", tmp, "github.com/stripe/stripe-mock")
		cmd.Dir = filepath.Dir(file) // inside the module: its go.mod pins the version
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build stripe-mock: %v: %s", err, b)
			return
		}
		if err := os.Rename(tmp, out); err != nil {
			buildErr = err
			return
		}
		buildPath = out
	})
	return buildPath, buildErr
}

// StartMock runs stripe-mock on loopback (HTTP and HTTPS both bound to
// 127.0.0.1 on ports the system picks; stripe-mock otherwise listens for
// HTTPS on every interface), waits until it says where it listens, and
// returns its HTTP base URL. Cleanup stops it with SIGTERM (SIGKILL after
// 5 s) and waits for it.
func StartMock(t testing.TB) string {
	t.Helper()
	bin, err := mockBinary()
	if err != nil {
		Need(t, "stripe-mock %s could not be built: %v", MockVersion, err)
	}
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		Need(t, "stripe-mock does not start: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		var lines []string
		for sc.Scan() {
			l := sc.Text()
			if a, ok := strings.CutPrefix(l, "Listening for HTTP at address: "); ok {
				addr <- strings.TrimSpace(a)
			}
			if len(lines) < 50 {
				lines = append(lines, l)
			}
		}
		_ = cmd.Wait()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	select {
	case a := <-addr:
		return "http://" + a
	case <-done:
		t.Fatalf("stripetest: stripe-mock exited before listening")
	case <-ctx.Done():
		t.Fatalf("stripetest: stripe-mock did not listen within 60 s")
	}
	return ""
}
