package main

import (
	"bytes"
	"image"
	"image/color"
	"regexp"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	gzqr "github.com/makiuchi-d/gozxing/qrcode"
)

// ansi matches the colour escapes writeQR adds on a terminal.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// qrPixels turns writeQR's text back into modules: one column per
// character, two rows per line (the top and bottom half of the cell). It
// fails on a character writeQR does not draw.
func qrPixels(t *testing.T, text string) [][]bool {
	t.Helper()
	var px [][]bool
	for i, line := range strings.Split(strings.TrimSuffix(ansi.ReplaceAllString(text, ""), "\n"), "\n") {
		top, bot := []bool{}, []bool{}
		for _, r := range line {
			var a, b bool
			switch string(r) {
			case qrDarkDark:
				a, b = true, true
			case qrDarkLight:
				a = true
			case qrLightDark:
				b = true
			case qrLightLight:
			default:
				t.Fatalf("line %d: character %q is not a half block", i, r)
			}
			top, bot = append(top, a), append(bot, b)
		}
		px = append(px, top, bot)
	}
	for i, row := range px {
		if len(row) != len(px[0]) {
			t.Fatalf("row %d is %d modules wide, row 0 %d", i, len(row), len(px[0]))
		}
	}
	return px
}

// decodeQR draws the modules as an image, scale pixels a module, and
// decodes it with gozxing, a port of ZXing that shares no code with the
// encoder.
func decodeQR(t *testing.T, px [][]bool, scale int) string {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, len(px[0])*scale, len(px)*scale))
	for y, row := range px {
		for x, dark := range row {
			c := color.Gray{Y: 255}
			if dark {
				c = color.Gray{Y: 0}
			}
			for dy := 0; dy < scale; dy++ {
				for dx := 0; dx < scale; dx++ {
					img.SetGray(x*scale+dx, y*scale+dy, c)
				}
			}
		}
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := gzqr.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return res.GetText()
}

// quiet returns the number of light rows or columns on each side of the
// code: top, bottom, left, right.
func quiet(px [][]bool) (top, bottom, left, right int) {
	dark := func(y0, y1, x0, x1 int) bool {
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				if px[y][x] {
					return true
				}
			}
		}
		return false
	}
	h, w := len(px), len(px[0])
	for top < h && !dark(top, top+1, 0, w) {
		top++
	}
	for bottom < h && !dark(h-1-bottom, h-bottom, 0, w) {
		bottom++
	}
	for left < w && !dark(0, h, left, left+1) {
		left++
	}
	for right < w && !dark(0, h, w-1-right, w-right) {
		right++
	}
	return
}

// TestQRRoundTrip draws the QR payloads of both QR channels (and a long
// one), with and without colours, and decodes each drawing back with an
// independent decoder: the text must come back exactly, with a quiet zone
// of at least four modules on every side and nothing dark outside it.
func TestQRRoundTrip(t *testing.T) {
	urls := []string{
		"weixin://wxpay/bizpayurl?pr=Zx3kP9qAz",
		"https://qr.alipay.com/bax03431ljhokirwl38f00a7",
		"https://pay.example/checkout?order=T" + strings.Repeat("0123456789abcdef", 12),
	}
	for _, u := range urls {
		for _, color := range []bool{false, true} {
			var b bytes.Buffer
			if err := writeQR(&b, u, color); err != nil {
				t.Fatalf("writeQR(%q): %v", u, err)
			}
			if hasEsc := strings.Contains(b.String(), "\x1b["); hasEsc != color {
				t.Errorf("writeQR(%q, color %v): escapes %v", u, color, hasEsc)
			}
			px := qrPixels(t, b.String())
			if got := decodeQR(t, px, 4); got != u {
				t.Errorf("writeQR(%q, color %v) decodes to %q", u, color, got)
			}
			if tp, bt, l, r := quiet(px); tp < qrQuietZone || bt < qrQuietZone || l < qrQuietZone || r < qrQuietZone {
				t.Errorf("writeQR(%q): quiet zone top %d bottom %d left %d right %d, want >= %d\n%s", u, tp, bt, l, r, qrQuietZone, b.String())
			}
			if w := len(px[0]); w > 80 && len(u) < 100 {
				t.Errorf("writeQR(%q) is %d columns wide", u, w)
			}
		}
	}
}

// TestQRTooLong: a text no QR code can hold is an error, nothing drawn.
func TestQRTooLong(t *testing.T) {
	var b bytes.Buffer
	err := writeQR(&b, strings.Repeat("x", 4000), false)
	if err == nil || !strings.HasPrefix(err.Error(), "phone: qr code of 4000 bytes") {
		t.Errorf("writeQR(4000 bytes) = %v, want an error naming the length", err)
	}
	if b.Len() != 0 {
		t.Errorf("wrote %d bytes on error", b.Len())
	}
}
