package profile

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/vend"
)

// ErrProfile is returned for a profile that breaks a rule; the message
// names the field, e.g. "profile: outputs[2].coil: 9 is used by outputs[0]".
var ErrProfile = vend.E(vend.Invalid, "profile.invalid", "profile")

// Profile describes one Modbus RTU I/O board: how to reach it and what its
// coils, discrete inputs and registers mean.
type Profile struct {
	Name        string    `yaml:"name"`        // short identifier, e.g. generic-relay-4
	Description string    `yaml:"description"` // free text: make, model, where it is sold
	SlaveID     byte      `yaml:"slave_id"`    // Modbus address, 1-247
	Serial      Serial    `yaml:"serial"`
	Outputs     []Output  `yaml:"outputs"`  // coils that drive relays or transistor outputs
	Inputs      []Input   `yaml:"inputs"`   // discrete inputs that read sensors
	Counters    []Counter `yaml:"counters"` // registers that count pulses
	Watchdog    *Watchdog `yaml:"watchdog,omitempty"`
	// ClaimInput names the discrete input (one of Inputs) that, held
	// active at power-up, resets the board's claim and enters registration
	// mode (controller/claim): a push button or jumper wired to the I/O
	// board. Empty: no such input (a board then leaves registration mode
	// only by being claimed, and is reset by removing its config).
	ClaimInput string `yaml:"claim_input,omitempty"`
}

// Serial is the line setting. Most boards ship at 9600 8N1.
type Serial struct {
	Baud     int    `yaml:"baud"`      // bits per second: 1200-115200
	Parity   string `yaml:"parity"`    // none, even or odd
	DataBits int    `yaml:"data_bits"` // 8 (Modbus RTU needs 8)
	StopBits int    `yaml:"stop_bits"` // 1 or 2
}

// Output is one coil.
type Output struct {
	Name string `yaml:"name"` // referenced by machine configs: valve, motor-3
	Coil uint16 `yaml:"coil"` // 0-based coil address
}

// Input is one discrete input.
type Input struct {
	Name      string `yaml:"name"`
	Input     uint16 `yaml:"input"`      // 0-based discrete input address
	ActiveLow bool   `yaml:"active_low"` // true when the sensor pulls the input low when active
}

// Counter is a pulse counter held in one or two 16-bit registers.
type Counter struct {
	Name      string `yaml:"name"`
	Table     string `yaml:"table"`      // input (function 04) or holding (function 03)
	Register  uint16 `yaml:"register"`   // 0-based address of the first word
	Width     int    `yaml:"width"`      // 16 or 32 bits
	WordOrder string `yaml:"word_order"` // for 32 bits: high_first (big-endian words) or low_first
}

// Watchdog is a board-side output lease: writing Timeout (in Unit
// milliseconds) to a holding register arms it; if the register is not
// written again within that time the board switches every output off
// itself. Boards without one need the controller's hardware watchdog
// (see the package documentation).
type Watchdog struct {
	Register uint16 `yaml:"register"` // holding register to write
	UnitMS   int    `yaml:"unit_ms"`  // milliseconds per count, e.g. 100
}

// Parse reads a profile from YAML and validates it. Unknown fields are
// errors, so a typo does not silently drop a setting.
func Parse(r io.Reader) (*Profile, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, vend.Errorf(ErrProfile, "%v", err)
	}
	p.defaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Load reads a profile file.
func Load(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	p, err := Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

//go:embed boards/*.yaml
var builtin embed.FS

// Builtin returns a profile shipped with beaconvend by name (see Names).
func Builtin(name string) (*Profile, error) {
	b, err := builtin.ReadFile("boards/" + name + ".yaml")
	if err != nil {
		return nil, vend.Errorf(ErrProfile, "no built-in profile %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return Parse(bytes.NewReader(b))
}

// Names lists the built-in profiles.
func Names() []string {
	ents, _ := builtin.ReadDir("boards")
	var n []string
	for _, e := range ents {
		n = append(n, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(n)
	return n
}

// Resolve returns a built-in profile when nameOrPath has no '/' and no
// ".yaml" suffix, else loads the file.
func Resolve(nameOrPath string) (*Profile, error) {
	if !strings.ContainsRune(nameOrPath, '/') && !strings.HasSuffix(nameOrPath, ".yaml") {
		return Builtin(nameOrPath)
	}
	return Load(nameOrPath)
}

func (p *Profile) defaults() {
	if p.Serial.Parity == "" {
		p.Serial.Parity = "none"
	}
	if p.Serial.DataBits == 0 {
		p.Serial.DataBits = 8
	}
	if p.Serial.StopBits == 0 {
		p.Serial.StopBits = 1
	}
	for i := range p.Counters {
		c := &p.Counters[i]
		if c.Table == "" {
			c.Table = "input"
		}
		if c.Width == 0 {
			c.Width = 16
		}
		if c.Width == 32 && c.WordOrder == "" {
			c.WordOrder = "high_first"
		}
	}
}

func bad(field, format string, args ...any) error {
	return vend.Errorf(ErrProfile, "%s: %s", field, fmt.Sprintf(format, args...))
}

// Validate returns ErrProfile naming the first field that is wrong.
func (p *Profile) Validate() error {
	if p.Name == "" {
		return bad("name", "missing")
	}
	if p.SlaveID < 1 || p.SlaveID > 247 {
		return bad("slave_id", "%d is outside 1-247", p.SlaveID)
	}
	switch p.Serial.Baud {
	case 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200:
	default:
		return bad("serial.baud", "%d is not a standard rate (1200-115200)", p.Serial.Baud)
	}
	switch p.Serial.Parity {
	case "none", "even", "odd":
	default:
		return bad("serial.parity", "%q: want none, even or odd", p.Serial.Parity)
	}
	if p.Serial.DataBits != 8 {
		return bad("serial.data_bits", "%d: Modbus RTU needs 8", p.Serial.DataBits)
	}
	if p.Serial.StopBits != 1 && p.Serial.StopBits != 2 {
		return bad("serial.stop_bits", "%d: want 1 or 2", p.Serial.StopBits)
	}
	names := map[string]string{}
	name := func(field, n string) error {
		if n == "" {
			return bad(field+".name", "missing")
		}
		if prev, ok := names[n]; ok {
			return bad(field+".name", "%q is already used by %s", n, prev)
		}
		names[n] = field
		return nil
	}
	if len(p.Outputs) == 0 {
		return bad("outputs", "a board needs at least one output")
	}
	coils := map[uint16]string{}
	for i, o := range p.Outputs {
		f := fmt.Sprintf("outputs[%d]", i)
		if err := name(f, o.Name); err != nil {
			return err
		}
		if prev, ok := coils[o.Coil]; ok {
			return bad(f+".coil", "%d is used by %s", o.Coil, prev)
		}
		coils[o.Coil] = f
	}
	ins := map[uint16]string{}
	for i, in := range p.Inputs {
		f := fmt.Sprintf("inputs[%d]", i)
		if err := name(f, in.Name); err != nil {
			return err
		}
		if prev, ok := ins[in.Input]; ok {
			return bad(f+".input", "%d is used by %s", in.Input, prev)
		}
		ins[in.Input] = f
	}
	regs := map[string]string{}
	for i, c := range p.Counters {
		f := fmt.Sprintf("counters[%d]", i)
		if err := name(f, c.Name); err != nil {
			return err
		}
		if c.Table != "input" && c.Table != "holding" {
			return bad(f+".table", "%q: want input or holding", c.Table)
		}
		switch c.Width {
		case 16:
			if c.WordOrder != "" {
				return bad(f+".word_order", "only for 32-bit counters")
			}
		case 32:
			if c.WordOrder != "high_first" && c.WordOrder != "low_first" {
				return bad(f+".word_order", "%q: want high_first or low_first", c.WordOrder)
			}
		default:
			return bad(f+".width", "%d: want 16 or 32", c.Width)
		}
		for w := 0; w < c.Width/16; w++ {
			k := fmt.Sprintf("%s/%d", c.Table, int(c.Register)+w)
			if prev, ok := regs[k]; ok {
				return bad(f+".register", "%s register %d is used by %s", c.Table, int(c.Register)+w, prev)
			}
			regs[k] = f
		}
	}
	if w := p.Watchdog; w != nil {
		if w.UnitMS < 1 || w.UnitMS > 10000 {
			return bad("watchdog.unit_ms", "%d: want 1-10000", w.UnitMS)
		}
		if prev, ok := regs[fmt.Sprintf("holding/%d", w.Register)]; ok {
			return bad("watchdog.register", "%d is used by %s", w.Register, prev)
		}
	}
	if p.ClaimInput != "" {
		if _, ok := p.Input(p.ClaimInput); !ok {
			return bad("claim_input", "%q is not one of the board's inputs", p.ClaimInput)
		}
	}
	return nil
}

// Output returns the output called name.
func (p *Profile) Output(name string) (Output, bool) {
	for _, o := range p.Outputs {
		if o.Name == name {
			return o, true
		}
	}
	return Output{}, false
}

// Input returns the input called name.
func (p *Profile) Input(name string) (Input, bool) {
	for _, in := range p.Inputs {
		if in.Name == name {
			return in, true
		}
	}
	return Input{}, false
}

// Counter returns the counter called name.
func (p *Profile) Counter(name string) (Counter, bool) {
	for _, c := range p.Counters {
		if c.Name == name {
			return c, true
		}
	}
	return Counter{}, false
}

// Value assembles a counter's value from its registers as read (words[0]
// is the register at c.Register).
func (c Counter) Value(words []uint16) uint32 {
	if c.Width == 16 || len(words) < 2 {
		if len(words) == 0 {
			return 0
		}
		return uint32(words[0])
	}
	if c.WordOrder == "low_first" {
		return uint32(words[1])<<16 | uint32(words[0])
	}
	return uint32(words[0])<<16 | uint32(words[1])
}

// Words splits a value into the registers that hold it (the inverse of
// Value), for emulators.
func (c Counter) Words(v uint32) []uint16 {
	if c.Width == 16 {
		return []uint16{uint16(v)}
	}
	if c.WordOrder == "low_first" {
		return []uint16{uint16(v), uint16(v >> 16)}
	}
	return []uint16{uint16(v >> 16), uint16(v)}
}
