package stickers_test

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/stickers"
)

func sheet(t *testing.T, n int) []stickers.Sticker {
	t.Helper()
	var ss []stickers.Sticker
	for i := range n {
		u, err := stickers.MachineURL("https://pay.example.com/", "dev-1", fmt.Sprintf("tap%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, stickers.Sticker{URL: u, Name: fmt.Sprintf("Tap %d (Hall B)", i)})
	}
	return ss
}

func decode(t *testing.T, img image.Image) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatalf("gozxing: %v", err)
	}
	return res.GetText()
}

// decodeScan decodes a code as a scanner finds it in a picture (no
// assumption about where its modules lie).
func decodeScan(t *testing.T, img image.Image) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("gozxing: %v", err)
	}
	return res.GetText()
}

type subImager interface {
	SubImage(r image.Rectangle) image.Image
}

// Every code on a PNG sheet of two pages decodes, with gozxing, to its
// machine's URL.
func TestPNGCodesHoldTheURLs(t *testing.T) {
	ss := sheet(t, 14)
	var b bytes.Buffer
	if err := stickers.WritePNG(&b, ss); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if h, w := img.Bounds().Dy(), img.Bounds().Dx(); w != 1654 || h != 4677 {
		t.Errorf("sheet is %d×%d px, want 1654×4677 (two A4 pages, 594 mm, at 200 dpi)", w, h)
	}
	for i, s := range ss {
		got := decode(t, img.(subImager).SubImage(stickers.CodeRect(i)))
		if got != s.URL {
			t.Errorf("code %d holds %q, want %q", i, got, s.URL)
		}
	}
}

func TestMachineURL(t *testing.T) {
	for _, c := range []struct{ base, dev, m, want string }{
		{"https://pay.example.com", "d1", "tap1", "https://pay.example.com/m/d1/tap1"},
		{"https://pay.example.com/", "d1", "tap1", "https://pay.example.com/m/d1/tap1"},
		{"http://127.0.0.1:8080", "d 1", "a/b", "http://127.0.0.1:8080/m/d%201/a%2Fb"},
	} {
		got, err := stickers.MachineURL(c.base, c.dev, c.m)
		if err != nil || got != c.want {
			t.Errorf("MachineURL(%q, %q, %q) = %q, %v, want %q", c.base, c.dev, c.m, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "pay.example.com", "ftp://x", "https://", "https://x/?a=1", "::"} {
		if _, err := stickers.MachineURL(bad, "d", "m"); !errors.Is(err, stickers.ErrURL) {
			t.Errorf("MachineURL(%q) = %v, want ErrURL", bad, err)
		}
	}
}

func TestNothingToPrint(t *testing.T) {
	var b bytes.Buffer
	for name, f := range map[string]func() error{
		"svg": func() error { return stickers.WriteSVG(&b, nil) },
		"png": func() error { return stickers.WritePNG(&b, nil) },
		"pdf": func() error { return stickers.WritePDF(&b, nil) },
	} {
		if err := f(); !errors.Is(err, stickers.ErrNoStickers) || b.Len() != 0 {
			t.Errorf("%s of no stickers = %v, %d bytes written; want ErrNoStickers and nothing", name, err, b.Len())
		}
	}
	long := []stickers.Sticker{{URL: "https://x/" + strings.Repeat("a", 4000), Name: "x"}}
	if err := stickers.WritePDF(&b, long); err == nil || b.Len() != 0 {
		t.Errorf("PDF of a URL too long for a code = %v, %d bytes; want an error and nothing", err, b.Len())
	}
}

// The PDF's cross-reference table points at each object, each page
// names its stickers, and a name with PDF delimiters is escaped.
func TestPDFStructure(t *testing.T) {
	ss := sheet(t, 13)
	ss[0].Name = `Tap (a\b) é`
	var b bytes.Buffer
	if err := stickers.WritePDF(&b, ss); err != nil {
		t.Fatal(err)
	}
	pdf := b.Bytes()
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(pdf, []byte("%%EOF\n")) {
		t.Fatalf("not a PDF: %q…%q", pdf[:10], pdf[len(pdf)-10:])
	}
	m := regexp.MustCompile(`startxref\n(\d+)\n`).FindSubmatch(pdf)
	if m == nil {
		t.Fatal("no startxref")
	}
	xref, _ := strconv.Atoi(string(m[1]))
	if !bytes.HasPrefix(pdf[xref:], []byte("xref\n0 ")) {
		t.Fatalf("startxref %d points at %q", xref, pdf[xref:xref+10])
	}
	entries := regexp.MustCompile(`(\d{10}) 00000 n `).FindAllSubmatch(pdf[xref:], -1)
	if len(entries) != 3+2*2 { // catalog, pages, font, two pages with their content
		t.Errorf("%d objects, want 7", len(entries))
	}
	for i, e := range entries {
		off, _ := strconv.Atoi(string(e[1]))
		if want := fmt.Sprintf("%d 0 obj\n", i+1); !bytes.HasPrefix(pdf[off:], []byte(want)) {
			t.Errorf("xref entry %d points at %q, want %q", i+1, pdf[off:off+8], want)
		}
	}
	if !bytes.Contains(pdf, []byte("/Count 2")) {
		t.Error("want two pages for 13 stickers")
	}
	if !bytes.Contains(pdf, []byte(`(Tap \(a\\b\) \351) Tj`)) {
		t.Error("the name with delimiters and é is not escaped as a WinAnsi literal")
	}
	for _, s := range ss {
		if !bytes.Contains(pdf, []byte("("+stickers.ShortText(s.URL)+") Tj")) {
			t.Errorf("the PDF does not print %s", stickers.ShortText(s.URL))
		}
	}
}

func TestSVGNamesAndURLs(t *testing.T) {
	ss := sheet(t, 2)
	ss[1].Name = `<Tap & "1">`
	var b bytes.Buffer
	if err := stickers.WriteSVG(&b, ss); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	for _, want := range []string{">Tap 0 (Hall B)<", "&lt;Tap &amp; &#34;1&#34;&gt;", ">pay.example.com/m/dev-1/tap1<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %s", want)
		}
	}
}

// The SVG sheet as Chromium draws it: each code, cut out of the rendered
// page, decodes with gozxing to its machine's URL, and the names and
// URLs are text on the page.
func TestSVGInChromium(t *testing.T) {
	b := browsertest.Start(t)
	ss := sheet(t, 3)
	var svg bytes.Buffer
	if err := stickers.WriteSVG(&svg, ss); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><html lang=en><title>sheet</title><body style=margin:0>%s</body></html>",
			strings.TrimPrefix(svg.String(), `<?xml version="1.0" encoding="UTF-8"?>`))
	}))
	t.Cleanup(srv.Close)
	p := b.Page(t, browsertest.Desktop)
	p.Go(srv.URL)
	for i, s := range ss {
		png := p.ElementPNG(fmt.Sprintf("svg > g:nth-of-type(%d) > g", i+1), 2)
		img, err := pngDecode(png)
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(t, img); got != s.URL {
			t.Errorf("code %d as Chromium draws it holds %q, want %q", i, got, s.URL)
		}
	}
	text := p.Text("svg")
	for _, s := range ss {
		if !strings.Contains(text, s.Name) || !strings.Contains(text, stickers.ShortText(s.URL)) {
			t.Errorf("the drawn sheet lacks %q or %q:\n%s", s.Name, stickers.ShortText(s.URL), text)
		}
	}
}

func pngDecode(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }

// The PDF as poppler (an independent PDF implementation) reads it: it
// opens, has a page per twelve stickers, its text is each machine's name
// and URL, and each code, rendered at 200 dpi, decodes to its URL.
func TestPDFInPoppler(t *testing.T) {
	pdftoppm, err1 := exec.LookPath("pdftoppm")
	pdftotext, err2 := exec.LookPath("pdftotext")
	if err1 != nil || err2 != nil {
		svctest.Missing(t, "poppler-utils (pdftoppm, pdftotext)", "apt-get install poppler-utils (scripts/test.sh does as root)")
	}
	ss := sheet(t, 13)
	var b bytes.Buffer
	if err := stickers.WritePDF(&b, ss); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "sheet.pdf")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	text, err := exec.Command(pdftotext, "-layout", file, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v\n%s", err, text)
	}
	for _, s := range ss {
		if !bytes.Contains(text, []byte(s.Name)) || !bytes.Contains(text, []byte(stickers.ShortText(s.URL))) {
			t.Errorf("poppler reads no %q or %q in the PDF:\n%s", s.Name, stickers.ShortText(s.URL), text)
		}
	}
	if out, err := exec.Command(pdftoppm, "-r", "200", "-gray", "-png", "-aa", "no", "-aaVector", "no", file, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v\n%s", err, out)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "page-*.png"))
	if len(pages) != 2 {
		t.Fatalf("poppler rendered %d pages, want 2", len(pages))
	}
	for i, s := range ss {
		f, err := os.ReadFile(pages[i/12])
		if err != nil {
			t.Fatal(err)
		}
		img, err := pngDecode(f)
		if err != nil {
			t.Fatal(err)
		}
		r := stickers.CodeRect(i % 12) // the same place on each A4 page at 200 dpi
		if got := decodeScan(t, img.(subImager).SubImage(r.Inset(-8))); got != s.URL {
			t.Errorf("code %d as poppler draws it holds %q, want %q", i, got, s.URL)
		}
	}
}
