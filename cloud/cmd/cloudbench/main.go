// Command cloudbench is the fleet load harness: it builds a deployment on
// loopback (the cloud as one or two processes, the embedded broker,
// Mosquitto or a three-node NATS cluster, SQLite or PostgreSQL), provisions and connects up to 10,000
// simulated devices (real MQTT clients, each with its own credentials,
// rotating beacon IDs, telemetry, grant checks and signed usage), a few
// real controllers on emulated boards, and phones that start sessions
// through the phone API at target rates. It prints one table row per load
// step — authorize latency to the device and to the phone, tap-to-relay
// latency, settlements and telemetry per second, cloud CPU and RSS, errors
// by kind — and per run the cloud's ingest rate against the bare broker's,
// and the ledger audit. See cloud/LOAD.md.
//
//	cloudbench [-deploy embedded-sqlite,mosquitto-postgres,mosquitto-postgres-x2,nats-cluster]
//	           [-devices 10000] [-phones 50] [-rate 100[,200…]] [-find-max] [-duration 20s]
//	           [-relay 4] [-flood 50] [-profile DIR] …
//
// The logic is in cloud/internal/simdev (RunBench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
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

// deployments maps -deploy names to broker, database and instances.
var deployments = map[string]struct {
	broker, db string
	instances  int
}{
	"embedded-sqlite":       {"embedded", "sqlite", 1},
	"embedded-postgres":     {"embedded", "postgres", 1},
	"mosquitto-sqlite":      {"mosquitto", "sqlite", 1},
	"mosquitto-postgres":    {"mosquitto", "postgres", 1},
	"mosquitto-postgres-x2": {"mosquitto", "postgres", 2},
	// Three NATS nodes as processes (JetStream, MQTT listeners, two
	// auth-callout responders), two cloud instances consuming uplinks
	// from JetStream, PostgreSQL.
	"nats-cluster": {"nats-cluster", "postgres", 2},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cloudbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	deploys := fs.String("deploy", "embedded-sqlite,mosquitto-postgres", "deployments to run, comma-separated: "+strings.Join(deployNames(), ", "))
	rates := fs.String("rate", "100", "load steps, session starts per second, comma-separated")
	cfg := simdev.BenchConfig{Log: stderr}
	fs.IntVar(&cfg.Devices, "devices", 1000, "simulated devices (one water machine each)")
	fs.IntVar(&cfg.Phones, "phones", 50, "phone users; also the most concurrent start requests")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", 500, "device connections started per second during the ramp")
	fs.DurationVar(&cfg.Telemetry, "telemetry", 10*time.Second, "telemetry period of each device (0: none)")
	fs.BoolVar(&cfg.FindMax, "find-max", false, "after the -rate steps, keep adding -rate-step until a step misses the goals")
	fs.Float64Var(&cfg.RateStep, "rate-step", 50, "find-max increment, starts per second")
	fs.IntVar(&cfg.MaxSteps, "max-steps", 12, "find-max bound on steps")
	fs.DurationVar(&cfg.AuthSLO, "slo", 50*time.Millisecond, "find-max: authorize p99 (phone request to grant at the device) a step must stay under")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "length of each load step")
	fs.DurationVar(&cfg.Drain, "drain", 20*time.Second, "how long to wait after a step for its settlements")
	fs.DurationVar(&cfg.UsageDelay, "usage-delay", 200*time.Millisecond, "mean time from grant to usage report")
	fs.IntVar(&cfg.Relay, "relay", 0, "real controllers on emulated boards, for tap-to-relay latency")
	fs.DurationVar(&cfg.RelayEvery, "relay-every", 2*time.Second, "pause between taps on one controller")
	fs.IntVar(&cfg.FloodPublishers, "flood", 0, "publishers of the ingest-versus-raw-broker flood (0: skip)")
	fs.DurationVar(&cfg.FloodDuration, "flood-duration", 5*time.Second, "length of each flood")
	fs.IntVar(&cfg.FloodInflight, "flood-inflight", 20, "unacknowledged publishes per flood publisher")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the work directory (cloud logs, broker stores and logs) and the scratch database, and print where they are")
	fs.StringVar(&cfg.ProfileDir, "profile", "", "write CPU and allocation profiles of the first cloud instance, taken over the last step, here")
	fs.StringVar(&cfg.PGDSN, "pg-dsn", os.Getenv("VEND_PG_DSN"), "base PostgreSQL DSN (a scratch database is created and dropped)")
	fs.StringVar(&cfg.CloudBin, "cloud", "", "cloud binary (default: go build beaconvend/cloud/cmd/cloud)")
	fs.StringVar(&cfg.ControllerBin, "controller", "", "controller binary for -relay (default: go build beaconvend/controller/cmd/controller)")
	fs.StringVar(&cfg.MosquittoBin, "mosquitto", "", "mosquitto binary (default: simdev.MosquittoBinary: $VEND_MOSQUITTO, PATH, /usr/sbin)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, r := range strings.Split(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 || v > 5000 {
			return fmt.Errorf("cloudbench: -rate: %q is not a rate in (0, 5000]", r)
		}
		cfg.Rates = append(cfg.Rates, v)
	}
	if cfg.Devices < 1 || cfg.Devices > 20000 || cfg.Phones < 1 || cfg.Duration <= 0 || cfg.Duration > time.Hour || cfg.Relay < 0 || cfg.Relay > 50 || cfg.FloodPublishers < 0 || cfg.FloodPublishers > 1000 {
		return errors.New("cloudbench: flags out of range (1-20000 devices, duration up to 1h, 0-50 relay controllers, 0-1000 flood publishers)")
	}
	bin, err := os.MkdirTemp("", "cloudbench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	if cfg.CloudBin == "" {
		if cfg.CloudBin, err = build(bin, "beaconvend/cloud/cmd/cloud"); err != nil {
			return err
		}
	}
	if cfg.Relay > 0 && cfg.ControllerBin == "" {
		if cfg.ControllerBin, err = build(bin, "beaconvend/controller/cmd/controller"); err != nil {
			return err
		}
	}
	if cfg.MosquittoBin == "" && strings.Contains(*deploys, "mosquitto") {
		if cfg.MosquittoBin, err = simdev.MosquittoBinary(); err != nil {
			return err
		}
	}
	var results []simdev.BenchResult
	for _, name := range strings.Split(*deploys, ",") {
		d, ok := deployments[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("cloudbench: unknown deployment %q (have %s)", name, strings.Join(deployNames(), ", "))
		}
		c := cfg
		c.Broker, c.DB, c.Instances, c.Label = d.broker, d.db, d.instances, strings.TrimSpace(name)
		r, err := simdev.RunBench(ctx, c)
		if err != nil {
			return fmt.Errorf("cloudbench: %s: %w", c.Label, err)
		}
		results = append(results, r)
	}
	printTable(stdout, results)
	return nil
}

func deployNames() []string {
	var n []string
	for k := range deployments {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func build(dir, pkg string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cloudbench: go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func printTable(w io.Writer, rs []simdev.BenchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "deployment\tdevices\trate/s\tstarts\tauthorized\tsettled/s\tgrant p50 ms\tp95\tp99\tanswer p50 ms\tp99\trelay p50 ms\tp99\ttaps\ttelemetry/s\tcloud CPU %\tcloud RSS MiB\tbroker CPU %\tdb CPU %\tdb tx/s\tbench CPU %\terrors\t")
	for _, r := range rs {
		for _, s := range r.Steps {
			var errs []string
			for k, v := range s.Errors {
				errs = append(errs, fmt.Sprintf("%s=%d", k, v))
			}
			sort.Strings(errs)
			if len(errs) == 0 {
				errs = []string{"none"}
			}
			relay50, relay99 := "-", "-"
			if s.RelayTaps > 0 {
				relay50, relay99 = ms(s.Relay[0]), ms(s.Relay[2])
			}
			dbtx := "-"
			if r.Config.DB == "postgres" {
				dbtx = fmt.Sprintf("%.0f", s.DBCommits)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%.0f\t%s\t\n",
				r.Config.Name(), r.Config.Devices+r.RelayCount, s.Rate, s.Attempted, s.Authorized, s.SettledPerSec,
				ms(s.Grant[0]), ms(s.Grant[1]), ms(s.Grant[2]), ms(s.Answer[0]), ms(s.Answer[2]), relay50, relay99, s.RelayTaps,
				s.TelemetryIn, s.CloudCPU, float64(s.CloudRSS)/(1<<20), s.BrokerCPU, s.DBCPU, dbtx, s.BenchCPU, strings.Join(errs, " "))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rs {
		var st []string
		for k, v := range r.Sessions {
			st = append(st, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(st)
		ledger := "ok"
		if !r.LedgerOK {
			ledger = "BAD"
		}
		fmt.Fprintf(w, "%s: provision %s; %d devices online in %s; ledger %s, lost %d, doubled %d; sessions %s",
			r.Config.Name(), r.Provision.Round(time.Millisecond), r.Config.Devices+r.RelayCount, r.Connect.Round(time.Millisecond),
			ledger, r.Lost, r.Doubled, strings.Join(st, " "))
		if r.SubscribeRefused+r.SubscribeUnanswered > 0 {
			fmt.Fprintf(w, "; cmd subscriptions sent again during the ramp: %d refused, %d unanswered", r.SubscribeRefused, r.SubscribeUnanswered)
		}
		if r.BrokerRSS > 0 {
			fmt.Fprintf(w, "; brokers %.0f MiB with the fleet connected, %.1f KiB and %.2f ms CPU per device session",
				float64(r.BrokerRSS)/(1<<20), float64(r.BrokerRSSPerDevice)/1024, float64(r.BrokerCPUPerDevice)/float64(time.Millisecond))
		}
		if r.FloodSent > 0 {
			fmt.Fprintf(w, "; flood %d msgs: cloud ingest %.0f/s (%d dropped), raw %s %.0f/s (%d dropped), ratio %.2f",
				r.FloodSent, r.Ingest, r.FloodLost, r.Config.Broker, r.Raw, r.RawLost, r.Ingest/r.Raw)
		}
		if r.Config.FindMax {
			fmt.Fprintf(w, "; highest step meeting the goals: %.0f/s", r.MaxRate)
		}
		for _, p := range r.Profiles {
			fmt.Fprintf(w, "; profile %s", p)
		}
		fmt.Fprintln(w)
	}
}
