// Package browsertest drives real pages in a real headless Chromium for the
// cloud's browser suites (the web checkout now, the operator console
// later): it finds Debian's chromium (or $VEND_CHROMIUM), starts one
// browser per test binary through github.com/chromedp/chromedp, opens
// each page in a browser context of its own (its own cookies) at a phone
// viewport, and runs axe-core (the npm package, installed from the
// lockfile under scripts/axe with npm ci, as cloud/internal/nodepeer
// installs the payment peers) inside the page, failing the test on any
// serious or critical finding.
//
// The browser lives as long as the test binary (chromedp kills it when the
// binary exits); its profile is os.TempDir()/beaconvend-browsertest/
// profile-<pid>, and each start removes the profiles of exited binaries.
//
// When a test that used a page fails, the page's screenshot is written
// to a kept file and its path logged: under $VEND_ARTIFACTS/<test> when
// set, under go test's -artifacts directory (t.ArtifactDir) when that
// flag is given, else under os.TempDir()/beaconvend-browsertest/.
//
// Without chromium, node or the axe-core package a test skips loudly, or
// fails when VEND_REQUIRE_SERVICES is set (scripts/test.sh installs
// chromium with apt-get when it is absent). Test support only.
//
// Use:
//
//	b := browsertest.Start(t)               // once per test (shares one browser per binary)
//	p := b.Page(t, browsertest.Phone)        // a fresh tab, 390×844, JavaScript on
//	p.Go(srv.URL + "/m/dev1/tap1")
//	p.ClickAndLoad("#pay")                   // a real mouse click, then the next page
//	got := p.Text("h1")                      // waits for the element
//	p.WaitText("#units", "1.50 L")           // follows the page's own updates
//	p.Axe()                                  // fails on serious/critical findings
//
// With Viewport.NoScript the page runs without JavaScript; the helpers
// still work (they evaluate through DevTools and send input events).
// chromedp's own element queries (chromedp.Text, WaitVisible…) hang on
// such a page, so use them through Do only on pages with scripts.
package browsertest
