// Command hwsim emulates a Modbus RTU I/O board (and, with -modem, a
// cellular modem) on pseudo-terminals, with machines wired to the board's
// outputs and inputs and a control socket for fault injection. Run
// "hwsim -h" for the flags, the sim config format and the control
// commands; package beaconvend/hw/emu documents the models.
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
	"strings"
	"syscall"
	"time"

	"beaconvend/hw/emu"
	"beaconvend/hw/modem/sim"
	"beaconvend/hw/profile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	slog.SetDefault(m.Logger)
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		m.Close()
		os.Exit(1)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-m.Done():
	}
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Paths is the line hwsim prints with -json once its ptys and control
// socket are ready.
type Paths struct {
	Board   string `json:"board"`           // pty slave a Modbus master opens, /dev/pts/N
	Control string `json:"control"`         // Unix socket for control commands
	Modem   string `json:"modem,omitempty"` // pty slave of the AT-command modem, with -modem
}

// Main is the hwsim program, reusable in-process by tests: ParseFlags,
// Run, then Close.
type Main struct {
	// Flags.
	Profile     string        // -profile: built-in name or YAML path
	Sim         string        // -sim: sim config name or path
	CommTimeout time.Duration // -comm-timeout
	JSON        bool          // -json
	Modem       bool          // -modem
	ControlPath string        // -control
	Verbose     bool          // -v

	Stdout io.Writer    // paths (and the -json line); os.Stdout by default
	Stderr io.Writer    // usage and logs; os.Stderr by default
	Logger *slog.Logger // set by ParseFlags from -v, writing to Stderr

	Emulator *emu.Emulator // set by Run
	ModemSim *sim.Modem    // set by Run with -modem
	Paths    Paths         // set by Run

	cancel context.CancelFunc
	done   chan error
}

// NewMain returns a Main writing to os.Stdout and os.Stderr.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, done: make(chan error, 1)}
}

const usageHead = `hwsim emulates a Modbus RTU I/O board on a pseudo-terminal, with machines
(water dispensers, coin washers, vending machines) wired to its outputs and
inputs, so the controller, its tests and the demo run real serial code
without hardware. It prints the board's pty (open it as a serial port, any
baud rate) and a control socket for fault injection, then runs until
SIGINT or SIGTERM.

Usage: hwsim [flags]

Flags:
`

const usageTail = `
Board profiles (-profile NAME or a YAML file, see package hw/profile):
  %s

Sim config (-sim): a YAML file, or the name of a built-in one (%s).
  profile: pulse-io-4        # built-in name or path; -profile overrides it
  comm_timeout: 3s           # no valid request within this → all outputs OFF (optional)
  machines:
    - name: tap              # water: valve output ON → flow pulses into a counter
      kind: water
      valve: out1
      flow: count1           # counter (input or holding registers, per profile)
      flow_lpm: 8            # litres per minute while open (default 8)
      k_factor: 450          # meter pulses per litre (default 450)
    - name: washer-1         # washer: valid coin pulses buy a cycle; running input while it runs
      kind: washer
      coin: relay1
      running: in1
      credit: 4              # valid pulses per cycle (default 1; the controller's
                             # wiring must say pulses_per_credit: 4 too)
      cycle: 30m             # default 30s
      pulse_min: 20ms        # a pulse is valid if ON for pulse_min..pulse_max
      pulse_max: 200ms
    - name: snacks           # vending: a motor ON for drop_after drops one item;
      kind: vending          # the shared drop input is then active for drop_pulse
      drop: in16
      drop_after: 800ms      # default 800ms
      drop_pulse: 300ms      # default 300ms
      # drop_counter: count1 # a profile counter that also counts each item dropped
      slots:
        - {name: A1, motor: relay1}
        - {name: A2, motor: relay2, jammed: true}
  Inputs read their electrical level: an active_low input reads 1 when idle.
  The profile's watchdog register (e.g. pulse-io-4: holding 100, 100 ms
  units): writing N > 0 arms an N-unit lease; when it lapses without a new
  write every output goes OFF; 0 disarms.

Control socket: one JSON object per line in, one JSON line out
({"ok":true,"status":{...}} or {"ok":false,"error":"..."}). Try:
  echo '{"cmd":"status"}' | socat - UNIX-CONNECT:SOCKET
Commands:
  {"cmd":"status"}                                   whole state and the truth: coils, inputs,
                                                     counters, per machine delivered ml/pulses,
                                                     cycles, items; watchdog/comm trips; stats
  {"cmd":"corrupt_crc","count":3}                    corrupt the next 3 replies' CRC
  {"cmd":"corrupt_crc","probability":0.1}            ... or each reply with this chance (0 clears)
  {"cmd":"no_reply","count":2}                       leave the next 2 requests unanswered
  {"cmd":"no_reply","probability":0.05}              ... or each with this chance (0 clears)
  {"cmd":"delay","delay_ms":400}                     wait before every reply (0 clears)
  {"cmd":"stuck_input","input":"in3","level":true}   force an input's level; without level: release
  {"cmd":"expire_lease"}                             all outputs OFF now, as a lapsed lease
  {"cmd":"jam","machine":"snacks","slot":"A1","jammed":true}
  {"cmd":"flow_rate","machine":"tap","lpm":4.5}
  {"cmd":"clear_faults"}                             clear crc/no_reply/delay/stuck faults
  {"cmd":"deliveries","since":0}                     the delivery log after that seq: each valve
                                                     opening (µL), motor run (items), coin pulse
 With -modem also:
  {"cmd":"modem_signal","value":12}                  +CSQ rssi 0-31 or 99
  {"cmd":"modem_lose_signal"}    {"cmd":"modem_deny"}
  {"cmd":"modem_register","roaming":false}
  {"cmd":"modem_silent","on":true}                   hang (true) or resume (false)
  {"cmd":"modem_slow","delay_ms":2000}               delay every AT reply
  {"cmd":"modem_urc","text":"RING"}                  send an unsolicited line
  {"cmd":"modem_garbage","count":16}                 send line noise
Go tests use emu.Dial(path) and its typed methods.

Examples:
  hwsim -sim water -json
  hwsim -profile generic-relay-8 -sim washers -comm-timeout 2s
  hwsim -profile ./my-board.yaml -modem
`

// ParseFlags reads the command line. It returns flag.ErrHelp after
// printing the usage for -h, and an error naming the flag otherwise.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("hwsim", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.StringVar(&m.Profile, "profile", "", "board profile: built-in `NAME` or PATH to a YAML file (default: the sim config's, else generic-relay-4)")
	fs.StringVar(&m.Sim, "sim", "", "sim config: `PATH` to a YAML file or a built-in name (default: no machines, a bare board)")
	fs.DurationVar(&m.CommTimeout, "comm-timeout", 0, "switch every output OFF when no valid request arrives for this `duration` (overrides the sim config; 0 keeps it, negative disables)")
	fs.BoolVar(&m.JSON, "json", false, `print one JSON line {"board":..., "control":..., "modem":...} on stdout (human text goes to stderr)`)
	fs.BoolVar(&m.Modem, "modem", false, "also emulate a cellular modem's AT port on a second pty (package hw/modem/sim)")
	fs.StringVar(&m.ControlPath, "control", "", "control socket `path` (default: a fresh temporary directory's control.sock)")
	fs.BoolVar(&m.Verbose, "v", false, "log every model event (valve, drops, cycles) at debug level")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), usageTail, strings.Join(profile.Names(), ", "), strings.Join(emu.ExampleNames(), ", "))
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("hwsim: unexpected argument %q (see -h)", fs.Arg(0))
	}
	level := slog.LevelInfo
	if m.Verbose {
		level = slog.LevelDebug
	}
	m.Logger = slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: level}))
	return nil
}

// Run opens the emulated board (and modem), prints their paths and starts
// serving in the background; it returns once they are ready. A failure
// while serving is sent on Done. Call Close to stop.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	var cfg *emu.SimConfig
	if m.Sim != "" {
		var err error
		if cfg, err = emu.LoadSimConfig(m.Sim); err != nil {
			return err
		}
	}
	p, err := cfg.ResolveProfile(m.Profile)
	if err != nil {
		return err
	}
	e, err := emu.Open(p, cfg, &emu.Opts{Logger: m.Logger, CommTimeout: m.CommTimeout, ControlPath: m.ControlPath})
	if err != nil {
		return err
	}
	m.Emulator = e
	m.Paths = Paths{Board: e.BoardPath(), Control: e.ControlPath()}
	if m.Modem {
		md, err := sim.New(&sim.Opts{Logger: m.Logger})
		if err != nil {
			return err
		}
		m.ModemSim = md
		m.Paths.Modem = md.Path()
		m.addModemCommands(md)
	}
	if m.done == nil {
		m.done = make(chan error, 1)
	}
	ctx, m.cancel = context.WithCancel(ctx)
	go func() { m.done <- e.Run(ctx) }()

	human := m.Stdout
	if m.JSON {
		human = m.Stderr
		b, _ := json.Marshal(m.Paths)
		fmt.Fprintf(m.Stdout, "%s\n", b)
	}
	fmt.Fprintf(human, "hwsim: board %s (slave %d) on %s\n", p.Name, p.SlaveID, m.Paths.Board)
	fmt.Fprintf(human, "hwsim: control socket %s\n", m.Paths.Control)
	if m.Paths.Modem != "" {
		fmt.Fprintf(human, "hwsim: modem on %s\n", m.Paths.Modem)
	}
	return nil
}

// Done delivers Run's serving error (nil after a clean stop) once. Call
// it after Run.
func (m *Main) Done() <-chan error { return m.done }

func (m *Main) addModemCommands(md *sim.Modem) {
	b := m.Emulator.Board
	b.HandleCommand("modem_signal", func(r emu.Request) error {
		if r.Value == nil {
			return fmt.Errorf("%w: modem_signal: value (0-31 or 99) missing", emu.ErrRequest)
		}
		if *r.Value == 99 {
			md.LoseSignal()
		} else {
			md.SetSignal(*r.Value)
		}
		return nil
	})
	b.HandleCommand("modem_lose_signal", func(emu.Request) error { md.LoseSignal(); return nil })
	b.HandleCommand("modem_register", func(r emu.Request) error { md.Register(r.Roaming); return nil })
	b.HandleCommand("modem_deny", func(emu.Request) error { md.Deny(); return nil })
	b.HandleCommand("modem_silent", func(r emu.Request) error { md.Silent(r.On == nil || *r.On); return nil })
	b.HandleCommand("modem_slow", func(r emu.Request) error {
		md.SlowReply(time.Duration(r.DelayMS) * time.Millisecond)
		return nil
	})
	b.HandleCommand("modem_urc", func(r emu.Request) error {
		if r.Text == "" {
			return fmt.Errorf("%w: modem_urc: text missing", emu.ErrRequest)
		}
		md.URC(r.Text)
		return nil
	})
	b.HandleCommand("modem_garbage", func(r emu.Request) error {
		if r.Count < 1 || r.Count > 4096 {
			return fmt.Errorf("%w: modem_garbage: count 1-4096", emu.ErrRequest)
		}
		md.Garbage(r.Count)
		return nil
	})
}

// Close stops serving and releases the ptys and the socket.
func (m *Main) Close() error {
	if m.cancel != nil {
		m.cancel()
	}
	var err error
	if m.Emulator != nil {
		err = m.Emulator.Close()
	}
	if m.ModemSim != nil {
		if merr := m.ModemSim.Close(); err == nil {
			err = merr
		}
	}
	return err
}
