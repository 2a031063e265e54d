package chart

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Point is one value of a line series at a time.
type Point struct {
	X time.Time
	Y float64
}

// Series is one line of a line chart.
type Series struct {
	Name   string  // shown in the legend and the table header
	Points []Point // in any order; drawn sorted by X as given (callers pass them oldest first)
}

// Bar is one bar of a bar chart.
type Bar struct {
	Label string  // the category under the bar (a day, a device, a location)
	Value float64 // bar height; negative values are drawn as zero
	Text  string  // the value as a person reads it ("12.50 EUR"); Opts.YFormat(Value) when empty
}

// Opts configure a chart. Title is required in spirit: it is the chart's
// accessible name ("Chart" when empty).
type Opts struct {
	Title string // accessible name and caption
	// Desc is added to the generated summary in the <desc>.
	Desc          string
	Width, Height int                    // viewBox size in pixels; 640×240 when zero
	YFormat       func(float64) string   // axis and table values; %g when nil
	XFormat       func(time.Time) string // line chart time labels; by span (15:04, Jan 2 15:04, Jan 2) when nil
	ZeroBased     bool                   // the y axis includes 0 (always true for bars)
	Empty         string                 // what is said when there is no data; "No data yet." when empty
	ID            string                 // element id prefix; a unique one when empty
	Location      *time.Location         // zone of time labels; UTC when nil
}

var seq atomic.Uint64

// palette: colours with at least 3:1 contrast on white, each paired with a
// dash pattern and a marker so colour is never the only difference.
var palette = []struct{ colour, dash, marker string }{
	{"#1f5fa8", "", "circle"},
	{"#b3470e", "6 3", "square"},
	{"#2e7d32", "2 3", "triangle"},
	{"#6a1b9a", "8 3 2 3", "diamond"},
}

func (o *Opts) defaults() {
	if o.Width <= 0 {
		o.Width = 640
	}
	if o.Height <= 0 {
		o.Height = 240
	}
	if o.Title == "" {
		o.Title = "Chart"
	}
	if o.Empty == "" {
		o.Empty = "No data yet."
	}
	if o.YFormat == nil {
		o.YFormat = func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.ID == "" {
		o.ID = "chart-" + strconv.FormatUint(seq.Add(1), 10)
	}
}

// margins of the plot area inside the viewBox.
const (
	padL, padR, padT, padB = 56, 12, 12, 28
)

func esc(s string) string { return html.EscapeString(s) }

func num(f float64) string { return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64) }

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) {
		if lo == 0 {
			return []float64{0, 1}
		}
		d := math.Abs(lo) / 2
		lo, hi = lo-d, hi+d
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	start := math.Floor(lo/step) * step
	var out []float64
	for v := start; v <= hi+step*0.5 && len(out) < 4*n; v += step {
		out = append(out, math.Round(v/step)*step)
	}
	if out[len(out)-1] < hi {
		out = append(out, out[len(out)-1]+step)
	}
	return out
}

func (o *Opts) timeFormat(span time.Duration) func(time.Time) string {
	if o.XFormat != nil {
		return o.XFormat
	}
	layout := "Jan 2"
	switch {
	case span <= 36*time.Hour:
		layout = "15:04"
	case span <= 7*24*time.Hour:
		layout = "Jan 2 15:04"
	}
	return func(t time.Time) string { return t.In(o.Location).Format(layout) }
}

func open(b *strings.Builder, o *Opts, desc string) {
	fmt.Fprintf(b, `<figure class="chart" id="%s">`, esc(o.ID))
	fmt.Fprintf(b, `<figcaption id="%s-cap">%s</figcaption>`, esc(o.ID), esc(o.Title))
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s-t %s-d" class="chart-svg" preserveAspectRatio="xMinYMin meet">`,
		o.Width, o.Height, o.Width, o.Height, esc(o.ID), esc(o.ID))
	fmt.Fprintf(b, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, esc(o.ID), esc(o.Title), esc(o.ID), esc(strings.TrimSpace(desc+" "+o.Desc)))
}

func emptyChart(o *Opts) template.HTML {
	var b strings.Builder
	open(&b, o, o.Empty)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#333" font-size="14">%s</text></svg></figure>`,
		o.Width/2, o.Height/2, esc(o.Empty))
	return template.HTML(b.String())
}

// yAxis draws the grid lines and labels of ticks and returns the value →
// y mapping.
func yAxis(b *strings.Builder, o *Opts, ticks []float64) func(float64) float64 {
	lo, hi := ticks[0], ticks[len(ticks)-1]
	top, bottom := float64(padT), float64(o.Height-padB)
	y := func(v float64) float64 { return bottom - (v-lo)/(hi-lo)*(bottom-top) }
	b.WriteString(`<g class="chart-axis" font-size="11" fill="#333">`)
	for _, t := range ticks {
		yy := num(y(t))
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%s" y2="%s" stroke="#d0d0d0" stroke-width="1"/>`, padL, o.Width-padR, yy, yy)
		fmt.Fprintf(b, `<text x="%d" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, padL-6, yy, esc(o.YFormat(t)))
	}
	b.WriteString(`</g>`)
	return y
}

func bounds(vals []float64, zero bool) (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if zero {
		lo, hi = math.Min(lo, 0), math.Max(hi, 0)
	}
	return lo, hi
}

func marker(kind string, x, y float64, colour string) string {
	switch kind {
	case "square":
		return fmt.Sprintf(`<rect x="%s" y="%s" width="7" height="7" fill="%s"/>`, num(x-3.5), num(y-3.5), colour)
	case "triangle":
		return fmt.Sprintf(`<path d="M%s %sL%s %sL%s %sZ" fill="%s"/>`, num(x), num(y-4.5), num(x+4.5), num(y+3.5), num(x-4.5), num(y+3.5), colour)
	case "diamond":
		return fmt.Sprintf(`<path d="M%s %sL%s %sL%s %sL%s %sZ" fill="%s"/>`, num(x), num(y-5), num(x+5), num(y), num(x), num(y+5), num(x-5), num(y), colour)
	}
	return fmt.Sprintf(`<circle cx="%s" cy="%s" r="3.5" fill="%s"/>`, num(x), num(y), colour)
}

// Line draws series over time. Points of one series are joined in the
// order given; at most 24 markers are drawn per series (every point when
// there are fewer). With no points at all it draws Opts.Empty.
func Line(series []Series, o Opts) template.HTML {
	o.defaults()
	var vals []float64
	var t0, t1 time.Time
	n := 0
	for _, s := range series {
		for _, p := range s.Points {
			if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
				continue
			}
			vals = append(vals, p.Y)
			if t0.IsZero() || p.X.Before(t0) {
				t0 = p.X
			}
			if t1.IsZero() || p.X.After(t1) {
				t1 = p.X
			}
			n++
		}
	}
	if n == 0 {
		return emptyChart(&o)
	}
	span := t1.Sub(t0)
	xf := o.timeFormat(span)
	var desc strings.Builder
	fmt.Fprintf(&desc, "%d points from %s to %s.", n, xf(t0), xf(t1))
	for _, s := range series {
		v := ys(s.Points)
		if len(v) == 0 {
			continue
		}
		lo, hi := bounds(v, false)
		last := v[len(v)-1]
		fmt.Fprintf(&desc, " %s: latest %s, lowest %s, highest %s.", s.Name, o.YFormat(last), o.YFormat(lo), o.YFormat(hi))
	}
	var b strings.Builder
	open(&b, &o, desc.String())
	lo, hi := bounds(vals, o.ZeroBased)
	y := yAxis(&b, &o, niceTicks(lo, hi, 4))
	left, right := float64(padL), float64(o.Width-padR)
	x := func(t time.Time) float64 {
		if span <= 0 {
			return (left + right) / 2
		}
		return left + float64(t.Sub(t0))/float64(span)*(right-left)
	}
	// Time labels: about five, at even fractions of the span.
	b.WriteString(`<g class="chart-axis" font-size="11" fill="#333">`)
	labels := 5
	if span <= 0 {
		labels = 1
	}
	for i := 0; i < labels; i++ {
		t := t0
		if labels > 1 {
			t = t0.Add(span * time.Duration(i) / time.Duration(labels-1))
		}
		anchor := "middle"
		switch {
		case labels > 1 && i == 0:
			anchor = "start"
		case labels > 1 && i == labels-1:
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="%s">%s</text>`, num(x(t)), o.Height-8, anchor, esc(xf(t)))
	}
	b.WriteString(`</g>`)
	for i, s := range series {
		p := palette[i%len(palette)]
		fmt.Fprintf(&b, `<g class="chart-series chart-s%d">`, i)
		var d strings.Builder
		for j, pt := range s.Points {
			if math.IsNaN(pt.Y) || math.IsInf(pt.Y, 0) {
				continue
			}
			cmd := "L"
			if j == 0 || d.Len() == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%s %s", cmd, num(x(pt.X)), num(y(pt.Y)))
		}
		dash := ""
		if p.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, p.dash)
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"%s/>`, d.String(), p.colour, dash)
		every := max(1, (len(s.Points)+23)/24)
		for j, pt := range s.Points {
			if (j%every == 0 || j == len(s.Points)-1) && !math.IsNaN(pt.Y) && !math.IsInf(pt.Y, 0) {
				b.WriteString(marker(p.marker, x(pt.X), y(pt.Y), p.colour))
			}
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	legend(&b, series)
	// The data as a table.
	fmt.Fprintf(&b, `<details class="chart-data"><summary>%s: data</summary><table><thead><tr><th scope="col">Time</th>`, esc(o.Title))
	for _, s := range series {
		fmt.Fprintf(&b, `<th scope="col">%s</th>`, esc(s.Name))
	}
	b.WriteString(`</tr></thead><tbody>`)
	for _, row := range table(series) {
		fmt.Fprintf(&b, `<tr><th scope="row">%s</th>`, esc(row.t.In(o.Location).Format("2006-01-02 15:04:05")))
		for _, v := range row.v {
			if v == nil {
				b.WriteString(`<td>–</td>`)
			} else {
				fmt.Fprintf(&b, `<td>%s</td>`, esc(o.YFormat(*v)))
			}
		}
		b.WriteString(`</tr>`)
	}
	b.WriteString(`</tbody></table></details></figure>`)
	return template.HTML(b.String())
}

func ys(ps []Point) []float64 {
	out := make([]float64, 0, len(ps))
	for _, p := range ps {
		if !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) {
			out = append(out, p.Y)
		}
	}
	return out
}

func legend(b *strings.Builder, series []Series) {
	if len(series) < 2 && (len(series) == 0 || series[0].Name == "") {
		return
	}
	b.WriteString(`<ul class="chart-legend">`)
	for i, s := range series {
		p := palette[i%len(palette)]
		dash := ""
		if p.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, p.dash)
		}
		fmt.Fprintf(b, `<li><svg xmlns="http://www.w3.org/2000/svg" width="28" height="12" viewBox="0 0 28 12" aria-hidden="true" focusable="false"><line x1="0" x2="28" y1="6" y2="6" stroke="%s" stroke-width="2"%s/>%s</svg> %s</li>`,
			p.colour, dash, marker(p.marker, 14, 6, p.colour), esc(s.Name))
	}
	b.WriteString(`</ul>`)
}

type tableRow struct {
	t time.Time
	v []*float64
}

// table joins the series on equal times, oldest first.
func table(series []Series) []tableRow {
	idx := map[int64]int{}
	var rows []tableRow
	for i, s := range series {
		for _, p := range s.Points {
			if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
				continue
			}
			k := p.X.UnixNano()
			j, ok := idx[k]
			if !ok {
				j = len(rows)
				idx[k] = j
				rows = append(rows, tableRow{t: p.X, v: make([]*float64, len(series))})
			}
			y := p.Y
			rows[j].v[i] = &y
		}
	}
	// insertion sort by time: series are near-sorted already.
	for i := 1; i < len(rows); i++ {
		for j := i; j > 0 && rows[j].t.Before(rows[j-1].t); j-- {
			rows[j], rows[j-1] = rows[j-1], rows[j]
		}
	}
	return rows
}

// Bars draws one bar per category, left to right in the order given,
// from zero. Each bar carries its label and value as a tooltip (<title>);
// category labels are thinned out when they would overlap. With no bars
// it draws Opts.Empty.
func Bars(bars []Bar, o Opts) template.HTML {
	o.defaults()
	if len(bars) == 0 {
		return emptyChart(&o)
	}
	text := func(b Bar) string {
		if b.Text != "" {
			return b.Text
		}
		return o.YFormat(b.Value)
	}
	vals := make([]float64, len(bars))
	top := 0
	for i, br := range bars {
		vals[i] = math.Max(0, br.Value)
		if math.IsNaN(br.Value) || math.IsInf(br.Value, 0) {
			vals[i] = 0
		}
		if vals[i] > vals[top] {
			top = i
		}
	}
	desc := fmt.Sprintf("%d bars, from %s to %s; highest %s (%s).", len(bars), bars[0].Label, bars[len(bars)-1].Label, bars[top].Label, text(bars[top]))
	var b strings.Builder
	open(&b, &o, desc)
	lo, hi := bounds(vals, true)
	y := yAxis(&b, &o, niceTicks(lo, hi, 4))
	left, right := float64(padL), float64(o.Width-padR)
	slot := (right - left) / float64(len(bars))
	w := math.Max(1, slot*0.7)
	// Label every k-th bar so labels (about 7 px per character) fit.
	longest := 1
	for _, br := range bars {
		longest = max(longest, len([]rune(br.Label)))
	}
	k := max(1, int(math.Ceil(float64(longest*7+6)/slot)))
	p := palette[0]
	b.WriteString(`<g class="chart-series chart-s0">`)
	for i, br := range bars {
		x0 := left + slot*float64(i) + (slot-w)/2
		y0 := y(vals[i])
		fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s: %s</title></rect>`,
			num(x0), num(y0), num(w), num(math.Max(0, y(0)-y0)), p.colour, esc(br.Label), esc(text(br)))
	}
	b.WriteString(`</g><g class="chart-axis" font-size="11" fill="#333">`)
	for i, br := range bars {
		if i%k != 0 {
			continue
		}
		fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="middle">%s</text>`, num(left+slot*(float64(i)+0.5)), o.Height-8, esc(br.Label))
	}
	b.WriteString(`</g></svg>`)
	fmt.Fprintf(&b, `<details class="chart-data"><summary>%s: data</summary><table><thead><tr><th scope="col">Category</th><th scope="col">Value</th></tr></thead><tbody>`, esc(o.Title))
	for _, br := range bars {
		fmt.Fprintf(&b, `<tr><th scope="row">%s</th><td>%s</td></tr>`, esc(br.Label), esc(text(br)))
	}
	b.WriteString(`</tbody></table></details></figure>`)
	return template.HTML(b.String())
}
