package stickers

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"io"
)

// DPI is the PNG sheet's resolution.
const DPI = 200

func px(mm float64) int { return int(mm*DPI/25.4 + 0.5) }

// CodeRect returns where the code of sticker i (with its quiet zone)
// lies on the PNG sheet, in pixels.
func CodeRect(i int) image.Rectangle {
	x, y, p := cell(i)
	y += float64(p) * pageH
	x0, y0 := px(x+(cellW-codeMM)/2), px(y+4)
	return image.Rect(x0, y0, x0+px(codeMM), y0+px(codeMM))
}

// WritePNG writes the sheet as one grey-scale PNG at DPI, pages stacked.
// Nothing is written on error.
func WritePNG(w io.Writer, ss []Sticker) error {
	if err := check(ss); err != nil {
		return err
	}
	img := image.NewGray(image.Rect(0, 0, px(pageW), px(pageH*float64(pages(len(ss))))))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	grey := color.Gray{Y: 0x99}
	for i, s := range ss {
		x, y, p := cell(i)
		y += float64(p) * pageH
		// dashed cut line
		x0, y0, x1, y1 := px(x+1), px(y+1), px(x+cellW-1), px(y+cellH-1)
		for t := x0; t <= x1; t++ {
			if (t/8)%2 == 0 {
				img.SetGray(t, y0, grey)
				img.SetGray(t, y1, grey)
			}
		}
		for t := y0; t <= y1; t++ {
			if (t/8)%2 == 0 {
				img.SetGray(x0, t, grey)
				img.SetGray(x1, t, grey)
			}
		}
		c, _ := Encode(s.URL)
		r := CodeRect(i)
		n := c.Size + 2*Quiet
		m := r.Dx() / n // whole pixels per module: crisp edges
		off := (r.Dx() - m*n) / 2
		for qy := 0; qy < c.Size; qy++ {
			for qx := 0; qx < c.Size; qx++ {
				if !c.Black(qx, qy) {
					continue
				}
				bx, by := r.Min.X+off+(qx+Quiet)*m, r.Min.Y+off+(qy+Quiet)*m
				for dy := 0; dy < m; dy++ {
					row := img.Pix[(by+dy)*img.Stride:]
					for dx := 0; dx < m; dx++ {
						row[bx+dx] = 0
					}
				}
			}
		}
	}
	for i, s := range ss {
		x, y, p := cell(i)
		y += float64(p) * pageH
		w := px(cellW - 6)
		fitText(img, px(x+3), px(y+4+codeMM+3), w, 4, s.Name)
		fitText(img, px(x+3), px(y+4+codeMM+11), w, 2, ShortText(s.URL))
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
