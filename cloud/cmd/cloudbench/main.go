// Command cloudbench measures the cloud end to end on loopback: it
// provisions a fresh database, runs `cloud serve` as a process with its
// embedded broker, connects simulated devices (real MQTT clients, each with
// its own credentials) and has phones start sessions through the phone API
// at a target rate; the devices report signed usage, which the cloud
// settles. It prints one table: authorize latency (phone POST → authorized
// session returned) p50/p95/p99, settled sessions per second, grant → Ack
// latency, and errors by kind, per database. See cloud/BENCHMARKS.md.
//
//	cloudbench [-db sqlite,postgres] [-devices 1000] [-phones 50] [-rate 50] [-duration 30s]
//	           [-drain 30s] [-usage-delay 200ms] [-pg-dsn DSN] [-cloud PATH]
//
// The logic is in cloud/internal/simdev (RunBench).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"beaconvend/cloud/internal/simdev"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cloudbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbs := fs.String("db", "sqlite,postgres", "databases to run, comma-separated: sqlite, postgres")
	cfg := simdev.BenchConfig{Log: stderr}
	fs.IntVar(&cfg.Devices, "devices", 1000, "simulated devices (one water machine each)")
	fs.IntVar(&cfg.Phones, "phones", 50, "phone users; also the most concurrent start requests")
	fs.Float64Var(&cfg.Rate, "rate", 50, "target session starts per second")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long to start sessions")
	fs.DurationVar(&cfg.Drain, "drain", 30*time.Second, "how long to wait for outstanding settlements afterwards")
	fs.DurationVar(&cfg.UsageDelay, "usage-delay", 200*time.Millisecond, "mean time from grant to usage report")
	fs.StringVar(&cfg.PGDSN, "pg-dsn", os.Getenv("VEND_PG_DSN"), "base PostgreSQL DSN (a scratch database is created and dropped)")
	fs.StringVar(&cfg.CloudBin, "cloud", "", "cloud binary (default: go build beaconvend/cloud/cmd/cloud into a temp dir)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Devices < 1 || cfg.Devices > 10000 || cfg.Phones < 1 || cfg.Rate <= 0 || cfg.Rate > 10000 || cfg.Duration <= 0 || cfg.Duration > time.Hour {
		return fmt.Errorf("cloudbench: flags out of range (1-10000 devices, rate 0-10000/s, duration up to 1h)")
	}
	if cfg.CloudBin == "" {
		dir, err := os.MkdirTemp("", "cloudbench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.CloudBin = filepath.Join(dir, "cloud")
		if out, err := exec.Command("go", "build", "-o", cfg.CloudBin, "beaconvend/cloud/cmd/cloud").CombinedOutput(); err != nil {
			return fmt.Errorf("cloudbench: go build: %v\n%s", err, out)
		}
	}
	var results []simdev.BenchResult
	for _, db := range strings.Split(*dbs, ",") {
		c := cfg
		c.DB = strings.TrimSpace(db)
		r, err := simdev.RunBench(ctx, c)
		if err != nil {
			return fmt.Errorf("cloudbench: %s: %w", c.DB, err)
		}
		results = append(results, r)
	}
	printTable(stdout, results)
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func printTable(w io.Writer, rs []simdev.BenchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "db\tdevices\tphones\trate/s\tdur\tstarts\tauthorized\tsettled\tsettled/s\tauth p50 ms\tp95\tp99\tsettle p50 ms\tp99\tledger\terrors\t")
	for _, r := range rs {
		var errs []string
		for k, v := range r.Errors {
			errs = append(errs, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(errs)
		if len(errs) == 0 {
			errs = []string{"none"}
		}
		ledger := "ok"
		if !r.LedgerOK {
			ledger = "BAD"
		}
		c := r.Config
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.DB, c.Devices, c.Phones, c.Rate, c.Duration,
			r.Attempted, r.Authorized, r.Settled, r.SettledPerSec, ms(r.Auth[0]), ms(r.Auth[1]), ms(r.Auth[2]), ms(r.Settle[0]), ms(r.Settle[2]), ledger, strings.Join(errs, " "))
	}
	tw.Flush()
	for _, r := range rs {
		var st []string
		for k, v := range r.Sessions {
			st = append(st, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(st)
		fmt.Fprintf(w, "%s: provision %s, %d devices online in %s; sessions in store: %s\n", r.Config.DB, r.Provision.Round(time.Millisecond),
			r.Config.Devices, r.Connect.Round(time.Millisecond), strings.Join(st, " "))
	}
}
