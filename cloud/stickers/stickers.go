package stickers

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"net/url"
	"strings"

	"rsc.io/qr"
)

// Sticker is one machine's sticker.
type Sticker struct {
	URL  string // what the code holds: the machine's web checkout page
	Name string // the machine's name, printed under the code
}

// Errors.
var (
	ErrNoStickers = errors.New("stickers: no machines to print")
	ErrURL        = errors.New("stickers: invalid public URL")
)

// MachineURL returns <publicURL>/m/<device>/<machine>, or ErrURL when
// publicURL is not an absolute http(s) URL.
func MachineURL(publicURL, device, machine string) (string, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: %q: want an absolute http(s) URL such as https://pay.example.com", ErrURL, publicURL)
	}
	return strings.TrimSuffix(publicURL, "/") + "/m/" + url.PathEscape(device) + "/" + url.PathEscape(machine), nil
}

// ShortText is the URL as printed under the code: without the scheme.
func ShortText(u string) string {
	u = strings.TrimPrefix(u, "https://")
	return strings.TrimPrefix(u, "http://")
}

// Level is the QR error-correction level of every code.
const Level = qr.M

// Quiet is the light border around a code, in modules.
const Quiet = 4

// Encode returns the QR code of text, or an error naming its length when
// it is too long for a code.
func Encode(text string) (*qr.Code, error) {
	c, err := qr.Encode(text, Level)
	if err != nil {
		return nil, fmt.Errorf("stickers: qr code of %d bytes: %w", len(text), err)
	}
	return c, nil
}

// modulesPath returns an SVG path drawing the dark modules of c, one
// horizontal run per subpath, offset by Quiet modules, in module units.
func modulesPath(c *qr.Code) string {
	var b strings.Builder
	for y := 0; y < c.Size; y++ {
		for x := 0; x < c.Size; {
			if !c.Black(x, y) {
				x++
				continue
			}
			run := 1
			for x+run < c.Size && c.Black(x+run, y) {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x+Quiet, y+Quiet, run, run)
			x += run
		}
	}
	return b.String()
}

// QRSVG returns an inline SVG element of text's QR code, dark on white
// with its quiet zone, scaled by CSS (a viewBox in modules, no fixed
// size), labelled with title for screen readers.
func QRSVG(text, title string) (string, error) {
	c, err := Encode(text)
	if err != nil {
		return "", err
	}
	n := c.Size + 2*Quiet
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-label="%s" shape-rendering="crispEdges"><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="%s"/></svg>`,
		n, n, html.EscapeString(title), n, n, modulesPath(c)), nil
}

// The sheet's geometry, in millimetres, on A4 portrait.
const (
	pageW, pageH = 210.0, 297.0
	cols, rows   = 3, 4
	cellW, cellH = 63.0, 70.0 // a sticker
	marginX      = (pageW - cols*cellW) / 2
	marginY      = (pageH - rows*cellH) / 2
	codeMM       = 46.0 // the code with its quiet zone
	perPage      = cols * rows
)

// cell returns the top-left corner of sticker i in millimetres from the
// top-left of the sheet (pages stacked for SVG and PNG), and its page.
func cell(i int) (x, y float64, page int) {
	page = i / perPage
	j := i % perPage
	x = marginX + float64(j%cols)*cellW
	y = marginY + float64(j/cols)*cellH
	return x, y, page
}

func check(ss []Sticker) error {
	if len(ss) == 0 {
		return ErrNoStickers
	}
	for _, s := range ss {
		if _, err := Encode(s.URL); err != nil {
			return err
		}
	}
	return nil
}

func pages(n int) int { return (n + perPage - 1) / perPage }

// WriteSVG writes the sheet as one SVG document (pages one under the
// other), sized in millimetres. Nothing is written on error.
func WriteSVG(w io.Writer, ss []Sticker) error {
	if err := check(ss); err != nil {
		return err
	}
	var b bytes.Buffer
	h := pageH * float64(pages(len(ss)))
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%gmm" height="%gmm" viewBox="0 0 %g %g" font-family="Helvetica, Arial, sans-serif">
<rect width="%g" height="%g" fill="#fff"/>
`, pageW, h, pageW, h, pageW, h)
	for i, s := range ss {
		x, y, p := cell(i)
		y += float64(p) * pageH
		c, _ := Encode(s.URL)
		n := float64(c.Size + 2*Quiet)
		k := codeMM / n
		fmt.Fprintf(&b, `<g><rect x="%g" y="%g" width="%g" height="%g" rx="3" fill="none" stroke="#999" stroke-width="0.2" stroke-dasharray="1 1"/>
<g transform="translate(%g %g) scale(%g)" shape-rendering="crispEdges"><rect width="%g" height="%g" fill="#fff"/><path fill="#000" d="%s"/></g>
<text x="%g" y="%g" font-size="5" font-weight="bold" text-anchor="middle">%s</text>
<text x="%g" y="%g" font-size="3" text-anchor="middle">%s</text></g>
`, x+1, y+1, cellW-2, cellH-2,
			x+(cellW-codeMM)/2, y+4, k, n, n, modulesPath(c),
			x+cellW/2, y+4+codeMM+7, html.EscapeString(s.Name),
			x+cellW/2, y+4+codeMM+13, html.EscapeString(ShortText(s.URL)))
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}
