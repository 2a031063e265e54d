// Command clusterfault runs the cluster fault test
// (cloud/internal/clusterfault): three NATS nodes, a PostgreSQL failover
// formation, two cloud instances (each running two of the nodes'
// auth-callout responders, broker.nats_auth), a few
// hundred simulated devices, real controllers on emulated boards and
// phones starting sessions, all on loopback; mid-traffic it SIGKILLs one
// NATS node, then the PostgreSQL primary, then a cloud instance. Then it
// checks that every usage report a device saw acknowledged (a real
// controller: its journal) is settled exactly once with its units, that
// no session doubled, that the ledger balances and that every device
// reconnected (in the store and by its own account), prints how long
// each kill stopped session starts for, and exits 1 on any violation (2
// when the deployment cannot be set up). The -plant flag, left out of
// the usage, writes named defects into the database before the audit to
// show it catches them (clusterfault.Config.Plant).
//
//	scripts/cluster-fault.sh            # the long form
//	scripts/cluster-fault.sh -short     # the CI form
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"beaconvend/cloud/internal/clusterfault"
	"beaconvend/cloud/internal/pgscratch"
)

func main() {
	os.Exit(run())
}

func run() int {
	var cfg clusterfault.Config
	fs := flag.NewFlagSet("clusterfault", flag.ContinueOnError)
	short := fs.Bool("short", false, "the CI form: 60 devices, 2 controllers, 8 phones, 8 s between kills")
	fs.StringVar(&cfg.Broker, "broker", "nats", "nats (three nodes as processes) or mosquitto (one)")
	fs.StringVar(&cfg.MosquittoBin, "mosquitto", "", "mosquitto binary, for -broker mosquitto")
	fs.StringVar(&cfg.CloudBin, "cloud-bin", "", "cloud program (go build ./cloud/cmd/cloud)")
	fs.StringVar(&cfg.ControllerBin, "controller-bin", "", "controller program (go build ./controller/cmd/controller)")
	fs.IntVar(&cfg.Devices, "devices", clusterfault.DefaultDevices, "simulated devices")
	fs.IntVar(&cfg.Controllers, "controllers", clusterfault.DefaultControllers, "real controllers on emulated boards")
	fs.IntVar(&cfg.Phones, "phones", clusterfault.DefaultPhones, "phones starting sessions concurrently")
	fs.Float64Var(&cfg.Rate, "rate", clusterfault.DefaultRate, "session starts per second")
	fs.DurationVar(&cfg.Duration, "duration", clusterfault.DefaultDuration, "traffic without the faults: a quarter of it before the first kill, between one kill's recovery and the next, and after the last")
	fs.DurationVar(&cfg.Down, "down", clusterfault.DefaultDown, "how long a killed broker node or cloud instance stays down")
	fs.DurationVar(&cfg.Settle, "settle", clusterfault.DefaultSettle, "how long the deployment has after the traffic to acknowledge, reconnect and end every session")
	failover := fs.Bool("failover", true, "a pg_auto_failover formation (its primary killed); false: a scratch database on $VEND_PG_DSN, not killed")
	dir := fs.String("dir", "", "working directory (default: a new temporary one, removed unless -keep)")
	keep := fs.Bool("keep", false, "keep the working directory (logs, controller journals)")
	// -plant is the test of the test, left out of the usage: after the
	// deployment settled it writes the named defects (comma-separated:
	// duplicate-capture, unsettle-acked) into the store before the audit,
	// which must then report each, so the command exits 1.
	plant := fs.String("plant", "", "")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: clusterfault [flags]\n")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "plant" {
				return
			}
			fmt.Fprintf(fs.Output(), "  -%s\n    \t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
		})
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *short {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["devices"] {
			cfg.Devices = 60
		}
		if !set["controllers"] {
			cfg.Controllers = 2
		}
		if !set["phones"] {
			cfg.Phones = 8
		}
		if !set["rate"] {
			cfg.Rate = 10
		}
		if !set["duration"] {
			cfg.Duration = 32 * time.Second
		}
		if !set["down"] {
			cfg.Down = 5 * time.Second
		}
		if !set["settle"] {
			cfg.Settle = 40 * time.Second
		}
	}
	if *plant != "" {
		cfg.Plant = strings.Split(*plant, ",")
		if err := clusterfault.CheckPlant(cfg.Plant); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *dir == "" {
		d, err := os.MkdirTemp("", "clusterfault-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "clusterfault:", err)
			return 2
		}
		*dir = d
		if !*keep {
			defer os.RemoveAll(d)
		}
	}
	cfg.Dir = *dir
	fmt.Fprintln(os.Stderr, "clusterfault: working directory", cfg.Dir)
	closeDB, err := database(&cfg, *failover, *keep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterfault:", err)
		return 2
	}
	defer closeDB()
	rep, err := clusterfault.Run(ctx, cfg)
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

// database sets cfg's DSN (and failover hook) and returns what ends it.
func database(cfg *clusterfault.Config, failover, keep bool) (func(), error) {
	if failover {
		return startFailover(cfg, keep)
	}
	base := os.Getenv("VEND_PG_DSN")
	if base == "" {
		return nil, fmt.Errorf("-failover=false needs VEND_PG_DSN (export \"$(scripts/pg.sh | tail -n1)\")")
	}
	dsn, drop, err := pgscratch.Create(base, "clusterfault")
	if err != nil {
		return nil, err
	}
	cfg.DSN = dsn
	if keep {
		return func() {}, nil
	}
	return func() { _ = drop() }, nil
}
