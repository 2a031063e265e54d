package reconcile_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/reconcile"
	"beaconvend/cloud/store"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestJobReconcilesFromTPlusOneAndRetries(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		f.pay("o-1", cny(100), at(day1, 10, 0, 0), true)
		f.pay("o-2", cny(200), at(day2, 10, 0, 0), true)
		f.pay("o-edge", cny(300), at(day2, 23, 59, 30), true) // the provider lists it on day3
		src := newSource(stmt(day1, payRow("o-1", cny(100), at(day1, 10, 0, 0), 0)))
		r := reconcile.New(f.s, &reconcile.Opts{Now: f.clk.Now})
		j := &reconcile.Job{Reconciler: r, Lookback: 2, Retry: 30 * time.Minute,
			Channels: func() map[string]reconcile.Source { return map[string]reconcile.Source{ch: src} }}
		runs := func(res reconcile.PassResult) []string {
			var s []string
			for _, rep := range res.Runs {
				s = append(s, rep.Run.Day+" "+string(rep.Run.Status))
			}
			return s
		}

		res := j.Pass(f.ctx) // day3 10:00: day1 and day2 are over; day2's statement is not out
		if got := runs(res); !slices.Equal(got, []string{"2026-03-01 balanced"}) || len(res.Failed) != 1 ||
			vend.CodeOf(res.Failed[0]) != "recon.unavailable" || !strings.Contains(res.Failed[0].Error(), "NO_STATEMENT_EXIST") {
			t.Fatalf("pass 1: runs %v, failed %v", got, res.Failed)
		}
		// Gauges come from the store: a fresh process's first pass shows
		// runs stored before it started, even when it runs none itself.
		must(t, f.s.SaveReconRun(f.ctx, store.ReconRun{Channel: "alipay", Day: "2026-02-27", Status: store.ReconDiscrepancies, Currency: "CNY", Discrep: 1},
			[]store.ReconOutcome{{Kind: "duplicate", RowKind: "payment", OrderNo: "a-1"}}))
		reg := prometheus.NewRegistry()
		r = reconcile.New(f.s, &reconcile.Opts{Now: f.clk.Now, Metrics: reconcile.NewMetrics(reg)})
		j.Reconciler = r
		res = j.Pass(f.ctx)
		if got := gauge(t, reg, "beaconvend_recon_outcomes", map[string]string{"channel": "alipay", "kind": "duplicate"}); got != 1 {
			t.Fatalf("alipay duplicates gauge after a pass = %v, want 1", got)
		}
		if len(res.Runs) != 0 || len(res.Failed) != 0 || src.calls[day2] != 1 || src.calls[day1] != 1 {
			t.Fatalf("pass 2 within the retry wait: runs %v failed %v, statement calls %v", runs(res), res.Failed, src.calls)
		}
		f.clk.Add(31 * time.Minute)
		src.publish(stmt(day2, payRow("o-2", cny(200), at(day2, 10, 0, 0), 0)))
		res = j.Pass(f.ctx)
		if got := runs(res); !slices.Equal(got, []string{"2026-03-02 provisional"}) || len(res.Failed) != 0 {
			t.Fatalf("pass 3: runs %v, failed %v", got, res.Failed)
		}
		// The next day: day3's statement lists o-edge; the provisional
		// day2 runs again and leaves o-edge to day3.
		f.clk.Set(at(payments.Day{Year: 2026, Month: 3, Day: 4}, 10, 0, 0))
		src.publish(stmt(day3, payRow("o-edge", cny(300), at(day3, 0, 0, 2), 0)))
		res = j.Pass(f.ctx)
		if got := runs(res); !slices.Equal(got, []string{"2026-03-02 balanced", "2026-03-03 balanced"}) || len(res.Failed) != 0 {
			t.Fatalf("pass 4: runs %v, failed %v", got, res.Failed)
		}
		if res = j.Pass(f.ctx); len(res.Runs)+len(res.Failed) != 0 {
			t.Fatalf("pass 5 did work again: %v %v", runs(res), res.Failed)
		}
		ctx, cancel := context.WithCancel(f.ctx)
		cancel()
		if err := j.Run(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run(cancelled) = %v", err)
		}
	})
}

// gauge reads one sample of a collected metric with the given labels.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			if m.Gauge != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

func TestMetrics(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		reg := prometheus.NewRegistry()
		m := reconcile.NewMetrics(reg)
		st := oneOfEach(f)
		r := reconcile.New(f.s, &reconcile.Opts{Fees: f.s, Now: f.clk.Now, Metrics: m})
		rep, err := r.Reconcile(f.ctx, ch, newSource(st), day1)
		f.must(err)
		for kind, want := range map[string]float64{"matched": 3, "missing_in_ours": 1, "missing_in_theirs": 1, "amount_mismatch": 1,
			"status_mismatch": 1, "currency_mismatch": 1, "duplicate": 1, "deferred": 0} {
			if got := gauge(t, reg, "beaconvend_recon_outcomes", map[string]string{"channel": ch, "kind": kind}); got != want {
				t.Errorf("outcomes{%s} = %v, want %v", kind, got, want)
			}
		}
		if got := gauge(t, reg, "beaconvend_recon_discrepancies_open", map[string]string{"channel": ch}); got != 6 {
			t.Errorf("open discrepancies = %v, want 6", got)
		}
		if got := gauge(t, reg, "beaconvend_recon_totals_ok", map[string]string{"channel": ch}); got != 0 {
			t.Errorf("totals ok = %v, want 0", got)
		}
		if got := gauge(t, reg, "beaconvend_recon_last_run_timestamp_seconds", map[string]string{"channel": ch}); got != float64(f.clk.Now().Unix()) {
			t.Errorf("last run = %v, want %v", got, f.clk.Now().Unix())
		}
		if got := gauge(t, reg, "beaconvend_recon_last_day_timestamp_seconds", map[string]string{"channel": ch}); got != float64(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Unix()) {
			t.Errorf("last day = %v", got)
		}
		// Resolving every discrepancy brings the open gauge to 0.
		for _, o := range rep.Outcomes {
			if o.Kind != reconcile.Matched {
				f.must(f.s.ResolveReconOutcome(f.ctx, ch, day1.String(), o.Seq, "checked with the provider"))
			}
		}
		f.must(m.Refresh(f.ctx, f.s))
		if got := gauge(t, reg, "beaconvend_recon_discrepancies_open", map[string]string{"channel": ch}); got != 0 {
			t.Errorf("open discrepancies after resolving all = %v, want 0", got)
		}
		bad := st
		bad.Fees++
		_, err = r.Reconcile(f.ctx, ch, newSource(bad), day1)
		if !errors.Is(err, reconcile.ErrStatement) {
			t.Fatalf("bad fees summary: %v", err)
		}
		if got := gauge(t, reg, "beaconvend_recon_failures_total", map[string]string{"channel": ch, "reason": "rejected"}); got != 1 {
			t.Errorf("rejected = %v, want 1", got)
		}
	})
}

func TestCommand(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		clean := cleanDay(f)
		src := newSource(clean)
		env := reconcile.CommandEnv{Reconciler: reconcile.New(f.s, &reconcile.Opts{Fees: f.s, Now: f.clk.Now}),
			Source: func(name string) (reconcile.Source, error) {
				if name != ch {
					return nil, fmt.Errorf("config: channel %q is not configured", name)
				}
				return src, nil
			}}
		out := filepath.Join(t.TempDir(), "day.csv")
		var stdout bytes.Buffer
		if err := reconcile.Command(f.ctx, []string{"-channel", ch, "-day", "2026-03-01", "-csv", out}, env, &stdout); err != nil {
			t.Fatalf("Command(clean day) = %v\n%s", err, stdout.String())
		}
		if s := stdout.String(); !strings.Contains(s, "wechatpay 2026-03-01: balanced (4 statement rows, 4 outcomes)") ||
			!strings.Contains(s, "totals: equal") || !strings.Contains(s, "statement: payments 37.49, refunds 5.50, fees 0.19 CNY") {
			t.Fatalf("summary:\n%s", s)
		}
		b, err := os.ReadFile(out)
		f.must(err)
		recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil || len(recs) != 5 {
			t.Fatalf("csv file: %d lines, %v", len(recs), err)
		}

		// A day with discrepancies is stored, printed, and fails the command.
		f.pay("o-gone", cny(700), at(day1, 13, 0, 0), true)
		stdout.Reset()
		err = reconcile.Command(f.ctx, []string{"-channel", ch, "-day", "2026-03-01", "-csv", "-"}, env, &stdout)
		if vend.CodeOf(err) != "recon.discrepancies" || !strings.Contains(stdout.String(), "missing_in_theirs payment o-gone freeze") ||
			!strings.Contains(stdout.String(), "\nchannel,day,seq,kind,") {
			t.Fatalf("Command(discrepancy) = %v\n%s", err, stdout.String())
		}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"-channel", ch}, "request.field"},
			{[]string{"-channel", ch, "-day", "2026-3-1"}, "request.field"},
			{[]string{"-channel", ch, "-day", "2026-03-01", "extra"}, "request.field"},
			{[]string{"-bogus"}, "request.field"},
			{[]string{"-channel", "paypal", "-day", "2026-03-01"}, "internal"},
			{[]string{"-channel", ch, "-day", "2026-03-05"}, "recon.too_early"},
		} {
			err := reconcile.Command(f.ctx, tc.args, env, &stdout)
			if vend.CodeOf(err) != tc.want {
				t.Errorf("Command(%q) = %v, want code %s", tc.args, err, tc.want)
			}
		}
		if _, _, err := f.s.ReconRunOf(f.ctx, ch, "2026-03-05"); !errors.Is(err, store.ErrReconNotFound) {
			t.Fatalf("a refused command stored a run: %v", err)
		}
	})
}
