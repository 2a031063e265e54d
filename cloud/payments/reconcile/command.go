package reconcile

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/atomicfile"
	"beaconvend/cloud/payments"
)

// ErrUnbalanced is a day that was reconciled and stored but does not
// balance (discrepancies, totals off, or provisional): the command exits
// non-zero with it so a cron job or an operator notices.
var ErrUnbalanced = vend.E(vend.Conflict, "recon.discrepancies", "reconcile: the day does not balance")

// CommandEnv is what the reconcile command needs from the program.
type CommandEnv struct {
	// Reconciler does the work.
	Reconciler *Reconciler
	// Source returns the configured channel of that name; an unknown or
	// disabled channel is an error naming it.
	Source func(channel string) (Source, error)
}

// CommandUsage is the command's synopsis.
const CommandUsage = "cloud reconcile -channel C -day YYYY-MM-DD [-csv FILE|-]"

// Command runs `cloud reconcile -channel C -day YYYY-MM-DD [-csv FILE]`
// (args without the word "reconcile"): it reconciles the channel's day
// (again, if it was before: the stored results are replaced), prints a
// summary to stdout, and with -csv writes the outcomes as CSV to FILE
// (atomically: a temporary file renamed into place) or to stdout for "-".
// Errors: ErrInput for bad flags, the channel's, Reconcile's, and
// ErrUnbalanced after a stored run that does not balance.
func Command(ctx context.Context, args []string, env CommandEnv, stdout io.Writer) error {
	fs := flag.NewFlagSet("cloud reconcile", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	channel := fs.String("channel", "", "channel name (wechatpay, alipay, …)")
	dayText := fs.String("day", "", "the day to reconcile, YYYY-MM-DD in the provider's time zone")
	csvPath := fs.String("csv", "", `write the outcomes as CSV to this file ("-": standard output)`)
	if err := fs.Parse(args); err != nil {
		return vend.Errorf(ErrInput, "%v; usage: %s", err, CommandUsage)
	}
	if fs.NArg() > 0 || *channel == "" || *dayText == "" {
		return vend.Errorf(ErrInput, "want -channel and -day; usage: %s", CommandUsage)
	}
	day, err := payments.ParseDay(*dayText)
	if err != nil {
		return vend.Errorf(ErrInput, "-day: %v", err)
	}
	if env.Reconciler == nil || env.Source == nil {
		return vend.Errorf(ErrInput, "the reconcile command is not wired to a store and channels")
	}
	src, err := env.Source(*channel)
	if err != nil {
		return err
	}
	rep, runErr := env.Reconciler.Reconcile(ctx, *channel, src, day)
	if rep.Run.Channel == "" {
		return runErr
	}
	printSummary(stdout, rep)
	if *csvPath != "" {
		var b bytes.Buffer
		if err := WriteCSV(&b, rep.Run, rep.Outcomes, env.Reconciler.in(src).loc); err != nil {
			return fmt.Errorf("reconcile: csv: %w", err)
		}
		if *csvPath == "-" {
			if _, err := stdout.Write(b.Bytes()); err != nil {
				return err
			}
		} else if err := atomicfile.Write(*csvPath, b.Bytes()); err != nil {
			return fmt.Errorf("reconcile: csv %s: %w", *csvPath, err)
		}
	}
	if rep.Run.Status != "balanced" {
		return errors.Join(runErr, vend.Errorf(ErrUnbalanced, "%s %s: %s", rep.Run.Channel, rep.Run.Day, rep.Run.Status))
	}
	return runErr
}

func printSummary(w io.Writer, rep Report) {
	r := rep.Run
	fmt.Fprintf(w, "%s %s: %s (%d statement rows, %d outcomes)\n", r.Channel, r.Day, r.Status, r.StmtRows, len(rep.Outcomes))
	counts := KindCounts(rep.Outcomes)
	for _, k := range Kinds {
		fmt.Fprintf(w, "  %-18s %d\n", k, counts[k])
	}
	fmt.Fprintf(w, "  statement: payments %s, refunds %s, fees %s %s\n", payments.FormatMinor(r.StmtPayments),
		payments.FormatMinor(r.StmtRefunds), payments.FormatMinor(r.StmtFees), r.Currency)
	fmt.Fprintf(w, "  ours:      payments %s, refunds %s; clearing net %s; fees posted %s\n", payments.FormatMinor(r.OurPayments),
		payments.FormatMinor(r.OurRefunds), payments.FormatMinor(r.ClearingNet), payments.FormatMinor(r.FeesPosted))
	if r.TotalsOK {
		fmt.Fprintln(w, "  totals: equal")
	} else {
		fmt.Fprintf(w, "  totals: %s\n", r.TotalsDetail)
	}
	for _, o := range rep.Outcomes {
		if o.Kind != Matched {
			fmt.Fprintf(w, "  #%d %s %s %s %s: %s\n", o.Seq, o.Kind, o.RowKind, firstOf(o.RefundNo, o.OrderNo), o.Action, o.Detail)
		}
	}
}
