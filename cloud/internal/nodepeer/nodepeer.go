// Package nodepeer runs the payment providers' loopback peers under
// scripts/ (scripts/paypeer-wechat, scripts/paypeer-alipay): small Node
// programs whose protocol and cryptographic decisions are made by each
// provider's own npm SDK. It finds node, installs a peer's locked npm
// packages with `npm ci` into the user's cache (never into the
// repository, once per lockfile), and skips a test loudly without them,
// or fails it when VEND_REQUIRE_SERVICES is set, so an interoperability
// check cannot silently vanish. Test support only.
package nodepeer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Peer is one peer program under scripts/.
type Peer struct {
	Name string // its directory under scripts/, e.g. "paypeer-wechat"
	SDK  string // the third-party code it delegates to, for the skip message, e.g. "alipay-sdk@4.14.0"
}

// Need skips the test with a loud message naming what was not checked,
// or fails it when VEND_REQUIRE_SERVICES is set (as CI sets it).
func (p Peer) Need(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("VEND_REQUIRE_SERVICES") != "" {
		t.Fatalf("VEND_REQUIRE_SERVICES is set and %s", msg)
	}
	t.Skipf("\n!!!!!!!!\n!!! SKIPPED: %s\n!!! Interoperability with %s was NOT checked.\n!!! Set VEND_REQUIRE_SERVICES=1 to make this a failure.\n!!!!!!!!", msg, p.SDK)
}

// Dir is the peer's directory, scripts/<Name>, found from this source file.
func (p Peer) Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", p.Name)
}

// Script is the peer's program, scripts/<Name>/peer.js.
func (p Peer) Script() string { return filepath.Join(p.Dir(), "peer.js") }

// Node returns VEND_NODE (scripts/test.sh sets it from scripts/node.sh),
// else node on PATH; without either it calls Need.
func (p Peer) Node(t testing.TB) string {
	t.Helper()
	if n := os.Getenv("VEND_NODE"); n != "" {
		return n
	}
	n, err := exec.LookPath("node")
	if err != nil {
		p.Need(t, "node is not on PATH and VEND_NODE is not set (scripts/node.sh installs Node)")
	}
	return n
}

type install struct {
	once sync.Once
	dir  string
	err  error
}

var (
	installsMu sync.Mutex
	installs   = map[string]*install{}
)

// Modules installs the peer's locked npm packages with npm ci into the
// user's cache, once per lockfile (and once per process), and returns the
// directory holding node_modules; when that cannot be done it calls Need.
func (p Peer) Modules(t testing.TB, node string) string {
	t.Helper()
	installsMu.Lock()
	in := installs[p.Name]
	if in == nil {
		in = &install{}
		installs[p.Name] = in
	}
	installsMu.Unlock()
	in.once.Do(func() { in.dir, in.err = p.npmCI(node) })
	if in.err != nil {
		p.Need(t, "the peer's npm packages could not be installed: %v", in.err)
	}
	return in.dir
}

func (p Peer) npmCI(node string) (string, error) {
	src := p.Dir()
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		return "", err
	}
	pkg, err := os.ReadFile(filepath.Join(src, "package.json"))
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(append([]byte{}, pkg...), lock...))
	dir := filepath.Join(cache, "beaconvend", p.Name+"-"+hex.EncodeToString(sum[:6]))
	marker := filepath.Join(dir, "node_modules", ".npm-ci-done")
	if _, err := os.Stat(marker); err == nil {
		return dir, nil
	}
	npm := filepath.Join(filepath.Dir(node), "npm")
	if _, err := os.Stat(npm); err != nil {
		if npm, err = exec.LookPath("npm"); err != nil {
			return "", fmt.Errorf("npm is neither next to node nor on PATH")
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for name, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(node)+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return dir, os.WriteFile(marker, nil, 0o644)
}
