package emu

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/profile"
)

// Errors returned by this package. Each is wrapped with detail, e.g.
// "emu: sim config: machines[1].coin: no output \"relay9\" on generic-relay-4".
var (
	ErrConfig  = vend.E(vend.Invalid, "emu.config", "emu: sim config")
	ErrRequest = vend.E(vend.Invalid, "emu.request", "emu: control request")
	ErrControl = vend.E(vend.Transient, "emu.control", "emu: control socket")
)

// Machine kinds a sim config can describe.
const (
	KindWater   = string(vend.KindWater)
	KindWasher  = string(vend.KindWasher)
	KindVending = string(vend.KindVending)
)

// Defaults for machine models, used where a sim config leaves a field out.
const (
	DefaultFlowLPM       = 8.0                    // litres per minute
	DefaultKFactor       = 450.0                  // pulses per litre (a common hall-effect meter)
	DefaultCredit        = 1                      // valid coin pulses per washer cycle
	DefaultCycle         = 30 * time.Second       // washer cycle time
	DefaultPulseMin      = 20 * time.Millisecond  // shortest valid coin pulse
	DefaultPulseMax      = 200 * time.Millisecond // longest valid coin pulse
	DefaultDropAfter     = 800 * time.Millisecond // motor ON time per vended item
	DefaultDropPulse     = 300 * time.Millisecond // drop-sensor active time per item
	maxPulsesPerLitre    = 1e6
	maxFlowLitresPerMin  = 1e4
	kFactorScale         = 1000 // K-factors are held in pulses per 1000 L
	flowRateScale        = 1000 // flow rates are held in mL per minute
	defaultProfileSimRun = "generic-relay-4"
)

// SimConfig describes, for one emulated board, which profile it follows and
// which machines are wired to its outputs, inputs and counters. It is read
// from YAML (see ParseSimConfig and the package documentation for the
// format).
type SimConfig struct {
	Profile     string          `yaml:"profile"`      // built-in name or path (relative to the config file); hwsim -profile overrides it
	CommTimeout time.Duration   `yaml:"comm_timeout"` // all outputs OFF when no valid request arrives within this time; 0 disables
	Machines    []MachineConfig `yaml:"machines"`

	dir string // directory of the config file, for a relative profile path
}

// MachineConfig is one machine wired to the board. Which fields apply
// depends on Kind; the others must be left out.
type MachineConfig struct {
	Name string `yaml:"name"` // unique within the config
	Kind string `yaml:"kind"` // water, washer or vending

	// water
	Valve   string  `yaml:"valve,omitempty"`    // output that opens the valve (or runs the pump)
	Flow    string  `yaml:"flow,omitempty"`     // counter the flow meter's pulses go to
	FlowLPM float64 `yaml:"flow_lpm,omitempty"` // litres per minute while the valve is open (default 8)
	KFactor float64 `yaml:"k_factor,omitempty"` // flow meter pulses per litre (default 450)

	// washer
	Coin     string        `yaml:"coin,omitempty"`      // output pulsed like a coin acceptor's signal
	Running  string        `yaml:"running,omitempty"`   // input active while a cycle runs
	Credit   int           `yaml:"credit,omitempty"`    // valid pulses that start a cycle (default 1)
	Cycle    time.Duration `yaml:"cycle,omitempty"`     // how long a cycle runs (default 30s)
	PulseMin time.Duration `yaml:"pulse_min,omitempty"` // shortest valid coin pulse (default 20ms)
	PulseMax time.Duration `yaml:"pulse_max,omitempty"` // longest valid coin pulse (default 200ms)

	// vending
	Drop      string        `yaml:"drop,omitempty"`       // shared drop-sensor input
	DropAfter time.Duration `yaml:"drop_after,omitempty"` // continuous motor ON time that vends one item (default 800ms)
	DropPulse time.Duration `yaml:"drop_pulse,omitempty"` // how long the drop sensor stays active per item (default 300ms)
	// DropCounter, when set, is a counter of the board that counts the
	// drop sensor's pulses in hardware: one per item dropped.
	DropCounter string       `yaml:"drop_counter,omitempty"`
	Slots       []SlotConfig `yaml:"slots,omitempty"`
}

// SlotConfig is one vending slot: a motor output, and whether it starts
// jammed (a jammed slot's motor turns but nothing drops).
type SlotConfig struct {
	Name   string `yaml:"name"`
	Motor  string `yaml:"motor"`
	Jammed bool   `yaml:"jammed,omitempty"`
}

// ParseSimConfig reads a sim config from YAML. Unknown fields are errors.
// It does not check the config against a profile; NewBoard does.
func ParseSimConfig(r io.Reader) (*SimConfig, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var c SimConfig
	if err := dec.Decode(&c); err != nil && err != io.EOF {
		return nil, vend.Errorf(ErrConfig, "%v", err)
	}
	if c.CommTimeout < 0 {
		return nil, vend.Errorf(ErrConfig, "comm_timeout: %v is negative", c.CommTimeout)
	}
	return &c, nil
}

//go:embed testdata/*.yaml
var examples embed.FS

// ExampleNames lists the sim configs built into the emulator (the files
// under hw/emu/testdata), usable by name wherever a sim config path is.
func ExampleNames() []string {
	ents, _ := examples.ReadDir("testdata")
	var n []string
	for _, e := range ents {
		n = append(n, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(n)
	return n
}

// Example returns the text of a built-in sim config, or false.
func Example(name string) ([]byte, bool) {
	b, err := examples.ReadFile("testdata/" + name + ".yaml")
	return b, err == nil
}

// LoadSimConfig reads a sim config file, or a built-in example when
// nameOrPath has no '/' and no ".yaml" suffix (see ExampleNames).
func LoadSimConfig(nameOrPath string) (*SimConfig, error) {
	if !strings.ContainsRune(nameOrPath, '/') && !strings.HasSuffix(nameOrPath, ".yaml") {
		b, ok := Example(nameOrPath)
		if !ok {
			return nil, vend.Errorf(ErrConfig, "no built-in sim config %q (have %s)", nameOrPath, strings.Join(ExampleNames(), ", "))
		}
		return ParseSimConfig(bytes.NewReader(b))
	}
	b, err := os.ReadFile(nameOrPath)
	if err != nil {
		return nil, fmt.Errorf("emu: sim config: %w", err)
	}
	c, err := ParseSimConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", nameOrPath, err)
	}
	c.dir = filepath.Dir(nameOrPath)
	return c, nil
}

// ResolveProfile returns the profile named by override, else by the
// config's profile field (a relative path is taken from the config file's
// directory), else generic-relay-4.
func (c *SimConfig) ResolveProfile(override string) (*profile.Profile, error) {
	name := override
	if name == "" && c != nil {
		name = c.Profile
		local := strings.ContainsRune(name, '/') || strings.HasSuffix(name, ".yaml")
		if local && c.dir != "" && !filepath.IsAbs(name) {
			name = filepath.Join(c.dir, name)
		}
	}
	if name == "" {
		name = defaultProfileSimRun
	}
	return profile.Resolve(name)
}

func cfgErr(field, format string, args ...any) error {
	return vend.Errorf(ErrConfig, "%s: %s", field, fmt.Sprintf(format, args...))
}

// validate checks c against p and fills defaults in a copy of each machine.
func (c *SimConfig) validate(p *profile.Profile) ([]MachineConfig, error) {
	names := map[string]bool{}
	usedOut := map[string]string{}
	usedIn := map[string]string{}
	useOut := func(f, name string) error {
		if name == "" {
			return cfgErr(f, "missing")
		}
		if _, ok := p.Output(name); !ok {
			return cfgErr(f, "no output %q on %s", name, p.Name)
		}
		if prev, ok := usedOut[name]; ok {
			return cfgErr(f, "output %q is already used by %s", name, prev)
		}
		usedOut[name] = f
		return nil
	}
	useIn := func(f, name string) error {
		if name == "" {
			return cfgErr(f, "missing")
		}
		if _, ok := p.Input(name); !ok {
			return cfgErr(f, "no input %q on %s", name, p.Name)
		}
		if prev, ok := usedIn[name]; ok {
			return cfgErr(f, "input %q is already used by %s", name, prev)
		}
		usedIn[name] = f
		return nil
	}
	var out []MachineConfig
	for i, m := range c.Machines {
		f := fmt.Sprintf("machines[%d]", i)
		if m.Name == "" {
			return nil, cfgErr(f+".name", "missing")
		}
		if names[m.Name] {
			return nil, cfgErr(f+".name", "%q is used twice", m.Name)
		}
		names[m.Name] = true
		only := func(kind string, set map[string]bool) error {
			for k, v := range set {
				if v {
					return cfgErr(f+"."+k, "not used by a %s machine", kind)
				}
			}
			return nil
		}
		water := map[string]bool{"valve": m.Valve != "", "flow": m.Flow != "", "flow_lpm": m.FlowLPM != 0, "k_factor": m.KFactor != 0}
		washer := map[string]bool{"coin": m.Coin != "", "running": m.Running != "", "credit": m.Credit != 0, "cycle": m.Cycle != 0, "pulse_min": m.PulseMin != 0, "pulse_max": m.PulseMax != 0}
		vending := map[string]bool{"drop": m.Drop != "", "drop_after": m.DropAfter != 0, "drop_pulse": m.DropPulse != 0, "drop_counter": m.DropCounter != "", "slots": len(m.Slots) > 0}
		switch m.Kind {
		case KindWater:
			if err := only(m.Kind, washer); err != nil {
				return nil, err
			}
			if err := only(m.Kind, vending); err != nil {
				return nil, err
			}
			if err := useOut(f+".valve", m.Valve); err != nil {
				return nil, err
			}
			if m.Flow == "" {
				return nil, cfgErr(f+".flow", "missing")
			}
			if _, ok := p.Counter(m.Flow); !ok {
				return nil, cfgErr(f+".flow", "no counter %q on %s", m.Flow, p.Name)
			}
			if prev, ok := usedIn["counter/"+m.Flow]; ok {
				return nil, cfgErr(f+".flow", "counter %q is already used by %s", m.Flow, prev)
			}
			usedIn["counter/"+m.Flow] = f
			if m.FlowLPM == 0 {
				m.FlowLPM = DefaultFlowLPM
			}
			if m.FlowLPM < 0 || m.FlowLPM > maxFlowLitresPerMin {
				return nil, cfgErr(f+".flow_lpm", "%g: want 0-%g", m.FlowLPM, float64(maxFlowLitresPerMin))
			}
			if m.KFactor == 0 {
				m.KFactor = DefaultKFactor
			}
			if m.KFactor < 0.001 || m.KFactor > maxPulsesPerLitre {
				return nil, cfgErr(f+".k_factor", "%g: want 0.001-%g pulses per litre", m.KFactor, float64(maxPulsesPerLitre))
			}
		case KindWasher:
			if err := only(m.Kind, water); err != nil {
				return nil, err
			}
			if err := only(m.Kind, vending); err != nil {
				return nil, err
			}
			if err := useOut(f+".coin", m.Coin); err != nil {
				return nil, err
			}
			if err := useIn(f+".running", m.Running); err != nil {
				return nil, err
			}
			if m.Credit == 0 {
				m.Credit = DefaultCredit
			}
			if m.Credit < 0 {
				return nil, cfgErr(f+".credit", "%d is negative", m.Credit)
			}
			if m.Cycle == 0 {
				m.Cycle = DefaultCycle
			}
			if m.PulseMin == 0 {
				m.PulseMin = DefaultPulseMin
			}
			if m.PulseMax == 0 {
				m.PulseMax = DefaultPulseMax
			}
			if m.Cycle < 0 || m.PulseMin < 0 || m.PulseMax < m.PulseMin {
				return nil, cfgErr(f, "cycle, pulse_min and pulse_max must be positive with pulse_min <= pulse_max")
			}
		case KindVending:
			if err := only(m.Kind, water); err != nil {
				return nil, err
			}
			if err := only(m.Kind, washer); err != nil {
				return nil, err
			}
			if err := useIn(f+".drop", m.Drop); err != nil {
				return nil, err
			}
			if m.DropCounter != "" {
				if _, ok := p.Counter(m.DropCounter); !ok {
					return nil, cfgErr(f+".drop_counter", "no counter %q on %s", m.DropCounter, p.Name)
				}
				if prev, ok := usedIn["counter/"+m.DropCounter]; ok {
					return nil, cfgErr(f+".drop_counter", "counter %q is already used by %s", m.DropCounter, prev)
				}
				usedIn["counter/"+m.DropCounter] = f
			}
			if len(m.Slots) == 0 {
				return nil, cfgErr(f+".slots", "a vending machine needs at least one slot")
			}
			slots := map[string]bool{}
			m.Slots = append([]SlotConfig(nil), m.Slots...)
			for j, s := range m.Slots {
				sf := fmt.Sprintf("%s.slots[%d]", f, j)
				if s.Name == "" {
					return nil, cfgErr(sf+".name", "missing")
				}
				if slots[s.Name] {
					return nil, cfgErr(sf+".name", "%q is used twice", s.Name)
				}
				slots[s.Name] = true
				if err := useOut(sf+".motor", s.Motor); err != nil {
					return nil, err
				}
			}
			if m.DropAfter == 0 {
				m.DropAfter = DefaultDropAfter
			}
			if m.DropPulse == 0 {
				m.DropPulse = DefaultDropPulse
			}
			if m.DropAfter < 0 || m.DropPulse < 0 {
				return nil, cfgErr(f, "drop_after and drop_pulse must be positive")
			}
		default:
			return nil, cfgErr(f+".kind", "%q: want water, washer or vending", m.Kind)
		}
		out = append(out, m)
	}
	return out, nil
}
