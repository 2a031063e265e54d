package browsertest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"beaconvend/cloud/internal/nodepeer"
	"beaconvend/cloud/internal/svctest"
)

// Viewport is a page's size in CSS pixels and whether it runs scripts.
type Viewport struct {
	Width, Height int64
	Mobile        bool // emulate a phone (touch, mobile meta viewport)
	NoScript      bool // run the page with JavaScript disabled
}

// Phone is a phone-sized portrait viewport (390×844, an iPhone 12–15).
var Phone = Viewport{Width: 390, Height: 844, Mobile: true}

// Desktop is a desktop-sized viewport (1280×800).
var Desktop = Viewport{Width: 1280, Height: 800}

// Timeout bounds each Page action (Do, Go, Text…): a page that never
// shows what a test waits for fails the test instead of hanging it.
var Timeout = 20 * time.Second

// Browser is a headless Chromium shared by the tests of one binary.
type Browser struct {
	alloc context.Context // the allocator's context
	root  context.Context // the browser's first tab (keeps the process up)
	axe   string          // axe.min.js source
}

var (
	startOnce sync.Once
	shared    *Browser
	startErr  error
	missing   string // what was missing, for svctest.Missing
)

// Chromium returns the browser's executable: $VEND_CHROMIUM, else
// chromium, chromium-browser, google-chrome-stable or google-chrome on
// PATH; "" when there is none.
func Chromium() string {
	if p := os.Getenv("VEND_CHROMIUM"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// axePeer is scripts/axe: the locked axe-core package, installed with npm
// ci into the user's cache by nodepeer (it has no peer.js: only its
// node_modules are used).
var axePeer = nodepeer.Peer{Name: "axe", SDK: "axe-core@4.14.1"}

// Start returns the binary's browser, starting it on first use; without
// chromium or axe-core it skips t loudly (fails under
// VEND_REQUIRE_SERVICES). The browser lives until the binary exits.
func Start(t testing.TB) *Browser {
	t.Helper()
	exe := Chromium()
	if exe == "" {
		svctest.Missing(t, "chromium", "install it with apt-get install chromium (scripts/test.sh does as root) or set VEND_CHROMIUM")
	}
	// node and axe-core: nodepeer skips or fails t itself.
	node := axePeer.Node(t)
	mods := axePeer.Modules(t, node)
	startOnce.Do(func() {
		src, err := os.ReadFile(filepath.Join(mods, "node_modules", "axe-core", "axe.min.js"))
		if err != nil {
			startErr, missing = err, "axe-core"
			return
		}
		shared, startErr = start(exe, string(src))
		if startErr != nil {
			missing = "a running chromium"
		}
	})
	if startErr != nil {
		svctest.Missing(t, missing, startErr.Error())
	}
	return shared
}

// profileDir is the browser's profile directory for this process:
// os.TempDir()/beaconvend-browsertest/profile-<pid>. The browser lives
// as long as the test binary (chromedp kills it when the binary exits),
// so nothing removes its profile then; each start removes the profiles of
// processes that are gone instead.
func profileDir() (string, error) {
	base := filepath.Join(os.TempDir(), "beaconvend-browsertest")
	old, _ := filepath.Glob(filepath.Join(base, "profile-*"))
	for _, d := range old {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "profile-"))
		if err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
	dir := filepath.Join(base, fmt.Sprintf("profile-%d", os.Getpid()))
	return dir, os.MkdirAll(dir, 0o700)
}

func start(exe, axe string) (*Browser, error) {
	profile, err := profileDir()
	if err != nil {
		return nil, fmt.Errorf("browsertest: profile: %w", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.Flag("lang", "en-US"),
	)
	alloc, _ := chromedp.NewExecAllocator(context.Background(), opts...)
	root, _ := chromedp.NewContext(alloc)
	// Start the browser now, to report its failure once. The first Do on
	// a context binds the browser (or tab) to that context, so it gets
	// root itself, not a child with a timeout.
	if err := chromedp.Do(root); err != nil {
		return nil, fmt.Errorf("browsertest: start %s: %w", exe, err)
	}
	return &Browser{alloc: alloc, root: root, axe: axe}, nil
}

// Page is one tab in a browser context of its own. Its methods fail the
// test on error; Ctx is there for chromedp calls the helpers lack.
type Page struct {
	T   testing.TB
	Ctx context.Context // the tab's chromedp context
	b   *Browser
	vp  Viewport
}

// shots numbers the screenshots kept, so two pages of one test never
// write the same file.
var shots atomic.Int64

// Page opens a fresh tab for t at viewport vp, with its own cookies, and
// closes it when t ends; if t failed, the page's screenshot is kept first
// and its path logged.
func (b *Browser) Page(t testing.TB, vp Viewport) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &Page{T: t, Ctx: ctx, b: b, vp: vp}
	if err := chromedp.Do(ctx); err != nil { // open the tab, bound to ctx (not to a child with a timeout)
		t.Fatalf("browsertest: open a tab: %v", err)
	}
	t.Cleanup(func() { // runs before cancel (cleanups run last-in first-out)
		if t.Failed() {
			p.keepScreenshot("failed")
		}
	})
	mobile := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if vp.Mobile {
		mobile = append(mobile, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	steps := []chromedp.Action[chromedp.Void]{chromedp.EmulateViewport(vp.Width, vp.Height, mobile...)}
	p.Do(steps...)
	if vp.NoScript {
		p.scripts(false)
	}
	return p
}

// scripts turns the page's JavaScript on or off.
func (p *Page) scripts(on bool) {
	p.T.Helper()
	p.Do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: !on})
		return err
	}))
}

// Do runs steps in the tab within Timeout and fails the test on error.
func (p *Page) Do(steps ...chromedp.Action[chromedp.Void]) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, Timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.T.Fatalf("browsertest: %v", err)
	}
}

// Run runs one action that returns a value, within Timeout; it fails the
// test on error.
func Run[T any](p *Page, a chromedp.Action[T]) T {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.T.Fatalf("browsertest: %v", err)
	}
	return v
}

// Go navigates to url and waits for the page to load.
func (p *Page) Go(url string) {
	p.T.Helper()
	// Not chromedp.Navigate: it waits for the page's script context,
	// which a page without JavaScript does not get on a second load.
	Eval[bool](p, `window.__browsertestOld = true`)
	p.Do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, page.Navigate, page.NavigateParams{URL: url})
		if err == nil && res.ErrorText != "" {
			err = fmt.Errorf("navigate to %s: %s", url, res.ErrorText)
		}
		return err
	}))
	p.Wait(`!window.__browsertestOld && document.readyState === "complete"`)
}

// URL is the tab's current location.
func (p *Page) URL() string {
	p.T.Helper()
	return Run(p, chromedp.Location())
}

// The helpers below (Wait, Text, Click) work through Runtime.evaluate
// and input events only, never through chromedp's element queries: those
// wait for the page's script context, which a page running with
// JavaScript disabled never gets, so they would hang there.

// Wait polls the JavaScript expression js (in DevTools, so it also works
// with the page's scripts disabled) until it is truthy, for at most
// Timeout; it fails the test naming what it waited for.
func (p *Page) Wait(js string) {
	p.T.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		ctx, cancel := context.WithTimeout(p.Ctx, Timeout)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+js+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.T.Fatalf("browsertest: waited %v for %s on %s (last error %v)", Timeout, js, p.locationOr("?"), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitFor waits until an element matches the CSS selector sel.
func (p *Page) WaitFor(sel string) {
	p.T.Helper()
	p.Wait(fmt.Sprintf("document.querySelector(%q)", sel))
}

// Text waits for an element matching the CSS selector sel and returns
// its rendered text, trimmed.
func (p *Page) Text(sel string) string {
	p.T.Helper()
	p.WaitFor(sel)
	return Eval[string](p, fmt.Sprintf("(e => (e.innerText ?? e.textContent).trim())(document.querySelector(%q))", sel)) // an SVG element has no innerText
}

// WaitText waits until the text of the element matching sel contains
// want, and returns that text. It does not reload: it follows changes
// the page's own scripts make.
func (p *Page) WaitText(sel, want string) string {
	p.T.Helper()
	p.Wait(fmt.Sprintf("(e => e && (e.innerText ?? e.textContent).includes(%q))(document.querySelector(%q))", want, sel))
	return p.Text(sel)
}

// Click scrolls the element matching sel into view and clicks its centre
// with the mouse, as a person would (a disabled or covered element gets
// the click as a person's would).
func (p *Page) Click(sel string) {
	p.T.Helper()
	p.WaitFor(sel)
	type point struct{ X, Y float64 }
	pt := Eval[point](p, fmt.Sprintf(`(e => { e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect(); return {X: r.x + r.width/2, Y: r.y + r.height/2} })(document.querySelector(%q))`, sel))
	p.Do(chromedp.MouseClickXY(pt.X, pt.Y))
}

// ClickAndLoad clicks sel and waits for the next page to load (a link or
// a form's submit button).
func (p *Page) ClickAndLoad(sel string) {
	p.T.Helper()
	Eval[bool](p, `window.__browsertestOld = true`)
	p.Click(sel)
	p.Wait(`!window.__browsertestOld && document.readyState === "complete"`)
}

// Eval evaluates a JavaScript expression in the page (also when the page
// runs with JavaScript disabled: DevTools still evaluates).
func Eval[T any](p *Page, expr string) T {
	p.T.Helper()
	return Run(p, chromedp.Evaluate[T](expr))
}

// Screenshot captures the viewport as PNG.
func (p *Page) Screenshot() []byte {
	p.T.Helper()
	return Run(p, chromedp.CaptureScreenshot())
}

// ElementPNG returns a PNG of the element matching sel as the page
// draws it (at scale, device pixels per CSS pixel), also below the fold
// and on a page without JavaScript: for tests that decode what a payer
// would scan.
func (p *Page) ElementPNG(sel string, scale float64) []byte {
	p.T.Helper()
	p.WaitFor(sel)
	type rect struct{ X, Y, W, H float64 }
	r := Eval[rect](p, fmt.Sprintf(`(e => { const r = e.getBoundingClientRect(); return {X: r.x + scrollX, Y: r.y + scrollY, W: r.width, H: r.height} })(document.querySelector(%q))`, sel))
	var png []byte
	p.Do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format: page.CaptureScreenshotFormatPng, Clip: &page.Viewport{X: r.X, Y: r.Y, Width: r.W, Height: r.H, Scale: scale},
			CaptureBeyondViewport: new(true), FromSurface: new(true),
		})
		png = res.Data
		return err
	}))
	return png
}

// keepScreenshot writes a full-page screenshot to the artifact directory
// and logs its path; errors are logged, never fatal (it runs in cleanup).
func (p *Page) keepScreenshot(what string) {
	ctx, cancel := context.WithTimeout(p.Ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.T.Logf("browsertest: no screenshot of the %s page: %v", what, err)
		return
	}
	dir, err := ArtifactDir(p.T)
	if err != nil {
		p.T.Logf("browsertest: no screenshot of the %s page: %v", what, err)
		return
	}
	name := filepath.Join(dir, fmt.Sprintf("%s-%d.png", what, shots.Add(1)))
	if err := os.WriteFile(name, png, 0o644); err != nil {
		p.T.Logf("browsertest: no screenshot of the %s page: %v", what, err)
		return
	}
	p.T.Logf("browsertest: screenshot of the %s page at %s: %s", what, p.locationOr("?"), name)
}

func (p *Page) locationOr(def string) string {
	ctx, cancel := context.WithTimeout(p.Ctx, 5*time.Second)
	defer cancel()
	if u, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
		return u
	}
	return def
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// ArtifactDir is where a test keeps files that must outlive it (failure
// screenshots): $VEND_ARTIFACTS/<test name>, else t.ArtifactDir() when go
// test runs with -artifacts, else os.TempDir()/beaconvend-browsertest/<test
// name>. It creates the directory.
func ArtifactDir(t testing.TB) (string, error) {
	name := unsafeName.ReplaceAllString(t.Name(), "_")
	var dir string
	switch {
	case os.Getenv("VEND_ARTIFACTS") != "":
		dir = filepath.Join(os.Getenv("VEND_ARTIFACTS"), name)
	case artifactsFlag():
		return t.ArtifactDir(), nil
	default:
		dir = filepath.Join(os.TempDir(), "beaconvend-browsertest", name)
	}
	return dir, os.MkdirAll(dir, 0o755)
}

func artifactsFlag() bool {
	f := flag.Lookup("test.artifacts")
	return f != nil && f.Value.String() == "true"
}

// ---- axe-core ----

// Violation is one axe-core rule a page broke.
type Violation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"` // minor, moderate, serious, critical
	Help   string `json:"help"`
	URL    string `json:"helpUrl"`
	Nodes  []struct {
		Target         []any  `json:"target"`
		FailureSummary string `json:"failureSummary"`
	} `json:"nodes"`
}

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", v.ID, v.Impact, v.Help)
	for _, n := range v.Nodes {
		fmt.Fprintf(&b, "\n\t\t%v: %s", n.Target, strings.ReplaceAll(n.FailureSummary, "\n", " "))
	}
	return b.String()
}

// AxeResults runs axe-core in the page as it is now (WCAG 2.x A and AA
// rules and axe's best practices) and returns every violation found.
func (p *Page) AxeResults() []Violation {
	p.T.Helper()
	if p.vp.NoScript {
		// axe-core's promise settles on the page's timers, which do not
		// run while scripts are disabled: enable them for the check (the
		// page's own scripts, skipped at load, do not run now), then
		// disable them again.
		p.scripts(true)
		defer p.scripts(false)
	}
	if !Eval[bool](p, `typeof window.axe === "object"`) {
		Run(p, chromedp.Evaluate[chromedp.Void](p.b.axe))
	}
	raw := Run(p, chromedp.Evaluate[string](`axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations))`, chromedp.EvalAwaitPromise))
	var vs []Violation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		p.T.Fatalf("browsertest: axe results: %v", err)
	}
	return vs
}

// Axe runs axe-core in the page, logs every violation by impact, and
// fails the test (keeping a screenshot) when one is serious or critical.
// It returns the violations for tests that count them.
func (p *Page) Axe() []Violation {
	p.T.Helper()
	vs := p.AxeResults()
	where := p.locationOr("?")
	var bad []string
	for _, v := range vs {
		p.T.Logf("axe %s: %s", where, v)
		if v.Impact == "serious" || v.Impact == "critical" {
			bad = append(bad, v.String())
		}
	}
	if len(bad) > 0 {
		p.keepScreenshot("axe")
		p.T.Errorf("browsertest: axe found %d serious or critical violations on %s:\n\t%s", len(bad), where, strings.Join(bad, "\n\t"))
	}
	return vs
}
