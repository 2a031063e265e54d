// Package chart draws small line and bar charts as inline SVG on the
// server, for the operator console's pages: no script, no style
// attributes (the console's content security policy allows neither), text
// escaped, and an accessible name and summary on every chart.
//
// A chart is an <figure> holding an <svg role="img"> whose <title> is
// Opts.Title and whose <desc> summarises the data in words, followed by a
// <details> element with the same data as a table, so a reader who cannot
// see the drawing has the numbers. Series are told apart by dash pattern
// and point marker as well as colour (WCAG 1.4.1). Colours come from
// presentation attributes and classes (chart-s0, chart-s1, …), which a
// style sheet may override.
//
//	html := chart.Line([]chart.Series{{Name: "Signal (dBm)", Points: pts}}, chart.Opts{Title: "Signal, last 24 h"})
//	html := chart.Bars([]chart.Bar{{Label: "Mon", Value: 1250, Text: "12.50 EUR"}}, chart.Opts{Title: "Revenue by day", YFormat: eur})
package chart
