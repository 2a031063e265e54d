package claim_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/claim"
	"beaconvend/controller/config"
	"beaconvend/controller/wiring"
	"beaconvend/hw/profile"
)

// rig is a board's directories: the claim state, the config directory and
// an installed wiring file (four washers on a generic-relay-8).
type rig struct {
	state, cfgDir, wiring, journal string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{state: filepath.Join(dir, "var", "claim"), cfgDir: filepath.Join(dir, "etc"),
		wiring: filepath.Join(dir, "wiring.yaml"), journal: filepath.Join(dir, "var", "journal.db")}
	w := fmt.Sprintf("profile: generic-relay-8\nport: /dev/ttyUSB0\njournal: %s\n", r.journal)
	if err := os.WriteFile(r.wiring, []byte(w), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) cfgPath() string { return filepath.Join(r.cfgDir, wiring.ConfigFile) }

func (r *rig) open(t *testing.T) *claim.Board {
	t.Helper()
	b, err := claim.Open(r.state, claim.Opts{ConfigPath: r.cfgPath(), WiringPath: r.wiring})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return b
}

// files lists the config directory, recursively, as name → contents.
func (r *rig) files(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(r.cfgDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(r.cfgDir, p)
		out[rel] = string(b)
		return nil
	})
	return out
}

// testBundle is a bundle as `POST /v1/operator/claims` makes it: four
// washers, keys drawn here.
func testBundle(t *testing.T, device string) (*provision.Bundle, []byte) {
	t.Helper()
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	_, dev, _ := ed25519.GenerateKey(rand.Reader)
	var id proxid.Key
	rand.Read(id[:])
	b := &provision.Bundle{Version: provision.Version, DeviceID: device, OperatorID: "op_1", IdentityKey: id,
		DeviceKey: dev.Seed(), K: 5, CloudPublicKeys: []ed25519.PublicKey{cloud.Public().(ed25519.PublicKey)},
		MQTT: provision.MQTT{URL: "tcp://127.0.0.1:1883", Username: device, Password: "pw-" + device}}
	for i := 1; i <= 4; i++ {
		b.Machines = append(b.Machines, provision.Machine{ID: fmt.Sprintf("washer%d", i), Kind: vend.KindWasher,
			Unit: vend.UnitCycle, Currency: "EUR", Price: vend.Price{Minor: 350, Per: 1}})
	}
	var buf bytes.Buffer
	if err := b.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	return b, buf.Bytes()
}

func seal(t *testing.T, key, doc []byte) []byte {
	t.Helper()
	s, err := provision.Seal(key, doc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sealedFor(t *testing.T, b *claim.Board, device string) (*provision.Bundle, []byte) {
	t.Helper()
	bundle, doc := testBundle(t, device)
	return bundle, seal(t, b.SealKey(), doc)
}

// checkClaimed checks that the config directory holds a complete claimed
// board for bundle: the config loads with its keys, and Info says so.
func checkClaimed(t *testing.T, r *rig, b *claim.Board, bundle *provision.Bundle) {
	t.Helper()
	c, err := config.Load(r.cfgPath())
	if err != nil {
		t.Fatalf("config after claim: %v", err)
	}
	s, err := c.LoadSecrets()
	if err != nil {
		t.Fatalf("keys after claim: %v", err)
	}
	if c.DeviceID != bundle.DeviceID || len(c.Machines) != len(bundle.Machines) || s.Identity != bundle.IdentityKey ||
		!bytes.Equal(s.Device.Seed(), bundle.DeviceKey) || c.MQTT.Broker != bundle.MQTT.URL {
		t.Fatalf("config after claim: device %q, %d machines, broker %s; want the bundle's", c.DeviceID, len(c.Machines), c.MQTT.Broker)
	}
	want := ed25519.NewKeyFromSeed(bundle.DeviceKey).Public().(ed25519.PublicKey)
	ci := b.Info()
	if ci.State != gattapi.Claimed || ci.Device != bundle.DeviceID || !bytes.Equal(ci.SignKey, want) || !bytes.Equal(ci.SealKey, b.SealKey()) {
		t.Fatalf("Info after claim = %+v; want claimed %s with the device key", ci, bundle.DeviceID)
	}
	if _, err := ci.MarshalBinary(); err != nil {
		t.Fatalf("claimed Info does not encode: %v", err)
	}
	if b.Registration() {
		t.Fatal("a claimed board is in registration mode")
	}
	for name := range r.files(t) {
		if strings.HasPrefix(name, ".") || strings.Contains(name, "/.") {
			t.Errorf("left over after the claim: %s", name)
		}
	}
}

func checkUnclaimed(t *testing.T, r *rig, b *claim.Board) {
	t.Helper()
	if _, err := os.Stat(r.cfgPath()); err == nil {
		t.Fatalf("%s exists on an unclaimed board", r.cfgPath())
	}
	ci := b.Info()
	if ci.State != gattapi.Unclaimed || ci.Device != "" || ci.SignKey != nil || !bytes.Equal(ci.SealKey, b.SealKey()) {
		t.Fatalf("Info = %+v; want unclaimed", ci)
	}
	if _, err := ci.MarshalBinary(); err != nil {
		t.Fatalf("unclaimed Info does not encode: %v", err)
	}
	if !b.Registration() {
		t.Fatal("an unclaimed board is not in registration mode")
	}
	select {
	case <-b.Claimed():
		t.Fatal("Claimed is closed on an unclaimed board")
	default:
	}
}

// First boot draws the sealing key and stores it 0600; the next boot (a
// new Open) has the same key.
func TestFirstBootKeyPersists(t *testing.T) {
	r := newRig(t)
	b := r.open(t)
	checkUnclaimed(t, r, b)
	key := b.SealKey()
	if _, err := ecdh.X25519().NewPublicKey(key); err != nil || len(key) != 32 {
		t.Fatalf("seal key %x: %v", key, err)
	}
	fi, err := os.Stat(filepath.Join(r.state, claim.SealKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("seal key file mode %v, want 0600", fi.Mode().Perm())
	}
	for i := 0; i < 2; i++ {
		again := r.open(t)
		if !bytes.Equal(again.SealKey(), key) {
			t.Fatalf("restart %d: seal key %x, want %x", i, again.SealKey(), key)
		}
		checkUnclaimed(t, r, again)
	}
	// A damaged key file is an error, not a silent new key.
	os.WriteFile(filepath.Join(r.state, claim.SealKeyFile), []byte("zz\n"), 0o600)
	if _, err := claim.Open(r.state, claim.Opts{ConfigPath: r.cfgPath(), WiringPath: r.wiring}); !errors.Is(err, claim.ErrClaim) {
		t.Errorf("Open with a damaged seal key: %v, want ErrClaim", err)
	}
}

// A bundle sealed to the board's key claims it: the config and keys are
// written and load, Info tells the device, and the claim survives a restart.
func TestAcceptClaims(t *testing.T) {
	r := newRig(t)
	b := r.open(t)
	bundle, sealed := sealedFor(t, b, "laundry-1")
	// A journal left at the wiring's journal path (a board set up by hand
	// before) is not inherited by the new device.
	os.MkdirAll(filepath.Dir(r.journal), 0o700)
	os.WriteFile(r.journal, []byte("someone else's outbox"), 0o600)
	path, err := b.Accept(sealed)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if path != r.cfgPath() {
		t.Errorf("Accept returned %s, want %s", path, r.cfgPath())
	}
	select {
	case <-b.Claimed():
	default:
		t.Fatal("Claimed not closed after Accept")
	}
	checkClaimed(t, r, b, bundle)
	if _, err := os.Stat(r.journal); err == nil {
		t.Error("the new device inherits the journal found at its path")
	}
	if old, _ := filepath.Glob(r.journal + ".replaced-*"); len(old) != 1 {
		t.Errorf("the old journal set aside as %v, want one file", old)
	}
	for _, n := range []string{wiring.ConfigFile, wiring.IdentityKeyFile, wiring.DeviceKeyFile, wiring.PasswordFile} {
		fi, err := os.Stat(filepath.Join(r.cfgDir, n))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", n, err, fi.Mode().Perm())
		}
	}
	again := r.open(t)
	checkClaimed(t, r, again, bundle)
	select {
	case <-again.Claimed():
	default:
		t.Fatal("Claimed not closed for a board opened claimed")
	}
}

// Refusals change nothing on disk and say why, with a code the phone gets
// as an ATT error.
func TestAcceptRefusals(t *testing.T) {
	r := newRig(t)
	b := r.open(t)
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	_, doc := testBundle(t, "laundry-1")
	junk := make([]byte, 300)
	rand.Read(junk)
	tampered := seal(t, b.SealKey(), doc)
	tampered[len(tampered)-1] ^= 1
	water := strings.Replace(string(doc), `"kind": "washer"`, `"kind": "water"`, 1) // no counter on a relay board
	if water == string(doc) {
		t.Fatalf("bundle layout changed: %s", doc)
	}
	cases := []struct {
		name   string
		sealed []byte
		code   string
	}{
		{"sealed to another board", seal(t, other.PublicKey().Bytes(), doc), "claim.open"},
		{"tampered", tampered, "claim.open"},
		{"garbage", junk, "claim.open"},
		{"empty", nil, "claim.open"},
		{"one byte", []byte{1}, "claim.open"},
		{"the bare document", doc, "claim.open"},
		{"too long", make([]byte, gattapi.MaxBundle+1), "gatt.too_long"},
		{"not a bundle", seal(t, b.SealKey(), []byte(`{"version":1}`)), "gatt.field"},
		{"not JSON", seal(t, b.SealKey(), []byte("\x00\x01")), "gatt.field"},
		{"does not fit the wiring", seal(t, b.SealKey(), []byte(water)), "gatt.field"},
	}
	for _, tc := range cases {
		_, err := b.Accept(tc.sealed)
		if got := vend.CodeOf(err); got != tc.code {
			t.Errorf("%s: Accept = %v (code %q), want %s", tc.name, err, got, tc.code)
		}
		if gattapi.ATTCode(err) == gattapi.ATTCodes["board.internal"] {
			t.Errorf("%s: ATT code 0x9F (board fault) for a refused bundle", tc.name)
		}
		if f := r.files(t); len(f) != 0 {
			t.Errorf("%s: refused bundle wrote %v", tc.name, slices.Collect(mapsKeys(f)))
		}
		checkUnclaimed(t, r, b)
	}

	// Claimed: a second bundle, even validly sealed to this board, is
	// refused and changes nothing.
	bundle, sealed := sealedFor(t, b, "laundry-1")
	if _, err := b.Accept(sealed); err != nil {
		t.Fatal(err)
	}
	before := r.files(t)
	_, second := sealedFor(t, b, "laundry-2")
	for i, s := range [][]byte{sealed, second} {
		if _, err := b.Accept(s); !errors.Is(err, gattapi.ErrNotRegistration) || gattapi.ATTCode(err) != 0x93 {
			t.Errorf("bundle %d after the claim: %v, want claim.not_registration (0x93)", i, err)
		}
		// And after a restart too.
		if _, err := r.open(t).Accept(s); !errors.Is(err, gattapi.ErrNotRegistration) {
			t.Errorf("bundle %d after a restart: %v, want claim.not_registration", i, err)
		}
	}
	if after := r.files(t); !mapsEqual(before, after) {
		t.Error("a refused second bundle changed the config directory")
	}
	checkClaimed(t, r, b, bundle)
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// steps records the steps of a successful claim.
func steps(t *testing.T) []string {
	t.Helper()
	r := newRig(t)
	b := r.open(t)
	var s []string
	claim.SetStep(b, func(step string) error { s = append(s, step); return nil })
	_, sealed := sealedFor(t, b, "laundry-1")
	if _, err := b.Accept(sealed); err != nil {
		t.Fatal(err)
	}
	return s
}

var errInjected = errors.New("injected: write failed")

// A failed write (or a crash) between any two steps of a claim leaves
// either the unclaimed board, which a restart finds clean and which takes
// the same bundle again, or the complete claimed one. Never a partial
// config.
func TestAcceptFailsBetweenSteps(t *testing.T) {
	all := steps(t)
	if !slices.Contains(all, "promote "+wiring.ConfigFile) || !slices.Contains(all, "staged") {
		t.Fatalf("steps %q", all)
	}
	for _, fail := range all {
		for _, restart := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/restart=%v", fail, restart), func(t *testing.T) {
				r := newRig(t)
				b := r.open(t)
				key := b.SealKey()
				// A previous interrupted claim's leftovers make it harder.
				claim.SetStep(b, func(step string) error {
					if step == fail {
						return errInjected
					}
					return nil
				})
				bundle, sealed := sealedFor(t, b, "laundry-1")
				if _, err := b.Accept(sealed); !errors.Is(err, errInjected) {
					t.Fatalf("Accept failing at %q: %v", fail, err)
				}
				claim.SetStep(b, nil)
				committed := fail == "promoted"
				if restart {
					b = r.open(t)
					if !bytes.Equal(b.SealKey(), key) {
						t.Fatal("the seal key changed across the crash")
					}
				}
				if committed {
					checkClaimed(t, r, b, bundle)
					return
				}
				if _, err := os.Stat(r.cfgPath()); err == nil {
					t.Fatalf("failing at %q left %s", fail, r.cfgPath())
				}
				if restart {
					for name := range r.files(t) {
						if strings.HasPrefix(name, ".claim-") {
							t.Errorf("staging %s survived the restart", name)
						}
					}
				}
				checkUnclaimed(t, r, b)
				if _, err := b.Accept(sealed); err != nil {
					t.Fatalf("the same bundle after the failure: %v", err)
				}
				checkClaimed(t, r, b, bundle)
				// Leftovers of the interrupted promotion are set aside, not
				// deleted, and not in the config directory.
				for name := range r.files(t) {
					dir, _ := filepath.Split(name)
					if dir != "" && !strings.HasPrefix(dir, "replaced-") {
						t.Errorf("unexpected file %s", name)
					}
				}
			})
		}
	}
}

// fakeInputs is a bus with one discrete input map.
type fakeInputs struct {
	read func(slave byte, addr, qty uint16) ([]bool, error)
}

func (f fakeInputs) ReadDiscreteInputs(_ context.Context, slave byte, addr, qty uint16) ([]bool, error) {
	return f.read(slave, addr, qty)
}

var _ claim.InputReader = fakeInputs{}

func claimProfile(t *testing.T, activeLow bool) *profile.Profile {
	t.Helper()
	p, err := profile.Parse(strings.NewReader(fmt.Sprintf(`name: b
slave_id: 7
serial: {baud: 9600}
outputs: [{name: relay1, coil: 0}]
inputs: [{name: in1, input: 0}, {name: button, input: 5, active_low: %v}]
claim_input: button
`, activeLow)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The claim input is read from the profile's slave and address, with its
// polarity; a bus error is reported, not taken as held.
func TestClaimHeld(t *testing.T) {
	for _, tc := range []struct {
		activeLow, level, held bool
	}{{false, true, true}, {false, false, false}, {true, false, true}, {true, true, false}} {
		p := claimProfile(t, tc.activeLow)
		in := fakeInputs{read: func(slave byte, addr, qty uint16) ([]bool, error) {
			if slave != 7 || addr != 5 || qty != 1 {
				return nil, fmt.Errorf("read slave %d input %d x%d", slave, addr, qty)
			}
			return []bool{tc.level}, nil
		}}
		if held, err := claim.ClaimHeld(context.Background(), in, p); err != nil || held != tc.held {
			t.Errorf("active_low %v, level %v: held %v, %v; want %v", tc.activeLow, tc.level, held, err, tc.held)
		}
	}
	bus := errors.New("modbus: timeout")
	if held, err := claim.ClaimHeld(context.Background(), fakeInputs{read: func(byte, uint16, uint16) ([]bool, error) { return nil, bus }}, claimProfile(t, false)); !errors.Is(err, bus) || held {
		t.Errorf("bus error: held %v, %v", held, err)
	}
	p, _ := profile.Builtin("generic-relay-8")
	if held, err := claim.ClaimHeld(context.Background(), fakeInputs{read: func(byte, uint16, uint16) ([]bool, error) { panic("read") }}, p); held || err != nil {
		t.Errorf("profile without a claim input: held %v, %v", held, err)
	}
}

// The claim input held at power-up resets the claim: a new sealing key,
// the old config and journal set aside (not deleted), registration mode
// again; the old key's bundles no longer open, a bundle sealed to the new
// key claims the board again.
func TestClaimInputResets(t *testing.T) {
	r := newRig(t)
	b := r.open(t)
	_, sealed := sealedFor(t, b, "laundry-1")
	if _, err := b.Accept(sealed); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(r.journal), 0o700)
	os.WriteFile(r.journal, []byte("journal of laundry-1"), 0o600)
	old := r.files(t)
	oldKey := b.SealKey()

	// Power-up with the button held.
	b = r.open(t)
	held, err := claim.ClaimHeld(context.Background(), fakeInputs{read: func(byte, uint16, uint16) ([]bool, error) { return []bool{true}, nil }}, claimProfile(t, false))
	if err != nil || !held {
		t.Fatalf("ClaimHeld = %v, %v", held, err)
	}
	aside, err := b.Reset()
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if bytes.Equal(b.SealKey(), oldKey) {
		t.Fatal("Reset kept the sealing key")
	}
	checkUnclaimed(t, r, b)
	now := r.files(t)
	for name, data := range old {
		if got, ok := now[filepath.Join(filepath.Base(aside), name)]; !ok || got != data {
			t.Errorf("%s not set aside intact in %s", name, aside)
		}
	}
	if j, err := os.ReadFile(r.journal + "." + filepath.Base(aside)); err != nil || string(j) != "journal of laundry-1" {
		t.Errorf("journal not set aside: %q, %v", j, err)
	}
	if _, err := os.Stat(r.journal); err == nil {
		t.Error("the old journal is still in place")
	}
	// A restart keeps the new key and registration mode.
	b = r.open(t)
	checkUnclaimed(t, r, b)
	if _, err := b.Accept(sealed); vend.CodeOf(err) != "claim.open" {
		t.Errorf("the old bundle after the reset: %v, want claim.open", err)
	}
	bundle, fresh := sealedFor(t, b, "laundry-9")
	if _, err := b.Accept(fresh); err != nil {
		t.Fatalf("claim after the reset: %v", err)
	}
	checkClaimed(t, r, b, bundle)
}

// A failure at any step of a reset leaves either the claimed board (with a
// new key) or an unclaimed one; a second reset completes it.
func TestResetFailsBetweenSteps(t *testing.T) {
	for _, fail := range []string{"rekeyed", "intent", "journal", "aside controller.yaml", "aside identity.key", "aside mqtt.pass"} {
		t.Run(fail, func(t *testing.T) {
			r := newRig(t)
			b := r.open(t)
			bundle, sealed := sealedFor(t, b, "laundry-1")
			if _, err := b.Accept(sealed); err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Dir(r.journal), 0o700)
			os.WriteFile(r.journal, []byte("j"), 0o600)
			key := b.SealKey()
			claim.SetStep(b, func(step string) error {
				if step == fail {
					return errInjected
				}
				return nil
			})
			if _, err := b.Reset(); !errors.Is(err, errInjected) {
				t.Fatalf("Reset failing at %q: %v", fail, err)
			}
			b = r.open(t)
			if bytes.Equal(b.SealKey(), key) {
				t.Error("the sealing key survived a reset that began")
			}
			// Before the intent is stored the board is still claimed (with
			// a new key); after it, the restart finishes the reset.
			if fail == "rekeyed" {
				checkClaimed(t, r, b, bundle)
			} else {
				checkUnclaimed(t, r, b)
				if _, err := os.Stat(r.journal); err == nil {
					t.Error("the restart did not set the old journal aside")
				}
			}
			if _, err := b.Reset(); err != nil {
				t.Fatalf("second Reset: %v", err)
			}
			checkUnclaimed(t, r, b)
			if _, err := os.Stat(r.journal); err == nil {
				t.Error("the old journal is still in place")
			}
		})
	}
}

// A claimed board whose config no longer loads opens (so that the claim
// input can still reset it), says why, refuses bundles, and is recovered by
// a factory reset.
func TestBrokenConfigIsResettable(t *testing.T) {
	r := newRig(t)
	b := r.open(t)
	_, sealed := sealedFor(t, b, "laundry-1")
	if _, err := b.Accept(sealed); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(r.cfgPath(), []byte("device_id: [\n"), 0o600)
	b = r.open(t)
	if b.Registration() || !errors.Is(b.ConfigErr(), claim.ErrClaim) {
		t.Fatalf("broken config: registration %v, ConfigErr %v; want claimed with ErrClaim", b.Registration(), b.ConfigErr())
	}
	if _, err := b.Accept(sealed); !errors.Is(err, gattapi.ErrNotRegistration) {
		t.Errorf("Accept on a broken claimed board: %v", err)
	}
	if _, err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	checkUnclaimed(t, r, b)
	if b.ConfigErr() != nil {
		t.Errorf("ConfigErr after the reset: %v", b.ConfigErr())
	}
	bundle, fresh := sealedFor(t, b, "laundry-2")
	if _, err := b.Accept(fresh); err != nil {
		t.Fatal(err)
	}
	checkClaimed(t, r, b, bundle)
}

// Whatever bytes arrive as a bundle, Accept answers with a coded error and
// writes nothing (seeds run in every test; go test -fuzz explores).
func FuzzAccept(f *testing.F) {
	dir := f.TempDir()
	w := filepath.Join(dir, "wiring.yaml")
	os.WriteFile(w, []byte("profile: generic-relay-8\nport: /dev/ttyUSB0\njournal: "+filepath.Join(dir, "j.db")+"\n"), 0o644)
	cfgDir := filepath.Join(dir, "etc")
	b, err := claim.Open(filepath.Join(dir, "state"), claim.Opts{ConfigPath: filepath.Join(cfgDir, wiring.ConfigFile), WiringPath: w})
	if err != nil {
		f.Fatal(err)
	}
	for _, doc := range [][]byte{nil, []byte("{}"), []byte(`{"version":1,"device_id":"x"}`), bytes.Repeat([]byte{0xff}, 100)} {
		s, _ := provision.Seal(b.SealKey(), doc)
		f.Add(s)
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, sealed []byte) {
		_, err := b.Accept(sealed)
		if err == nil {
			t.Fatalf("Accept(% x) claimed the board", sealed[:min(len(sealed), 16)])
		}
		if vend.CodeOf(err) == "internal" {
			t.Fatalf("Accept: uncoded error %v", err)
		}
		if ents, _ := os.ReadDir(cfgDir); len(ents) != 0 {
			t.Fatalf("Accept(% x) left %d entries", sealed[:min(len(sealed), 16)], len(ents))
		}
	})
}
