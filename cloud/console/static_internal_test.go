package console

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"strings"
	"testing"
)

// The vendored scripts the console serves are exactly those
// scripts/vendor-htmx.sh fetched and verified: every file named in
// static/SHA256SUMS is embedded with that digest, and the layout loads
// only embedded scripts.
func TestVendoredStaticMatchesSums(t *testing.T) {
	sums, err := fs.ReadFile(staticFS, "static/SHA256SUMS")
	if err != nil {
		t.Fatalf("static/SHA256SUMS: %v (run scripts/vendor-htmx.sh)", err)
	}
	named := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q: want \"<sha256>  <file>\"", sc.Text())
		}
		b, err := fs.ReadFile(staticFS, "static/"+name)
		if err != nil {
			t.Fatalf("%s named in SHA256SUMS is not embedded: %v", name, err)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("static/%s: sha256 %x, SHA256SUMS says %s", name, got, sum)
		}
		named[name] = true
	}
	for _, want := range []string{"htmx.min.js", "sse.js"} {
		if !named[want] {
			t.Errorf("SHA256SUMS does not name %s", want)
		}
	}
	versions, _ := fs.ReadFile(staticFS, "static/VERSIONS")
	if !bytes.Contains(versions, []byte("htmx.org@2.0.")) || !bytes.Contains(versions, []byte("htmx-ext-sse@2.2.4")) {
		t.Errorf("static/VERSIONS = %q, want htmx.org@2.0.x and htmx-ext-sse@2.2.4", versions)
	}
	layout, _ := fs.ReadFile(templateFS, "templates/layout.html")
	for _, src := range []string{"/console/static/htmx.min.js", "/console/static/sse.js"} {
		if !bytes.Contains(layout, []byte(`src="`+src+`"`)) {
			t.Errorf("layout does not load %s", src)
		}
	}
}
