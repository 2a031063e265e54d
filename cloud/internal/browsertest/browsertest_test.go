package browsertest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/cloud/internal/browsertest"
)

// serve serves one HTML page per path.
func serve(t *testing.T, pages map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

const good = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Good</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>Hello</h1><label for="a">Amount</label><input id="a" name="a"><p id="w"></p></main></body></html>`

// An image without alt text and an input without a label: axe calls both
// critical.
const bad = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Bad</title></head>
<body><main><h1>Hello</h1><img src="/x.png"><input name="a"></main></body></html>`

func TestPhonePage(t *testing.T) {
	b := browsertest.Start(t)
	base := serve(t, map[string]string{"/": good})
	p := b.Page(t, browsertest.Phone)
	p.Go(base + "/")
	if got := p.Text("h1"); got != "Hello" {
		t.Errorf("h1 = %q, want Hello", got)
	}
	if w := browsertest.Eval[int](p, "window.innerWidth"); w != 390 {
		t.Errorf("innerWidth = %d, want 390", w)
	}
	if vs := p.Axe(); len(vs) != 0 {
		t.Errorf("axe found %d violations on a clean page: %v", len(vs), vs)
	}
}

// The axe check must find real violations, or a clean result proves
// nothing; run against a bad page in a subtest whose failure is expected.
func TestAxeFindsViolations(t *testing.T) {
	b := browsertest.Start(t)
	base := serve(t, map[string]string{"/": bad})
	p := b.Page(t, browsertest.Phone)
	p.Go(base + "/")
	vs := p.AxeResults()
	ids := map[string]string{}
	for _, v := range vs {
		ids[v.ID] = v.Impact
	}
	if ids["image-alt"] != "critical" || ids["label"] != "critical" {
		t.Errorf("axe on a page with an unlabelled input and an image without alt found %v, want image-alt and label, critical", ids)
	}
}

func TestNoScript(t *testing.T) {
	b := browsertest.Start(t)
	page := `<!doctype html><html lang="en"><head><title>x</title><script src="/s.js"></script></head><body><main><h1 id="h">static</h1></main></body></html>`
	// a script that changes the heading when it runs
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/s.js" {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, `document.addEventListener("DOMContentLoaded", () => { document.getElementById("h").textContent = "scripted" })`)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	}))
	t.Cleanup(srv.Close)
	on := b.Page(t, browsertest.Phone)
	on.Go(srv.URL + "/")
	if got := on.WaitText("h1", "scripted"); got != "scripted" {
		t.Errorf("with scripts, h1 = %q", got)
	}
	vp := browsertest.Phone
	vp.NoScript = true
	off := b.Page(t, vp)
	off.Go(srv.URL + "/")
	if got := off.Text("h1"); got != "static" {
		t.Errorf("with scripts disabled, h1 = %q, want static", got)
	}
	off.Axe() // runs with scripts on for a moment
	off.Go(srv.URL + "/")
	if got := off.Text("h1"); got != "static" {
		t.Errorf("after an axe check and a reload, h1 = %q: scripts are on again", got)
	}
}

// A failing test keeps a screenshot of its page: run a test that fails in
// a child process and look for the file it names.
func TestScreenshotOfFailedTest(t *testing.T) {
	if os.Getenv("BROWSERTEST_FAIL_CHILD") != "" {
		b := browsertest.Start(t)
		p := b.Page(t, browsertest.Phone)
		p.Go(serve(t, map[string]string{"/": good}) + "/")
		t.Fatal("failing on purpose")
	}
	browsertest.Start(t) // skip here, not in the child, when there is no browser
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec(exe, "-test.run=^TestScreenshotOfFailedTest$", "-test.v")
	cmd.Env = append(os.Environ(), "BROWSERTEST_FAIL_CHILD=1", "VEND_ARTIFACTS="+dir)
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "failing on purpose") {
		t.Fatalf("child did not fail as planned:\n%s", out)
	}
	shots, _ := filepath.Glob(filepath.Join(dir, "TestScreenshotOfFailedTest", "failed-*"))
	if len(shots) != 1 {
		t.Fatalf("screenshots = %v, want one; child said:\n%s", shots, out)
	}
	if !strings.Contains(string(out), shots[0]) {
		t.Errorf("child did not log the screenshot's path %s:\n%s", shots[0], out)
	}
	if fi, err := os.Stat(shots[0]); err != nil || fi.Size() < 1000 {
		t.Errorf("screenshot %s: %v, %v", shots[0], fi, err)
	}
}

func exec(name string, args ...string) *osexec.Cmd { return osexec.Command(name, args...) }
