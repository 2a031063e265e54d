// Command chaossoak runs the chaos soak (cloud/internal/chaos): a real
// cloud, Mosquitto, SQLite or PostgreSQL, real controllers on emulated
// boards and phones on loopback, with random link cuts, broker restarts,
// controller and cloud SIGKILLs, Stops at random moments, price changes
// racing starts and skewed device clocks; then it checks every session,
// the ledger and every machine, prints a table and exits 1 on any
// violation (2 when the deployment cannot be set up).
//
//	go run ./cloud/cmd/chaossoak -duration 10m
//	scripts/chaos-soak.sh -duration 10m -db postgres
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"beaconvend/cloud/internal/chaos"
	"beaconvend/cloud/internal/pgscratch"
	"beaconvend/cloud/internal/simdev"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg := chaos.Config{Rates: chaos.DefaultRates, Skew: true, Log: os.Stderr}
	fs := flag.NewFlagSet("chaossoak", flag.ContinueOnError)
	fs.DurationVar(&cfg.Duration, "duration", chaos.DefaultDuration, "how long phones and faults run")
	fs.IntVar(&cfg.Devices, "devices", chaos.DefaultDevices, "real controllers on emulated boards (water, washer, vending in turn), 1-30")
	fs.IntVar(&cfg.Phones, "phones", chaos.DefaultPhones, "phones starting sessions, 1-30")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0: from the clock; printed)")
	fs.StringVar(&cfg.DB, "db", "sqlite", "sqlite, or postgres (a scratch database from $VEND_PG_DSN)")
	fs.Float64Var(&cfg.Rates.LinkCut, "link-cuts", chaos.DefaultRates.LinkCut, "controller link cuts per minute")
	fs.Float64Var(&cfg.Rates.BrokerRestart, "broker-restarts", chaos.DefaultRates.BrokerRestart, "broker restarts per minute")
	fs.Float64Var(&cfg.Rates.ControllerKill, "controller-kills", chaos.DefaultRates.ControllerKill, "controller SIGKILLs per minute")
	fs.Float64Var(&cfg.Rates.CloudKill, "cloud-kills", chaos.DefaultRates.CloudKill, "cloud SIGKILLs per minute")
	fs.Float64Var(&cfg.Rates.Stop, "stops", chaos.DefaultRates.Stop, "share of sessions the phone stops at a random moment (0-1)")
	fs.Float64Var(&cfg.Rates.PriceChange, "price-races", chaos.DefaultRates.PriceChange, "share of starts racing a price change (0-1)")
	fs.BoolVar(&cfg.Skew, "skew", true, "skew controller clocks ±10 min (when the controller has -clock-skew)")
	fs.DurationVar(&cfg.SessionBound, "session-bound", chaos.DefaultSessionBound, "a session must be final this long after its creation")
	fs.DurationVar(&cfg.QuiesceWithin, "quiesce", chaos.DefaultQuiesceWithin, "how long to wait for every session to end after the faults stop")
	dir := fs.String("dir", "", "working directory (default: a new temporary one, removed unless -keep)")
	keep := fs.Bool("keep", false, "keep the working directory (logs, journals, database)")
	fs.StringVar(&cfg.CloudBin, "cloud-bin", "", "cloud program (default: go build)")
	fs.StringVar(&cfg.ControllerBin, "controller-bin", "", "controller program (default: go build)")
	fs.StringVar(&cfg.MosquittoBin, "mosquitto", "", "mosquitto binary (default: $VEND_MOSQUITTO, PATH, /usr/sbin)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *dir == "" {
		d, err := os.MkdirTemp("", "chaossoak-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaossoak:", err)
			return 2
		}
		*dir = d
		if !*keep {
			defer os.RemoveAll(d)
		}
	}
	cfg.Dir = *dir
	fmt.Fprintln(os.Stderr, "chaossoak: working directory", cfg.Dir)
	var err error
	if cfg.MosquittoBin == "" {
		if cfg.MosquittoBin, err = simdev.MosquittoBinary(); err != nil {
			fmt.Fprintln(os.Stderr, "chaossoak: mosquitto:", err, "(run scripts/mosquitto.sh)")
			return 2
		}
	}
	if cfg.CloudBin == "" || cfg.ControllerBin == "" {
		if cfg.CloudBin, cfg.ControllerBin, err = chaos.BuildPrograms(ctx, filepath.Join(cfg.Dir, "bin")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	if cfg.DB == "postgres" {
		base := os.Getenv("VEND_PG_DSN")
		if base == "" {
			fmt.Fprintln(os.Stderr, "chaossoak: -db postgres needs VEND_PG_DSN (export \"$(scripts/pg.sh | tail -n1)\")")
			return 2
		}
		dsn, drop, err := pgscratch.Create(base, "chaos")
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaossoak:", err)
			return 2
		}
		if !*keep {
			defer drop()
		}
		cfg.PostgresDSN = dsn
	}
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rep.Print(os.Stdout)
	if len(rep.Violations) > 0 {
		return 1
	}
	return 0
}
