// Command controller is the beaconvend daemon on a machine's Linux board:
// it advertises the rotating proximity ID, verifies grants from the cloud,
// switches the machine's outputs through the Modbus I/O board, meters what
// it delivers into a bbolt journal, and reports signed usage over MQTT.
//
//	controller -config /etc/beaconvend/controller.yaml
//	controller -config /etc/beaconvend/controller.yaml -wiring /etc/beaconvend/wiring.yaml -claim-dir /var/lib/beaconvend/claim
//	controller import-bundle -bundle bundle.json -wiring wiring.yaml -out /etc/beaconvend [-force] [-beacon sim]
//
// # Registration mode (claiming a board over BLE)
//
// A board shipped with only its wiring file (the installer's: board profile,
// serial port, which outputs drive which machine) runs with -wiring and
// -claim-dir (the systemd unit's ExecStart line). At power-up the controller
// then:
//
//  1. opens the claim state in -claim-dir (package controller/claim): at
//     first boot it draws the board's X25519 sealing key there;
//  2. reads the board profile's claim input (claim_input, e.g. a button on
//     the I/O board) over the serial port named in the wiring; held at
//     power-up, it resets the claim: a new sealing key, the old config,
//     key files and journal set aside (never deleted), registration mode;
//  3. if the board is unclaimed (no -config file yet, or just reset), runs
//     registration mode: the board's radio (the wiring's beacon.hci_device,
//     hci0 by default) advertises the unclaimed frame (beacon version 2, a
//     tag of the sealing key) connectable, and serves the registration GATT
//     service (ClaimInfo, Bundle; app-protocol/GATT.md). The installer's
//     phone reads the key, the cloud seals the device's bundle to it, the
//     phone writes it in chunks; the board opens it, writes -config and its
//     keys from it and the wiring, atomically, and answers the last chunk;
//  4. stops advertising and starts the daemon below with the new config in
//     the same process: the board comes online with no restart.
//
// A claimed board goes straight to step 4, so the same command line serves
// a board for its whole life. Without -claim-dir the controller needs
// -config to exist, as before.
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

	"beaconvend/controller/claim"
	"beaconvend/controller/config"
	"beaconvend/controller/daemon"
	"beaconvend/controller/wiring"
	"beaconvend/hw/ble"
	"beaconvend/hw/modbus"
	"beaconvend/hw/profile"
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
	// ClaimDir and WiringPath turn registration mode on (see the command
	// doc): the claim state directory and the board's wiring file.
	ClaimDir, WiringPath string
	// ImportBeacon is the beacon backend written into a config made by a
	// claim: "hci" (default) or "sim" (development and tests).
	ImportBeacon string
	// Radio opens the board's radio for registration mode; nil means the
	// HCI adapter hci<index> (ble.OpenHCI). Tests put a scripted one here.
	Radio func(index int, log *slog.Logger) (claim.Radio, error)
	// Registered, when set, is closed once registration mode is over (the
	// board is claimed) and the daemon is starting.
	Registered chan struct{}

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
	fs.StringVar(&m.ClaimDir, "claim-dir", "", "registration mode: the claim state directory (e.g. /var/lib/beaconvend/claim); needs -wiring")
	fs.StringVar(&m.WiringPath, "wiring", "", "registration mode: the board's wiring file, for the config a claim writes")
	fs.StringVar(&m.ImportBeacon, "claim-beacon", "hci", "registration mode: the beacon backend written into the claimed config: hci, or sim (development only)")
	fs.DurationVar(&m.ClockSkew, "clock-skew", 0, "TEST ONLY: shift the controller's clock by this duration (e.g. -10m) to simulate a board whose clock is wrong")
	fs.Usage = func() {
		fmt.Fprintf(m.Stderr, "usage: controller [-config FILE] [-wiring FILE -claim-dir DIR] [-log-level LEVEL] [-json-logs] [-clock-skew D]\n"+
			"       controller import-bundle -bundle FILE -wiring FILE [-out DIR] [-force] [-beacon hci|sim]\n\n"+
			"Runs the beaconvend controller described by FILE (see controller/testdata/controller.example.yaml);\n"+
			"import-bundle writes that file and its keys from a provisioning bundle (controller import-bundle -h).\n"+
			"With -wiring and -claim-dir an unclaimed board (no config yet, or the profile's claim input held at\n"+
			"power-up) first runs registration mode: it is claimed over BLE, writes FILE, and then runs it.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (m.ClaimDir == "") != (m.WiringPath == "") || fs.NArg() > 0 {
		err := errors.New("controller: registration mode needs both -claim-dir and -wiring, and no arguments")
		fmt.Fprintf(m.Stderr, "%v\n\n", err)
		fs.Usage()
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
	var claimInfo func() []byte
	if m.ClaimDir != "" {
		b, err := m.register(ctx, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped (SIGTERM) in registration mode: nothing to clean up
			}
			return err
		}
		if m.Registered != nil {
			close(m.Registered)
		}
		// The claimed board's ClaimInfo, served beside the relay.
		claimInfo = func() []byte {
			v, err := b.Info().MarshalBinary()
			if err != nil {
				log.Error("claim info", "err", err)
				return nil
			}
			return v
		}
	}
	cfg, err := config.Load(m.ConfigPath)
	if err != nil {
		return err
	}
	m.reboot = make(chan struct{})
	opts := daemon.Opts{Logger: log, ClaimInfo: claimInfo, OnReboot: func() { m.rebootOnce.Do(func() { close(m.reboot) }) }}
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

// register is power-up in registration mode (see the command doc): the
// claim state, the claim input, and registration mode until claimed.
func (m *Main) register(ctx context.Context, log *slog.Logger) (*claim.Board, error) {
	b, err := claim.Open(m.ClaimDir, claim.Opts{ConfigPath: m.ConfigPath, WiringPath: m.WiringPath,
		Import: wiring.Opts{Beacon: m.ImportBeacon}, Logger: log})
	if err != nil {
		return nil, err
	}
	w, prof, err := b.Wiring()
	if err != nil {
		return nil, err
	}
	if prof.ClaimInput != "" {
		held, err := m.claimHeld(ctx, w.Port, prof)
		switch {
		case err != nil:
			// A board that cannot read its button starts as it is: the
			// reset can wait for the next power-up, a claimed board's
			// machines should not.
			log.Warn("claim input not read; no factory reset", "input", prof.ClaimInput, "err", err)
		case held:
			log.Warn("claim input held at power-up: factory reset", "input", prof.ClaimInput)
			if _, err := b.Reset(); err != nil {
				return nil, err
			}
		}
	}
	if !b.Registration() {
		if err := b.ConfigErr(); err != nil {
			return nil, fmt.Errorf("%w (hold the claim input at power-up to reset the board to registration mode)", err)
		}
		return b, nil
	}
	open := m.Radio
	if open == nil {
		open = func(index int, log *slog.Logger) (claim.Radio, error) {
			o := ble.DefaultHCIOpts()
			o.Logger = log
			h, err := ble.OpenHCI(index, o)
			if err != nil {
				return nil, err
			}
			return h, nil
		}
	}
	r, err := open(w.Beacon.HCIDevice, log)
	if err != nil {
		return nil, fmt.Errorf("controller: registration mode: %w", err)
	}
	log.Info("registration mode: waiting to be claimed", "seal_key", fmt.Sprintf("%x", b.SealKey()), "config", b.ConfigPath())
	err = claim.Serve(ctx, r, b, claim.NewService(b, log), claim.RadioOpts{CompanyID: w.Beacon.CompanyID, TxPower: w.Beacon.TxPower,
		GATT: &ble.GATTOpts{Name: "beaconvend", Logger: log}, Logger: log})
	// The daemon opens the radio again for its own beacon.
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	info := b.Info()
	log.Info("claimed: starting", "device", info.Device, "config", b.ConfigPath())
	return b, nil
}

// claimHeld reads the claim input over the board's serial port.
func (m *Main) claimHeld(ctx context.Context, port string, p *profile.Profile) (bool, error) {
	bus, err := modbus.Open(port, p.Serial, nil)
	if err != nil {
		return false, err
	}
	defer bus.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return claim.ClaimHeld(rctx, bus, p)
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
