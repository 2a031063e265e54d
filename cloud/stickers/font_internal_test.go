package stickers

import (
	"image"
	"strings"
	"testing"
)

// render draws s at scale 1 and returns its dots as rows of '#' and '.'.
func render(s string) string {
	img := image.NewGray(image.Rect(0, 0, textWidth(s), 7))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	drawText(img, 0, 0, 1, s)
	var b strings.Builder
	for y := 0; y < 7; y++ {
		for x := 0; x < img.Rect.Dx(); x++ {
			if img.Pix[img.PixOffset(x, y)] == 0 {
				b.WriteByte('#')
			} else {
				b.WriteByte('.')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func TestGlyphs(t *testing.T) {
	for s, want := range map[string]string{
		"H1/": "" +
			"#...#...#........\n" +
			"#...#..##.......#\n" +
			"#...#...#......#.\n" +
			"#####...#.....#..\n" +
			"#...#...#....#...\n" +
			"#...#...#...#....\n" +
			"#...#..###.......\n",
		"é": render("?"), // outside ASCII
	} {
		if got := render(s); got != want {
			t.Errorf("render(%q) =\n%s\nwant\n%s", s, got, want)
		}
	}
}

// A name too long for the sticker at the smallest scale is cut, not
// drawn over its neighbour.
func TestFitTextStaysInside(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 300, 40))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	fitText(img, 50, 5, 100, 4, strings.Repeat("W", 60))
	for y := 0; y < 40; y++ {
		for x := 0; x < 300; x++ {
			if img.Pix[img.PixOffset(x, y)] == 0 && (x < 50 || x >= 150) {
				t.Fatalf("dot at %d,%d outside the 100-pixel box at 50", x, y)
			}
		}
	}
}
