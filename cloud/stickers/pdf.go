package stickers

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// pt converts millimetres to PDF points.
func pt(mm float64) float64 { return mm * 72 / 25.4 }

// pdfText escapes s for a PDF literal string in WinAnsiEncoding: Latin-1
// characters pass as bytes, others become '?'.
func pdfText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '(' || r == ')' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r >= 0xa0 && r <= 0xff:
			fmt.Fprintf(&b, "\\%03o", r)
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}

// helveticaWidth estimates a string's width in Helvetica at size 1
// (0.55 em per character), to centre it.
func helveticaWidth(s string) float64 { return 0.55 * float64(len([]rune(s))) }

// WritePDF writes the sheet as a PDF 1.4 document, a page per twelve
// stickers. Nothing is written on error.
func WritePDF(w io.Writer, ss []Sticker) error {
	if err := check(ss); err != nil {
		return err
	}
	np := pages(len(ss))
	// objects: 1 catalog, 2 pages, 3 font, then per page: page, content
	var objs []string
	kids := make([]string, np)
	for p := 0; p < np; p++ {
		kids[p] = fmt.Sprintf("%d 0 R", 4+2*p)
	}
	objs = append(objs,
		"<< /Type /Catalog /Pages 2 0 R >>",
		fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), np),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
	)
	H := pt(pageH)
	for p := 0; p < np; p++ {
		var c bytes.Buffer
		for i := p * perPage; i < len(ss) && i < (p+1)*perPage; i++ {
			s := ss[i]
			x, y, _ := cell(i)
			// cut line, dashed grey
			fmt.Fprintf(&c, "q 0.6 G 0.5 w [2 2] 0 d %.2f %.2f %.2f %.2f re S Q\n", pt(x+1), H-pt(y+cellH-1), pt(cellW-2), pt(cellH-2))
			code, _ := Encode(s.URL)
			n := float64(code.Size + 2*Quiet)
			m := pt(codeMM) / n
			ox, oy := pt(x+(cellW-codeMM)/2), H-pt(y+4) // top-left of the code
			c.WriteString("0 g\n")
			for qy := 0; qy < code.Size; qy++ {
				for qx := 0; qx < code.Size; {
					if !code.Black(qx, qy) {
						qx++
						continue
					}
					run := 1
					for qx+run < code.Size && code.Black(qx+run, qy) {
						run++
					}
					fmt.Fprintf(&c, "%.3f %.3f %.3f %.3f re\n", ox+float64(qx+Quiet)*m, oy-float64(qy+Quiet+1)*m, float64(run)*m, m)
					qx += run
				}
			}
			c.WriteString("f\n")
			cx := pt(x + cellW/2)
			name, short := pdfText(s.Name), pdfText(ShortText(s.URL))
			fmt.Fprintf(&c, "BT /F1 14 Tf %.2f %.2f Td (%s) Tj ET\n", cx-helveticaWidth(s.Name)*14/2, H-pt(y+4+codeMM+7), name)
			fmt.Fprintf(&c, "BT /F1 8.5 Tf %.2f %.2f Td (%s) Tj ET\n", cx-helveticaWidth(ShortText(s.URL))*8.5/2, H-pt(y+4+codeMM+13), short)
		}
		objs = append(objs,
			fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>", pt(pageW), H, 5+2*p),
			fmt.Sprintf("<< /Length %d >>\nstream\n%sendstream", c.Len(), c.String()),
		)
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	_, err := w.Write(b.Bytes())
	return err
}
