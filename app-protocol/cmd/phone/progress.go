package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"beaconvend/app-protocol/phoneapi"
)

// view shows a running session.
type view interface {
	Update(s phoneapi.Session) // the latest totals and state
	Note(msg string)           // a line of its own (e.g. "stopping")
	Finish()                   // the session is over
}

// newView picks the display: -progress bar, or auto on a terminal, redraws
// one bar in place (github.com/schollz/progressbar/v3); otherwise a line is
// printed per state change and at most every lineEvery while metering, so
// logs and pipes stay readable.
func (m *Main) newView(s *phoneapi.Session) view {
	tty := false
	if f, ok := m.out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}
	if m.Progress == "bar" || m.Progress == "auto" && tty {
		return newBarView(m.out, s)
	}
	return &lineView{w: m.out, hold: s.Hold, capUnits: s.CapUnits, unit: s.Unit, now: time.Now}
}

// lineEvery is the most often lineView prints progress while units grow.
const lineEvery = 500 * time.Millisecond

// lineView prints formatProgress lines.
type lineView struct {
	w        io.Writer
	hold     phoneapi.Amount
	capUnits uint64
	unit     phoneapi.Unit
	now      func() time.Time

	state      phoneapi.SessionState
	units      uint64
	printed    uint64
	lastPrint  time.Time
	everPrints bool
}

func (v *lineView) Update(s phoneapi.Session) {
	stateChanged := s.State != v.state
	v.state, v.units = s.State, s.Units
	if stateChanged {
		fmt.Fprintf(v.w, "  %-10s %s\n", s.State, formatProgress(s.Units, v.capUnits, v.unit, s.Amount, v.hold, 20))
		v.printed, v.lastPrint, v.everPrints = s.Units, v.now(), true
		return
	}
	if s.Units != v.printed && v.now().Sub(v.lastPrint) >= lineEvery {
		fmt.Fprintf(v.w, "  %-10s %s\n", "", formatProgress(s.Units, v.capUnits, v.unit, s.Amount, v.hold, 20))
		v.printed, v.lastPrint, v.everPrints = s.Units, v.now(), true
	}
}

func (v *lineView) Note(msg string) { fmt.Fprintf(v.w, "  %s\n", msg) }
func (v *lineView) Finish()         {}

// barView redraws one progress bar of units against the cap, with the
// money spent against the hold as its description.
type barView struct {
	w    io.Writer
	bar  *progressbar.ProgressBar
	hold phoneapi.Amount
	last phoneapi.Session
}

func newBarView(w io.Writer, s *phoneapi.Session) *barView {
	bar := progressbar.NewOptions64(int64(max(s.CapUnits, 1)),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString(s.Unit.String()),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetDescription(describe(s.State, s.Amount, s.Hold)),
	)
	return &barView{w: w, bar: bar, hold: s.Hold, last: *s}
}

func describe(st phoneapi.SessionState, amount, hold phoneapi.Amount) string {
	return fmt.Sprintf("%-10s %s/%s", st, minorString(amount.Minor), hold)
}

func (v *barView) Update(s phoneapi.Session) {
	v.last = s
	v.bar.Describe(describe(s.State, s.Amount, v.hold))
	_ = v.bar.Set64(int64(min(s.Units, uint64(v.bar.GetMax64())))) // renders both
}

func (v *barView) Note(msg string) {
	_ = v.bar.Clear()
	fmt.Fprintf(v.w, "%s\n", msg)
	_ = v.bar.RenderBlank()
}

// Finish replaces the bar with a final line that stays on screen.
func (v *barView) Finish() {
	_ = v.bar.Clear()
	s := v.last
	fmt.Fprintf(v.w, "\r%-10s %s\n", s.State, formatProgress(s.Units, s.CapUnits, s.Unit, s.Amount, v.hold, 30))
}
