package wiring

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/hw/profile"
)

// Errors. Each is wrapped with detail naming the field or the file.
var (
	// ErrWiring is a wiring file that does not decode or does not fit the
	// bundle or the board.
	ErrWiring = vend.E(vend.Invalid, "wiring.invalid", "wiring")
	// ErrExists is an output directory that already holds a config or key
	// file (import again with Force to replace them).
	ErrExists = vend.E(vend.Conflict, "wiring.exists", "wiring: output exists")
)

// DefaultJournal is where the journal goes when the wiring names none: the
// state directory of the controller's systemd unit.
const DefaultJournal = "/var/lib/beaconvend/journal.db"

// DefaultKFactor is the flow meter K-factor (pulses per litre) of a water
// machine whose wiring gives none: a common hall-effect meter.
const DefaultKFactor = "450"

// Wiring is the board's wiring file.
type Wiring struct {
	Profile      string              `yaml:"profile"`       // built-in profile name or YAML path (relative to the wiring file)
	Port         string              `yaml:"port"`          // serial port of the I/O board
	PollInterval config.Duration     `yaml:"poll_interval"` // default: the controller's (100ms)
	Journal      string              `yaml:"journal"`       // bbolt file; default DefaultJournal
	Modem        *Modem              `yaml:"modem"`         // optional
	Beacon       Beacon              `yaml:"beacon"`        // optional
	Machines     map[string]*Machine `yaml:"machines"`      // by the bundle's machine ID; absent: wired in order

	dir string // directory of the wiring file, for a relative profile path
}

// Modem is the cellular modem's AT port.
type Modem struct {
	Port         string          `yaml:"port"`
	PollInterval config.Duration `yaml:"poll_interval"`
}

// Beacon tunes the BLE advertisement (the backend is chosen at import).
type Beacon struct {
	HCIDevice int    `yaml:"hci_device"` // adapter index, default 0
	CompanyID uint16 `yaml:"company_id"` // default 0xFFFF (tests); use your SIG company ID
	TxPower   int8   `yaml:"tx_power"`   // calibrated dBm at 0 m, default -59
	Name      string `yaml:"name"`       // scan-response name, optional
	Offline   bool   `yaml:"offline_capable"`
	// GATT serves the board's GATT relay service beside the beacon
	// (controller config beacon.gatt; hci backend only).
	GATT            bool            `yaml:"gatt"`
	GATTIdleTimeout config.Duration `yaml:"gatt_idle_timeout"` // 0: the controller's default (30 s)
	SimAddr         string          `yaml:"sim_addr"`          // simulated air address, for the sim backend only
	SimRSSI         int             `yaml:"sim_rssi"`          // simulated signal at the phone, dBm, for the sim backend only
}

// Machine is one machine's wiring. Which fields apply depends on the
// machine's kind in the bundle; the others must be left out.
type Machine struct {
	// water
	Valve          string          `yaml:"valve"`           // output that opens the valve
	Flow           string          `yaml:"flow"`            // counter of the flow meter's pulses
	KFactor        string          `yaml:"k_factor"`        // pulses per litre, up to 3 decimals; default DefaultKFactor
	NoFlow         config.Duration `yaml:"no_flow"`         // no pulses for this long stops the session
	PauseAllowance config.Duration `yaml:"pause_allowance"` // how long a user pause may last

	// washer, dryer
	Coin            string          `yaml:"coin"`              // output pulsed into the coin acceptor line
	Running         string          `yaml:"running"`           // input active while the machine runs
	PulseWidth      config.Duration `yaml:"pulse_width"`       // default 50ms
	PulseGap        config.Duration `yaml:"pulse_gap"`         // default 100ms
	PulsesPerCredit int             `yaml:"pulses_per_credit"` // coin pulses one cycle takes, as the machine is set up; default 1
	StartTimeout    config.Duration `yaml:"start_timeout"`
	Debounce        config.Duration `yaml:"debounce"`

	// vending
	Drop        string            `yaml:"drop"`         // drop sensor input
	DropCounter string            `yaml:"drop_counter"` // optional counter counting the drop input
	DropTimeout config.Duration   `yaml:"drop_timeout"` // default 5s
	Slots       map[string]string `yaml:"slots"`        // slot ID → motor output
}

func bad(field, format string, args ...any) error {
	return vend.Errorf(ErrWiring, "%s: %s", field, fmt.Sprintf(format, args...))
}

// Parse reads a wiring file strictly; dir resolves a relative profile path.
// Errors name the field.
func Parse(r io.Reader, dir string) (*Wiring, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var w Wiring
	if err := dec.Decode(&w); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, bad("document", "empty: want at least profile and port")
		}
		return nil, vend.Errorf(ErrWiring, "%v", err)
	}
	w.dir = dir
	if w.Profile == "" {
		return nil, bad("profile", "missing: a built-in board profile (%s) or a YAML file", strings.Join(profile.Names(), ", "))
	}
	if w.Port == "" {
		return nil, bad("port", "missing: the I/O board's serial port, e.g. /dev/ttyUSB0")
	}
	if w.Modem != nil && w.Modem.Port == "" {
		return nil, bad("modem.port", "missing (leave modem out on a board without one)")
	}
	if w.Machines != nil && len(w.Machines) == 0 {
		return nil, bad("machines", "empty: list the bundle's machines, or leave machines out to wire them in order")
	}
	for id, m := range w.Machines {
		if m == nil {
			return nil, bad("machines."+id, "empty: name its channels")
		}
	}
	return &w, nil
}

// Load reads a wiring file; a relative profile path in it is relative to
// the file's directory.
func Load(path string) (*Wiring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, vend.Errorf(ErrWiring, "%v", err)
	}
	w, err := Parse(bytes.NewReader(b), filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}

// profilePath is the profile as the config names it: a built-in name as
// is, a file as an absolute path.
func (w *Wiring) profilePath() (string, error) {
	p := w.Profile
	if !strings.ContainsRune(p, '/') && !strings.HasSuffix(p, ".yaml") {
		return p, nil
	}
	if !filepath.IsAbs(p) && w.dir != "" {
		p = filepath.Join(w.dir, p)
	}
	return filepath.Abs(p)
}

// set lists the fields of m that are set, by YAML name, per kind group.
func (m *Machine) set() map[string][]string {
	g := map[string][]string{}
	add := func(kind, name string, on bool) {
		if on {
			g[kind] = append(g[kind], name)
		}
	}
	add("water", "valve", m.Valve != "")
	add("water", "flow", m.Flow != "")
	add("water", "k_factor", m.KFactor != "")
	add("water", "no_flow", m.NoFlow != 0)
	add("water", "pause_allowance", m.PauseAllowance != 0)
	add("washer", "coin", m.Coin != "")
	add("washer", "running", m.Running != "")
	add("washer", "pulse_width", m.PulseWidth != 0)
	add("washer", "pulse_gap", m.PulseGap != 0)
	add("washer", "pulses_per_credit", m.PulsesPerCredit != 0)
	add("washer", "start_timeout", m.StartTimeout != 0)
	add("washer", "debounce", m.Debounce != 0)
	add("vending", "drop", m.Drop != "")
	add("vending", "drop_counter", m.DropCounter != "")
	add("vending", "drop_timeout", m.DropTimeout != 0)
	add("vending", "slots", m.Slots != nil)
	return g
}

// check tests one explicitly wired machine against its bundle entry.
func (m *Machine) check(f string, bm provision.Machine) error {
	group := string(bm.Kind)
	if bm.Kind == vend.KindDryer {
		group = "washer"
	}
	for g, names := range m.set() {
		if g != group {
			return bad(f+"."+names[0], "not a %s field", bm.Kind)
		}
	}
	need := func(name, v string) error {
		if v == "" {
			return bad(f+"."+name, "missing for a %s", bm.Kind)
		}
		return nil
	}
	switch bm.Kind {
	case vend.KindWater:
		if err := need("valve", m.Valve); err != nil {
			return err
		}
		return need("flow", m.Flow)
	case vend.KindWasher, vend.KindDryer:
		if err := need("coin", m.Coin); err != nil {
			return err
		}
		if m.PulsesPerCredit < 0 || m.PulsesPerCredit > 50 {
			return bad(f+".pulses_per_credit", "%d: want 1-50 coin pulses per cycle", m.PulsesPerCredit)
		}
		for _, d := range []struct {
			name string
			v    config.Duration
		}{{"pulse_width", m.PulseWidth}, {"pulse_gap", m.PulseGap}} {
			if d.v != 0 && (d.v.D() < 20*time.Millisecond || d.v.D() > time.Second) {
				return bad(f+"."+d.name, "%s: want 20ms-1s", d.v.D())
			}
		}
		return need("running", m.Running)
	case vend.KindVending:
		if err := need("drop", m.Drop); err != nil {
			return err
		}
		for _, s := range bm.Slots {
			if m.Slots[s.ID] == "" {
				return bad(f+".slots."+s.ID, "missing: the bundle sells slot %s; name its motor output", s.ID)
			}
		}
		for _, id := range sortedKeys(m.Slots) {
			if !hasSlot(bm, id) {
				return bad(f+".slots."+id, "no slot %s in the bundle's machine %s", id, bm.ID)
			}
		}
	}
	return nil
}

func hasSlot(bm provision.Machine, id string) bool {
	for _, s := range bm.Slots {
		if s.ID == id {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// machines returns the wiring of every machine of b: the explicit one
// checked against the bundle, or the profile's defaults in order.
func (w *Wiring) machines(b *provision.Bundle, p *profile.Profile) (map[string]*Machine, error) {
	if w.Machines == nil {
		return autoWire(b, p)
	}
	for _, bm := range b.Machines {
		m, ok := w.Machines[bm.ID]
		if !ok {
			return nil, bad("machines."+bm.ID, "missing: the bundle has a %s %q; wire it here", bm.Kind, bm.ID)
		}
		if err := m.check("machines."+bm.ID, bm); err != nil {
			return nil, err
		}
	}
	if err := distinct(b, w.Machines, p); err != nil {
		return nil, err
	}
	for _, id := range sortedKeys(w.Machines) {
		found := false
		for _, bm := range b.Machines {
			found = found || bm.ID == id
		}
		if !found {
			return nil, bad("machines."+id, "not a machine of device %s's bundle", b.DeviceID)
		}
	}
	return w.Machines, nil
}

// distinct refuses a channel wired to two machines (or two slots): a
// purchase on one would drive or read the other. The profile's claim
// input is taken too: a machine holding it at power-up (a washer still
// running after a power cut) would reset the board to registration mode.
func distinct(b *provision.Bundle, ms map[string]*Machine, p *profile.Profile) error {
	used := map[string]string{} // "output relay1" → field
	if p.ClaimInput != "" {
		used["input "+p.ClaimInput] = "the board's claim input (held at power-up: a factory reset)"
	}
	use := func(kind, name, field string) error {
		if name == "" {
			return nil
		}
		k := kind + " " + name
		if prev, ok := used[k]; ok {
			return bad(field, "%s %s is already %s", kind, name, prev)
		}
		used[k] = field
		return nil
	}
	for _, bm := range b.Machines {
		m, f := ms[bm.ID], "machines."+bm.ID
		for _, u := range []struct{ kind, name, field string }{
			{"output", m.Valve, f + ".valve"}, {"counter", m.Flow, f + ".flow"},
			{"output", m.Coin, f + ".coin"}, {"input", m.Running, f + ".running"},
			{"input", m.Drop, f + ".drop"}, {"counter", m.DropCounter, f + ".drop_counter"},
		} {
			if err := use(u.kind, u.name, u.field); err != nil {
				return err
			}
		}
		for _, s := range bm.Slots {
			if err := use("output", m.Slots[s.ID], f+".slots."+s.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// autoWire assigns the profile's channels in order (see the package doc).
func autoWire(b *provision.Bundle, p *profile.Profile) (map[string]*Machine, error) {
	usedOut, usedIn, usedCnt := map[int]bool{}, map[int]bool{}, map[int]bool{}
	for i, in := range p.Inputs {
		if in.Name == p.ClaimInput && p.ClaimInput != "" {
			usedIn[i] = true // the claim input: never a machine's (see distinct)
		}
	}
	next := func(used map[int]bool, n int) int {
		for i := 0; i < n; i++ {
			if !used[i] {
				used[i] = true
				return i
			}
		}
		return -1
	}
	short := func(bm provision.Machine, what string) error {
		return bad("machines", "board %s has no free %s for %s %q: wire the machines explicitly under machines:", p.Name, what, bm.Kind, bm.ID)
	}
	out := map[string]*Machine{}
	for _, bm := range b.Machines {
		m := &Machine{}
		switch bm.Kind {
		case vend.KindWater:
			o, c := next(usedOut, len(p.Outputs)), next(usedCnt, len(p.Counters))
			if o < 0 {
				return nil, short(bm, "output (valve)")
			}
			if c < 0 {
				return nil, short(bm, "counter (flow meter)")
			}
			m.Valve, m.Flow = p.Outputs[o].Name, p.Counters[c].Name
		case vend.KindWasher, vend.KindDryer:
			o, i := next(usedOut, len(p.Outputs)), next(usedIn, len(p.Inputs))
			if o < 0 {
				return nil, short(bm, "output (coin)")
			}
			if i < 0 {
				return nil, short(bm, "input (running)")
			}
			m.Coin, m.Running = p.Outputs[o].Name, p.Inputs[i].Name
		case vend.KindVending:
			drop := -1
			if len(p.Counters) > 0 {
				for i := 0; i < len(p.Inputs) && i < len(p.Counters); i++ {
					if !usedIn[i] && !usedCnt[i] {
						drop = i
						usedCnt[i] = true
						m.DropCounter = p.Counters[i].Name
						break
					}
				}
			} else if n := len(p.Inputs) - 1; n >= 0 && !usedIn[n] {
				drop = n
			}
			if drop < 0 {
				return nil, short(bm, "input (drop sensor)")
			}
			usedIn[drop] = true
			m.Drop = p.Inputs[drop].Name
			m.Slots = map[string]string{}
			for _, s := range bm.Slots {
				o := next(usedOut, len(p.Outputs))
				if o < 0 {
					return nil, short(bm, "output (motor of slot "+s.ID+")")
				}
				m.Slots[s.ID] = p.Outputs[o].Name
			}
		default:
			return nil, bad("machines", "%s %q: unknown kind", bm.Kind, bm.ID)
		}
		out[bm.ID] = m
	}
	return out, nil
}
