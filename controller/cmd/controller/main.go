// Command controller is the beaconvend daemon on a machine's Linux board:
// it advertises the rotating proximity ID, verifies grants from the cloud,
// switches the machine's outputs through the Modbus I/O board, meters what
// it delivers into a bbolt journal, and reports signed usage over MQTT.
//
//	controller -config /etc/beaconvend/controller.yaml
//	controller import-bundle -bundle bundle.json -wiring wiring.yaml -out /etc/beaconvend [-force] [-beacon sim]
//
// import-bundle sets a board up: it turns the provisioning bundle `cloud
// device add` wrote plus the board's wiring (see
// controller/testdata/wiring.example.yaml and package controller/wiring)
// into controller.yaml and its key files (mode 0600) in -out, refusing to
// replace an existing set unless -force, and prints {"device","config"}.
//
// -clock-skew D (tests only) shifts the controller's clock by D, so a
// harness can run boards whose clocks are wrong; it is 0 in production.
//
// SIGTERM or SIGINT stops running sessions with every output OFF, queues
// their reports and exits; a second signal exits at once (the board's
// watchdog and the next start's recovery take over).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"beaconvend/controller/config"
	"beaconvend/controller/daemon"
	"beaconvend/controller/wiring"
)

// Main is the program, reusable in-process by end-to-end tests.
type Main struct {
	ConfigPath string
	LogLevel   slog.Level
	JSONLogs   bool
	Stderr     io.Writer
	// ClockSkew shifts the daemon's clock (its Now) by this much. For tests
	// only: a chaos harness runs boards whose clocks are minutes off. Zero
	// in production.
	ClockSkew time.Duration
	// Import is set by the import-bundle subcommand: Run then sets a
	// board up from a bundle instead of running the daemon.
	Import *ImportFlags
	Stdout io.Writer

	d          *daemon.Daemon
	reboot     chan struct{}
	rebootOnce sync.Once
}

// ExitReboot is the exit status after a Reboot command: the supervisor
// (systemd Restart=always) starts the controller again.
const ExitReboot = 75

// ImportFlags are import-bundle's flags.
type ImportFlags struct {
	Bundle, Wiring, Out string
	wiring.Opts
}

// ParseFlags reads the command line.
func (m *Main) ParseFlags(args []string) error {
	if len(args) > 0 && args[0] == "import-bundle" {
		return m.parseImport(args[1:])
	}
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.StringVar(&m.ConfigPath, "config", "/etc/beaconvend/controller.yaml", "the controller's YAML config")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&m.JSONLogs, "json-logs", false, "log JSON lines instead of text")
	fs.DurationVar(&m.ClockSkew, "clock-skew", 0, "TEST ONLY: shift the controller's clock by this duration (e.g. -10m) to simulate a board whose clock is wrong")
	fs.Usage = func() {
		fmt.Fprintf(m.Stderr, "usage: controller [-config FILE] [-log-level LEVEL] [-json-logs] [-clock-skew D]\n"+
			"       controller import-bundle -bundle FILE -wiring FILE [-out DIR] [-force] [-beacon hci|sim]\n\n"+
			"Runs the beaconvend controller described by FILE (see controller/testdata/controller.example.yaml);\n"+
			"import-bundle writes that file and its keys from a provisioning bundle (controller import-bundle -h).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return m.LogLevel.UnmarshalText([]byte(*level))
}

func (m *Main) parseImport(args []string) error {
	f := &ImportFlags{}
	fs := flag.NewFlagSet("controller import-bundle", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.StringVar(&f.Bundle, "bundle", "", "the provisioning bundle (bundle.json, written by cloud device add)")
	fs.StringVar(&f.Wiring, "wiring", "", "the board's wiring file (see controller/testdata/wiring.example.yaml)")
	fs.StringVar(&f.Out, "out", "/etc/beaconvend", "directory for controller.yaml and the key files")
	fs.BoolVar(&f.Force, "force", false, "replace an existing controller.yaml and key files")
	fs.StringVar(&f.Beacon, "beacon", "hci", "beacon backend: hci (the board's radio) or sim (simulated air, development only)")
	fs.BoolVar(&f.Plaintext, "plaintext", false, "DEVELOPMENT ONLY: accept a tcp:// broker URL to a host other than loopback (the device's password crosses the network in clear)")
	fs.Usage = func() {
		fmt.Fprintf(m.Stderr, "usage: controller import-bundle -bundle FILE -wiring FILE [-out DIR] [-force] [-beacon hci|sim] [-plaintext]\n\n"+
			"Writes the controller's config and key files for the device in FILE, wired as the wiring file says.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.Bundle == "" || f.Wiring == "" || fs.NArg() > 0 {
		err := errors.New("controller: import-bundle needs -bundle and -wiring and no other arguments")
		fmt.Fprintf(m.Stderr, "%v\n\n", err)
		fs.Usage()
		return err
	}
	m.Import = f
	return nil
}

// Run opens the daemon and serves until ctx is done or a Reboot command;
// with Import set it sets the board up instead and returns.
func (m *Main) Run(ctx context.Context) error {
	if f := m.Import; f != nil {
		path, err := wiring.ImportFiles(f.Bundle, f.Wiring, f.Out, f.Opts)
		if err != nil {
			return err
		}
		c, err := config.Load(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stderr, "controller: %s written; delete %s now (it holds the device's keys)\n", path, f.Bundle)
		b, _ := json.Marshal(map[string]string{"device": c.DeviceID, "config": path})
		_, err = fmt.Fprintln(m.Stdout, string(b))
		return err
	}
	var h slog.Handler = slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: m.LogLevel})
	if m.JSONLogs {
		h = slog.NewJSONHandler(m.Stderr, &slog.HandlerOptions{Level: m.LogLevel})
	}
	log := slog.New(h)
	cfg, err := config.Load(m.ConfigPath)
	if err != nil {
		return err
	}
	m.reboot = make(chan struct{})
	opts := daemon.Opts{Logger: log, OnReboot: func() { m.rebootOnce.Do(func() { close(m.reboot) }) }}
	if skew := m.ClockSkew; skew != 0 {
		log.Warn("clock skewed for testing", "skew", skew)
		opts.Now = func() time.Time { return time.Now().Add(skew) }
	}
	m.d, err = daemon.Open(ctx, cfg, opts)
	if err != nil {
		return err
	}
	log.Info("controller started", "device", cfg.DeviceID, "board", cfg.Board.Port, "broker", cfg.MQTT.Broker)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.reboot:
			cancel()
		case <-rctx.Done():
		}
	}()
	return m.d.Run(rctx)
}

// Close stops the daemon safely.
func (m *Main) Close() error {
	if m.d == nil {
		return nil
	}
	return m.d.Close()
}

func main() {
	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr}
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := m.Run(ctx)
	stop() // a second signal now kills the process
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
	if m.reboot != nil {
		select {
		case <-m.reboot:
			os.Exit(ExitReboot)
		default:
		}
	}
}
