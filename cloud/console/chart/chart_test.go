package chart_test

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"beaconvend/cloud/console/chart"
)

// wellFormed parses h as XML (the SVG and its figure must nest properly)
// and returns the count of each element.
func wellFormed(t *testing.T, h string) map[string]int {
	t.Helper()
	// <details> is HTML, not XML-special; the whole fragment is XHTML-clean.
	d := xml.NewDecoder(strings.NewReader(h))
	count := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well formed: %v\n%s", err, h)
		}
		if se, ok := tok.(xml.StartElement); ok {
			count[se.Name.Local]++
		}
	}
	return count
}

func TestLine(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var a, b []chart.Point
	for i := 0; i < 10; i++ {
		a = append(a, chart.Point{X: t0.Add(time.Duration(i) * time.Minute), Y: -70 - float64(i)})
		b = append(b, chart.Point{X: t0.Add(time.Duration(i) * time.Minute), Y: float64(i % 3)})
	}
	b = append(b, chart.Point{X: t0.Add(11 * time.Minute), Y: math.NaN()}) // skipped, not drawn as garbage
	h := string(chart.Line([]chart.Series{{Name: "Signal <dBm>", Points: a}, {Name: "Outbox", Points: b}},
		chart.Opts{Title: "Device & signal", ID: "c1"}))
	n := wellFormed(t, h)
	if n["svg"] != 3 || n["path"] < 2 || n["circle"] < 10 || n["rect"] < 10 || n["table"] != 1 {
		t.Fatalf("elements = %v", n)
	}
	for _, want := range []string{`role="img"`, `aria-labelledby="c1-t c1-d"`, `<title id="c1-t">Device &amp; signal</title>`,
		`Signal &lt;dBm&gt;: latest -79, lowest -79, highest -70.`, `stroke-dasharray="6 3"`, `>12:00<`, `>12:09<`,
		`<th scope="row">2026-03-01 12:09:00</th><td>-79</td><td>0</td>`} {
		if !strings.Contains(h, want) {
			t.Errorf("chart lacks %s", want)
		}
	}
	for _, bad := range []string{"style=", "<script", "NaN", "Inf"} {
		if strings.Contains(h, bad) {
			t.Errorf("chart contains %q", bad)
		}
	}
}

func TestLineOnePointAndEmpty(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := string(chart.Line([]chart.Series{{Name: "x", Points: []chart.Point{{X: t0, Y: 5}}}}, chart.Opts{Title: "one"}))
	wellFormed(t, h)
	if strings.Contains(h, "NaN") || !strings.Contains(h, "1 points from 12:00 to 12:00") {
		t.Fatalf("one point: %s", h)
	}
	h = string(chart.Line(nil, chart.Opts{Title: "none", Empty: "Nothing heard yet."}))
	wellFormed(t, h)
	if !strings.Contains(h, "Nothing heard yet.") || strings.Contains(h, "<path") {
		t.Fatalf("empty: %s", h)
	}
}

func TestBars(t *testing.T) {
	eur := formatEUR
	bars := []chart.Bar{{Label: "Mon", Value: 1250}, {Label: "Tue", Value: 0}, {Label: "Wed", Value: -5}, {Label: "Thu <b>", Value: 300, Text: "3.00 EUR"}}
	h := string(chart.Bars(bars, chart.Opts{Title: "Revenue", YFormat: eur}))
	n := wellFormed(t, h)
	if n["rect"] != 4 || n["tr"] != 5 {
		t.Fatalf("elements = %v", n)
	}
	for _, want := range []string{`<title>Mon: 12.50 EUR</title>`, `<title>Thu &lt;b&gt;: 3.00 EUR</title>`,
		`highest Mon (12.50 EUR)`, `<th scope="row">Wed</th><td>-0.05 EUR</td>`} {
		if !strings.Contains(h, want) {
			t.Errorf("chart lacks %s\n%s", want, h)
		}
	}
	if strings.Contains(h, `height="-`) {
		t.Error("a negative bar has a negative height")
	}
	h = string(chart.Bars(nil, chart.Opts{}))
	wellFormed(t, h)
	if !strings.Contains(h, "No data yet.") {
		t.Fatal("empty bars chart says nothing")
	}
}

func formatEUR(v float64) string {
	m := int64(math.Round(v))
	sign := ""
	if m < 0 {
		sign, m = "-", -m
	}
	return fmt.Sprintf("%s%d.%02d EUR", sign, m/100, m%100)
}
