// Command controller is the beaconvend daemon on a machine's Linux board:
// it advertises the rotating proximity ID, verifies grants from the cloud,
// switches the machine's outputs through the Modbus I/O board, meters what
// it delivers into a bbolt journal, and reports signed usage over MQTT.
//
//	controller -config /etc/beaconvend/controller.yaml
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

	d          *daemon.Daemon
	reboot     chan struct{}
	rebootOnce sync.Once
}

// ExitReboot is the exit status after a Reboot command: the supervisor
// (systemd Restart=always) starts the controller again.
const ExitReboot = 75

// ParseFlags reads the command line.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.StringVar(&m.ConfigPath, "config", "/etc/beaconvend/controller.yaml", "the controller's YAML config")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&m.JSONLogs, "json-logs", false, "log JSON lines instead of text")
	fs.DurationVar(&m.ClockSkew, "clock-skew", 0, "TEST ONLY: shift the controller's clock by this duration (e.g. -10m) to simulate a board whose clock is wrong")
	fs.Usage = func() {
		fmt.Fprintf(m.Stderr, "usage: controller [-config FILE] [-log-level LEVEL] [-json-logs] [-clock-skew D]\n\n"+
			"Runs the beaconvend controller described by FILE (see controller/testdata/controller.example.yaml).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return m.LogLevel.UnmarshalText([]byte(*level))
}

// Run opens the daemon and serves until ctx is done or a Reboot command.
func (m *Main) Run(ctx context.Context) error {
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
	m := &Main{Stderr: os.Stderr}
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
