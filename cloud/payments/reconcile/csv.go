package reconcile

import (
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/store"
)

// CSVHeader is the first line WriteCSV writes.
var CSVHeader = []string{"channel", "day", "seq", "kind", "row_kind", "statement_row", "order_no", "refund_no", "provider_id",
	"at", "their_amount", "their_currency", "their_status", "our_amount", "our_currency", "our_status", "fee", "action",
	"detail", "resolved_at", "resolution"}

// WriteCSV writes a run's outcomes as CSV (RFC 4180): CSVHeader, then
// one line per outcome in order. Amounts are exact decimals in major
// units (payments.FormatMinor: "12.34", "-0.50"), empty when that side
// has no such row; times are RFC 3339 in the provider's time zone (loc;
// China Standard Time when nil). A text cell that a spreadsheet would
// take for a formula (=, +, -, @ first) gets a leading apostrophe;
// amounts never need it.
func WriteCSV(w io.Writer, run store.ReconRun, outs []Outcome, loc *time.Location) error {
	if loc == nil {
		loc = ChinaStandardTime
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, o := range outs {
		their, theirCur := amountCells(o.TheirAmount)
		ours, ourCur := amountCells(o.OurAmount)
		rec := []string{
			text(run.Channel), run.Day, strconv.Itoa(o.Seq), o.Kind, o.RowKind, strconv.Itoa(o.StmtRow),
			text(o.OrderNo), text(o.RefundNo), text(o.ProviderID), timeCell(o.At, loc),
			their, theirCur, text(o.TheirStatus), ours, ourCur, text(o.OurStatus), payments.FormatMinor(o.Fee),
			o.Action, text(o.Detail), timeCell(o.ResolvedAt, loc), text(o.Resolution),
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func amountCells(a *vend.Amount) (string, string) {
	if a == nil {
		return "", ""
	}
	return payments.FormatMinor(a.Minor), text(string(a.Currency))
}

func timeCell(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format(time.RFC3339)
}

// text defuses a cell a spreadsheet would evaluate.
func text(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
