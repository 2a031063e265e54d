package protocol_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the code")

const vectorsFile = "testdata/vectors.json"

// File is the layout of vectors.json; VECTORS.md documents it.
type File struct {
	Format      string   `json:"format"`
	Description string   `json:"description"`
	Keys        TestKeys `json:"keys"`
	Cases       []Case   `json:"cases"`
}

// TestKeys are fixed, public test keys. Never use them for anything else.
type TestKeys struct {
	IdentityKey  string `json:"identity_key"`
	CloudSeed    string `json:"cloud_seed"`
	CloudPublic  string `json:"cloud_public"`
	CloudKeyID   string `json:"cloud_key_id"`
	DeviceSeed   string `json:"device_seed"`
	DevicePublic string `json:"device_public"`
	DeviceKeyID  string `json:"device_key_id"`
}

// Case is one vector. Kind says which fields are used.
type Case struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Note string `json:"note,omitempty"`

	// frame_encode, frame_decode
	Frame     *FrameJSON `json:"frame,omitempty"`
	CompanyID *uint16    `json:"company_id,omitempty"`
	Bytes     string     `json:"bytes,omitempty"`
	Name_     string     `json:"local_name,omitempty"`

	// proximity_id
	Time       *uint32 `json:"time,omitempty"`
	K          *uint8  `json:"k,omitempty"`
	Window     *uint32 `json:"window,omitempty"`
	TempKey    string  `json:"temp_key,omitempty"`
	ProxID     string  `json:"proximity_id,omitempty"`
	IdentityKy string  `json:"identity_key,omitempty"`

	// cost
	Price  *vend.Price `json:"price,omitempty"`
	Units  *uint64     `json:"units,omitempty"`
	Amount *int64      `json:"amount,omitempty"`
	Budget *int64      `json:"budget,omitempty"`

	// grant, usage, *_decode, grant_verify
	Grant  *GrantJSON `json:"grant,omitempty"`
	Usage  *UsageJSON `json:"usage,omitempty"`
	Body   string     `json:"body,omitempty"`
	Signed string     `json:"signed,omitempty"`
	Check  *CheckJSON `json:"check,omitempty"`
	// key_rotation: the next cloud public key; Signed holds the current cloud key's signature
	NextKey string `json:"next_public_key,omitempty"`
	// grant_verify: flip bit 0 of this byte of the signed grant before verifying
	AlterByte *int `json:"alter_byte,omitempty"`

	Error string `json:"error,omitempty"` // the expected error code; empty when the case succeeds
}

type FrameJSON struct {
	CompanyID      uint16 `json:"company_id"`
	Version        uint8  `json:"version"`
	State          string `json:"state"`
	OfflineCapable bool   `json:"offline_capable"`
	TxPower        int8   `json:"tx_power"`
	ProximityID    string `json:"proximity_id"`
}

type GrantJSON struct {
	KeyID       string        `json:"key_id"`
	Session     string        `json:"session"`
	Device      string        `json:"device"`
	Machine     string        `json:"machine"`
	Slot        string        `json:"slot"`
	Unit        vend.Unit     `json:"unit"`
	Price       vend.Price    `json:"price"`
	Currency    vend.Currency `json:"currency"`
	CapUnits    uint64        `json:"cap_units"`
	CapMoney    int64         `json:"cap_money"`
	IssuedAtMs  int64         `json:"issued_at_ms"`
	ExpiresAtMs int64         `json:"expires_at_ms"`
	Window      uint32        `json:"window"`
	WindowK     uint8         `json:"window_k"`
}

type UsageJSON struct {
	KeyID       string        `json:"key_id"`
	Device      string        `json:"device"`
	Seq         uint64        `json:"seq"`
	Session     string        `json:"session"`
	Machine     string        `json:"machine"`
	Slot        string        `json:"slot"`
	Unit        vend.Unit     `json:"unit"`
	Units       uint64        `json:"units"`
	Price       vend.Price    `json:"price"`
	Currency    vend.Currency `json:"currency"`
	Amount      int64         `json:"amount"`
	StartedAtMs int64         `json:"started_at_ms"`
	EndedAtMs   int64         `json:"ended_at_ms"`
	MeterStart  uint64        `json:"meter_start"`
	MeterEnd    uint64        `json:"meter_end"`
	Outcome     vend.Outcome  `json:"outcome"`
	FaultCode   uint16        `json:"fault_code"`
}

type CheckJSON struct {
	Device  string `json:"device"`
	Machine string `json:"machine"`
	NowMs   int64  `json:"now_ms"`
	SkewMs  int64  `json:"skew_ms"`
	Trusted string `json:"trusted_key"` // "cloud" or "other"
}

// Fixed test keys: derived from public strings so anyone can recreate them.
func seed(label string) []byte { s := sha256.Sum256([]byte(label)); return s[:] }

var (
	identityKey = proxid.Key{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f}
	cloudKey    = ed25519.NewKeyFromSeed(seed("beaconvend test vector cloud key"))
	deviceKey   = ed25519.NewKeyFromSeed(seed("beaconvend test vector device key"))
	otherKey    = ed25519.NewKeyFromSeed(seed("beaconvend test vector other key"))
)

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func u8(v uint8) *uint8    { return &v }
func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }
func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

func hx(b []byte) string { return hex.EncodeToString(b) }

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

const t0ms = 1_795_000_000_000 // 2026-11-18T08:26:40Z

func baseGrant() GrantJSON {
	return GrantJSON{
		Session: "6b1f0c3e-8a52-4d07-9e31-2f4c5a6b7c8d", Device: "dev-0001", Machine: "m1",
		Unit: vend.UnitML, Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR",
		CapUnits: 4000, CapMoney: 200, IssuedAtMs: t0ms, ExpiresAtMs: t0ms + 60_000,
		Window: uint32(t0ms/1000) &^ 31, WindowK: 5,
	}
}

func baseUsage() UsageJSON {
	return UsageJSON{
		Device: "dev-0001", Seq: 1, Session: "6b1f0c3e-8a52-4d07-9e31-2f4c5a6b7c8d", Machine: "m1",
		Unit: vend.UnitML, Units: 1234, Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR", Amount: 61,
		StartedAtMs: t0ms + 2_000, EndedAtMs: t0ms + 40_500, MeterStart: 880_000, MeterEnd: 880_555,
		Outcome: vend.OutcomeUserStop,
	}
}

// generate lists the cases' inputs; fill computes their outputs.
func generate() []Case {
	var cs []Case
	frame := func(name string, f FrameJSON) {
		cs = append(cs, Case{Name: name, Kind: "frame_encode", Frame: &f})
	}
	frame("frame idle, test company id", FrameJSON{CompanyID: 0xFFFF, Version: 1, State: "idle", TxPower: -59, ProximityID: "0123456789abcdef"})
	frame("frame busy", FrameJSON{CompanyID: 0xFFFF, Version: 1, State: "busy", TxPower: -59, ProximityID: "fedcba9876543210"})
	frame("frame fault, operator company id", FrameJSON{CompanyID: 0x0A1B, Version: 1, State: "fault", TxPower: 0, ProximityID: "00000000000000ff"})
	frame("frame offline, offline-capable, +4 dBm", FrameJSON{CompanyID: 0xFFFF, Version: 1, State: "offline", OfflineCapable: true, TxPower: 4, ProximityID: "a5a5a5a55a5a5a5a"})
	frame("frame idle, offline-capable, -100 dBm", FrameJSON{CompanyID: 0xFFFF, Version: 1, State: "idle", OfflineCapable: true, TxPower: -100, ProximityID: "1122334455667788"})

	good := "020106" + "0fffffff" + "bc01" + "01c5" + "0123456789abcdef"
	dec := func(name, b, code, note string) {
		cs = append(cs, Case{Name: name, Kind: "frame_decode", CompanyID: u16(0xFFFF), Bytes: b, Error: code, Note: note})
	}
	dec("decode: frame without flags AD (stripped by the scan API)", good[6:], "", "")
	dec("decode: name AD first, zero padding after", "0409"+hx([]byte("W-1"))+good[6:]+"0000", "", "")
	dec("decode: 32 bytes", good+strings.Repeat("00", 13), "frame.too_long", "legacy advertising data is at most 31 bytes")
	dec("decode: AD length runs past the end", "020106"+"10ffffff"+good[14:], "frame.truncated", "")
	dec("decode: other company id", "020106"+"0fff0000"+good[14:], "frame.absent", "")
	dec("decode: wrong magic", "020106"+"0fffffff"+"bd01"+good[18:], "frame.magic", "")
	dec("decode: unknown version 2", "020106"+"0fffffff"+"bc02"+good[18:], "frame.version", "decoders refuse versions they do not know")
	dec("decode: reserved state bits", "020106"+"0fffffff"+"bc01"+"81c5"+good[22:], "frame.reserved", "")
	dec("decode: payload one byte short", "020106"+"0effffff"+good[14:len(good)-2], "frame.length", "")
	dec("decode: two-byte flags AD", "03010600"+good[6:], "frame.flags", "")
	cs = append(cs, Case{Name: "scan response with a local name", Kind: "scan_response", Name_: "Water 1 - Main St"})

	pid := func(name string, t uint32, k uint8, note string) {
		cs = append(cs, Case{Name: name, Kind: "proximity_id", IdentityKy: hx(identityKey[:]), Time: u32(t), K: u8(k), Note: note})
	}
	w := uint32(t0ms/1000) &^ 31
	pid("proximity id, first second of a window", w, 5, "")
	pid("proximity id, last second of the same window: same id", w+31, 5, "")
	pid("proximity id, next window", w+32, 5, "")
	pid("proximity id, last second before a temporary-key epoch", 0x6A4FFFFF, 5, "counter bits 31-16 change at the next second, so the temporary key changes too")
	pid("proximity id, first second of the next temporary-key epoch", 0x6A500000, 5, "")
	pid("proximity id, k=0 (rotates every second)", w+7, 0, "")
	pid("proximity id, k=10", w+7, 10, "")
	pid("proximity id, k=15", w+7, 15, "")

	cost := func(name string, p vend.Price, units uint64, code string) {
		cs = append(cs, Case{Name: name, Kind: "cost", Price: &p, Units: u64(units), Error: code})
	}
	cost("cost: 1234 ml at 0.50 per litre rounds down to 61", vend.Price{Minor: 50, Per: 1000}, 1234, "")
	cost("cost: one wash cycle", vend.Price{Minor: 350, Per: 1}, 1, "")
	cost("cost: overflow", vend.Price{Minor: 1 << 62, Per: 1}, 4, "money.overflow")
	cost("cost: per zero", vend.Price{Minor: 1, Per: 0}, 4, "money.price")
	cs = append(cs, Case{Name: "units for a budget: 2.00 at 0.50 per litre buys 4019 ml (cost rounds down, so 4019 ml still costs 2.00)", Kind: "units_for", Price: &vend.Price{Minor: 50, Per: 1000}, Budget: i64(200)})
	cs = append(cs, Case{Name: "units for a budget: 1.00 at 0.30 per item buys 3 items", Kind: "units_for", Price: &vend.Price{Minor: 30, Per: 1}, Budget: i64(100)})

	grant := func(name string, g GrantJSON) { cs = append(cs, Case{Name: name, Kind: "grant", Grant: &g}) }
	water := baseGrant()
	grant("grant: water, 2.00 cap", water)
	wash := baseGrant()
	wash.Session, wash.Device, wash.Machine, wash.Unit = "0d9c7a1e-3b44-4c55-8d66-77e8f9a0b1c2", "laundry-main-st", "washer-3", vend.UnitCycle
	wash.Price, wash.CapUnits, wash.CapMoney = vend.Price{Minor: 350, Per: 1}, 1, 350
	grant("grant: one washer cycle", wash)
	vendg := baseGrant()
	vendg.Session, vendg.Device, vendg.Machine, vendg.Slot, vendg.Unit = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "vm-0042", "vm", "B7", vend.UnitItem
	vendg.Price, vendg.CapUnits, vendg.CapMoney, vendg.Currency = vend.Price{Minor: 1200, Per: 1}, 1, 1200, "CNY"
	grant("grant: vending slot B7 in CNY", vendg)

	verify := func(name string, c CheckJSON, code string, mutate int) {
		cs = append(cs, Case{Name: name, Kind: "grant_verify", Grant: &water, Check: &c, Error: code})
		if mutate >= 0 {
			cs[len(cs)-1].AlterByte = &mutate
		}
	}
	ok := CheckJSON{Device: "dev-0001", Machine: "m1", NowMs: t0ms + 1_000, SkewMs: 5_000, Trusted: "cloud"}
	verify("verify grant: accepted", ok, "", -1)
	c := ok
	c.Device = "dev-0002"
	verify("verify grant: another device", c, "grant.device", -1)
	c = ok
	c.Machine = "m2"
	verify("verify grant: another machine", c, "grant.machine", -1)
	c = ok
	c.NowMs = t0ms + 60_000
	verify("verify grant: expired (now == expires_at)", c, "grant.expired", -1)
	c = ok
	c.NowMs = t0ms - 10_000
	verify("verify grant: issued more than skew in the future", c, "grant.not_yet_valid", -1)
	c = ok
	c.Trusted = "other"
	verify("verify grant: signed by an untrusted key", c, "sig.unknown_key", -1)
	verify("verify grant: cap_money raised by one (byte 71), signature kept", ok, "sig.invalid", 71)
	verify("verify grant: one signature bit flipped (byte 100)", ok, "sig.invalid", 100)

	gd := func(name, code string, f func(body []byte) []byte) {
		g := grantOf(water)
		b, _ := g.MarshalBinary()
		cs = append(cs, Case{Name: name, Kind: "grant_decode", Body: hx(f(b)), Error: code})
	}
	gd("grant decode: trailing byte", "canon.trailing", func(b []byte) []byte { return append(b, 0) })
	gd("grant decode: truncated", "canon.truncated", func(b []byte) []byte { return b[:len(b)-1] })
	gd("grant decode: unknown version", "canon.version", func(b []byte) []byte { b[1] = 2; return b })
	gd("grant decode: usage tag", "canon.type", func(b []byte) []byte { b[0] = 'U'; return b })
	gd("grant decode: price per zero", "canon.field", func(b []byte) []byte {
		i := bytes.Index(b, []byte{0, 0, 0, 0, 0, 0, 0, 50, 0, 0, 3, 0xe8})
		b[i+8], b[i+9], b[i+10], b[i+11] = 0, 0, 0, 0
		return b
	})

	usage := func(name string, u UsageJSON) { cs = append(cs, Case{Name: name, Kind: "usage", Usage: &u}) }
	usage("usage: water stopped by the user at 1234 ml", baseUsage())
	full := baseUsage()
	full.Seq, full.Units, full.Amount, full.MeterEnd, full.Outcome = 2, 4000, 200, 881_800, vend.OutcomeCapReached
	usage("usage: water stopped at the cap", full)
	jam := baseUsage()
	jam.Seq, jam.Session, jam.Device, jam.Machine, jam.Slot, jam.Unit = 3, "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "vm-0042", "vm", "B7", vend.UnitItem
	jam.Price, jam.Currency, jam.Units, jam.Amount, jam.MeterStart, jam.MeterEnd = vend.Price{Minor: 1200, Per: 1}, "CNY", 0, 0, 17, 17
	jam.Outcome, jam.FaultCode = vend.OutcomeVendFailed, 0x0102
	usage("usage: vend failed (jam), nothing charged", jam)
	ns := baseUsage()
	ns.Seq, ns.Units, ns.Amount, ns.StartedAtMs, ns.MeterEnd, ns.Outcome = 4, 0, 0, 0, 880_000, vend.OutcomeNotStarted
	usage("usage: grant expired before start (started_at 0)", ns)

	ud := func(name, code string, f func(body []byte) []byte) {
		u := usageOf(baseUsage())
		b, _ := u.MarshalBinary()
		cs = append(cs, Case{Name: name, Kind: "usage_decode", Body: hx(f(b)), Error: code})
	}
	ud("usage decode: amount is not price × units", "canon.field", func(b []byte) []byte {
		i := bytes.Index(b, []byte{0, 0, 0, 0, 0, 0, 0, 61})
		b[i+7] = 62
		return b
	})
	ud("usage decode: seq zero", "canon.field", func(b []byte) []byte {
		i := 2 + 8 + 1 + len("dev-0001")
		copy(b[i:], make([]byte, 8))
		return b
	})
	ud("usage decode: truncated", "canon.truncated", func(b []byte) []byte { return b[:40] })

	cs = append(cs, Case{Name: "cloud key rotation signed by the current cloud key", Kind: "key_rotation", NextKey: hx(pubOf(otherKey))})
	return cs
}

func grantOf(g GrantJSON) signed.Grant {
	s, err := vend.ParseSessionID(g.Session)
	if err != nil {
		panic(err)
	}
	out := signed.Grant{
		Session: s, Device: g.Device, Machine: g.Machine, Slot: g.Slot, Unit: g.Unit,
		Price: g.Price, Currency: g.Currency, CapUnits: g.CapUnits, CapMoney: g.CapMoney,
		IssuedAt: time.UnixMilli(g.IssuedAtMs).UTC(), ExpiresAt: time.UnixMilli(g.ExpiresAtMs).UTC(),
		Window: g.Window, WindowK: g.WindowK,
	}
	if g.KeyID != "" {
		b, _ := hex.DecodeString(g.KeyID)
		copy(out.KeyID[:], b)
	}
	return out
}

func usageOf(u UsageJSON) signed.Usage {
	s, err := vend.ParseSessionID(u.Session)
	if err != nil {
		panic(err)
	}
	out := signed.Usage{
		Device: u.Device, Seq: u.Seq, Session: s, Machine: u.Machine, Slot: u.Slot, Unit: u.Unit,
		Units: u.Units, Price: u.Price, Currency: u.Currency, Amount: u.Amount,
		EndedAt: time.UnixMilli(u.EndedAtMs).UTC(), MeterStart: u.MeterStart, MeterEnd: u.MeterEnd,
		Outcome: u.Outcome, FaultCode: u.FaultCode,
	}
	if u.StartedAtMs != 0 {
		out.StartedAt = time.UnixMilli(u.StartedAtMs).UTC()
	}
	if u.KeyID != "" {
		b, _ := hex.DecodeString(u.KeyID)
		copy(out.KeyID[:], b)
	}
	return out
}

func frameOf(t *testing.T, f FrameJSON) beacon.Frame {
	var st beacon.State
	if err := st.UnmarshalText([]byte(f.State)); err != nil {
		t.Fatal(err)
	}
	id, err := proxid.ParseID(f.ProximityID)
	if err != nil {
		t.Fatal(err)
	}
	return beacon.Frame{CompanyID: f.CompanyID, Version: f.Version, State: st, OfflineCapable: f.OfflineCapable, TxPower: f.TxPower, ID: id}
}

func frameJSON(f beacon.Frame) *FrameJSON {
	return &FrameJSON{CompanyID: f.CompanyID, Version: f.Version, State: f.State.String(), OfflineCapable: f.OfflineCapable, TxPower: f.TxPower, ProximityID: f.ID.String()}
}

// compute fills a case's outputs from the Go code. It is the single
// definition of what each kind means.
func compute(t *testing.T, in Case) Case {
	t.Helper()
	c := in
	code := func(err error) string { return vend.CodeOf(err) }
	switch c.Kind {
	case "frame_encode":
		b, err := frameOf(t, *c.Frame).Encode()
		c.Bytes, c.Error = hx(b), code(err)
	case "frame_decode":
		f, err := beacon.Decode(unhex(t, c.Bytes), *c.CompanyID)
		c.Error = code(err)
		c.Frame = nil
		if err == nil {
			c.Frame = frameJSON(f)
		}
	case "scan_response":
		b, err := beacon.EncodeScanResponse(c.Name_)
		c.Bytes, c.Error = hx(b), code(err)
	case "proximity_id":
		key, err := proxid.ParseKey(c.IdentityKy)
		if err != nil {
			t.Fatal(err)
		}
		tk := proxid.TempKey(key, *c.Time)
		c.TempKey = hx(tk[:])
		c.Window = u32(proxid.WindowStart(*c.Time, *c.K))
		id := proxid.Compute(key, *c.Time, *c.K)
		c.ProxID = id.String()
	case "cost":
		a, err := c.Price.Cost(*c.Units)
		c.Amount, c.Error = nil, code(err)
		if err == nil {
			c.Amount = &a
		}
	case "units_for":
		u, err := c.Price.UnitsFor(*c.Budget)
		c.Units, c.Error = &u, code(err)
	case "grant":
		g := grantOf(*c.Grant)
		g.KeyID = signed.KeyIDOf(pubOf(cloudKey))
		body, err := g.MarshalBinary()
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		sg, err := signed.SignGrant(cloudKey, g)
		if err != nil {
			t.Fatal(err)
		}
		gj := *c.Grant
		gj.KeyID = g.KeyID.String()
		c.Grant, c.Body, c.Signed = &gj, hx(body), hx(sg)
	case "grant_verify":
		sg, err := signed.SignGrant(cloudKey, grantOf(*c.Grant))
		if err != nil {
			t.Fatal(err)
		}
		if c.AlterByte != nil {
			sg[*c.AlterByte] ^= 0x01
		}
		trusted := pubOf(cloudKey)
		if c.Check.Trusted == "other" {
			trusted = pubOf(otherKey)
		}
		keys, _ := signed.NewKeys(trusted)
		_, err = signed.VerifyGrant(sg, signed.GrantCheck{
			Keys: keys, Device: c.Check.Device, Machine: c.Check.Machine,
			Now: time.UnixMilli(c.Check.NowMs), Skew: time.Duration(c.Check.SkewMs) * time.Millisecond,
			Seen: func(vend.SessionID) (bool, error) { return false, nil },
		})
		c.Signed, c.Error = hx(sg), code(err)
	case "grant_decode":
		var g signed.Grant
		c.Error = code(g.UnmarshalBinary(unhex(t, c.Body)))
	case "usage":
		u := usageOf(*c.Usage)
		u.KeyID = signed.KeyIDOf(pubOf(deviceKey))
		body, err := u.MarshalBinary()
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		su, err := signed.SignUsage(deviceKey, u)
		if err != nil {
			t.Fatal(err)
		}
		uj := *c.Usage
		uj.KeyID = u.KeyID.String()
		c.Usage, c.Body, c.Signed = &uj, hx(body), hx(su)
	case "key_rotation":
		sig, err := signed.SignKeyRotation(cloudKey, unhex(t, c.NextKey))
		if err != nil {
			t.Fatal(err)
		}
		c.Signed = hx(sig)
	case "usage_decode":
		var u signed.Usage
		c.Error = code(u.UnmarshalBinary(unhex(t, c.Body)))
	default:
		t.Fatalf("unknown kind %q", c.Kind)
	}
	return c
}

func keysJSON() TestKeys {
	return TestKeys{
		IdentityKey: hx(identityKey[:]),
		CloudSeed:   hx(cloudKey.Seed()), CloudPublic: hx(pubOf(cloudKey)), CloudKeyID: signed.KeyIDOf(pubOf(cloudKey)).String(),
		DeviceSeed: hx(deviceKey.Seed()), DevicePublic: hx(pubOf(deviceKey)), DeviceKeyID: signed.KeyIDOf(pubOf(deviceKey)).String(),
	}
}

func TestVectors(t *testing.T) {
	if *update {
		f := File{
			Format:      "beaconvend-vectors/1",
			Description: "Test vectors for the beaconvend wire contracts; see app-protocol/VECTORS.md. Keys are public test keys.",
			Keys:        keysJSON(),
		}
		for _, c := range generate() {
			got := compute(t, c)
			if got.Error != c.Error {
				t.Fatalf("%s: the code gives error %q, the case intends %q", c.Name, got.Error, c.Error)
			}
			f.Cases = append(f.Cases, got)
		}
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %d cases to %s", len(f.Cases), vectorsFile)
	}
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatalf("%v (regenerate with -update)", err)
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", vectorsFile, err)
	}
	if f.Keys != keysJSON() {
		t.Errorf("keys in the file differ from the keys the test derives")
	}
	if len(f.Cases) < 25 {
		t.Errorf("%d cases, want at least 25", len(f.Cases))
	}
	kinds := map[string]int{}
	for _, want := range f.Cases {
		kinds[want.Kind]++
		got := compute(t, want)
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if !bytes.Equal(gj, wj) {
			t.Errorf("%s:\n got %s\nwant %s", want.Name, gj, wj)
		}
		checkDecodesBack(t, want)
	}
	for _, k := range []string{"frame_encode", "frame_decode", "proximity_id", "grant", "grant_verify", "grant_decode", "usage", "usage_decode", "cost"} {
		if kinds[k] == 0 {
			t.Errorf("no %s vectors", k)
		}
	}
}

// checkDecodesBack verifies the reverse direction of encode vectors: the
// bytes decode to the inputs and the signatures verify with the file's keys.
func checkDecodesBack(t *testing.T, c Case) {
	t.Helper()
	switch c.Kind {
	case "frame_encode":
		f, err := beacon.Decode(unhex(t, c.Bytes), c.Frame.CompanyID)
		if err != nil || *frameJSON(f) != *c.Frame {
			t.Errorf("%s: decode back = %+v, %v", c.Name, f, err)
		}
	case "grant":
		keys, _ := signed.NewKeys(pubOf(cloudKey))
		g, err := signed.OpenGrant(unhex(t, c.Signed), keys)
		if err != nil || g != grantOf(*c.Grant) {
			t.Errorf("%s: open = %+v, %v", c.Name, g, err)
		}
	case "usage":
		keys, _ := signed.NewKeys(pubOf(deviceKey))
		u, err := signed.OpenUsage(unhex(t, c.Signed), keys)
		if err != nil || u != usageOf(*c.Usage) {
			t.Errorf("%s: open = %+v, %v", c.Name, u, err)
		}
	}
}

// TestProximityIDsWithOpenSSL recomputes the proximity-ID vectors with the
// openssl command's AES-128-ECB: an implementation this project did not
// write, following Eddystone-EID's steps.
func TestProximityIDsWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl not found: it is part of the base system this suite runs on: %v", err)
	}
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f File
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	aes := func(key, block []byte) []byte {
		cmd := exec.Command("openssl", "enc", "-aes-128-ecb", "-nopad", "-K", hx(key))
		cmd.Stdin = bytes.NewReader(block)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		return out
	}
	n := 0
	for _, c := range f.Cases {
		if c.Kind != "proximity_id" {
			continue
		}
		n++
		ik := unhex(t, c.IdentityKy)
		ts := *c.Time
		tkIn := make([]byte, 16)
		tkIn[11], tkIn[14], tkIn[15] = 0xFF, byte(ts>>24), byte(ts>>16)
		tk := aes(ik, tkIn)
		if hx(tk) != c.TempKey {
			t.Errorf("%s: openssl temp key %x, vector %s", c.Name, tk, c.TempKey)
		}
		w := ts &^ (1<<*c.K - 1)
		eIn := make([]byte, 16)
		eIn[11], eIn[12], eIn[13], eIn[14], eIn[15] = *c.K, byte(w>>24), byte(w>>16), byte(w>>8), byte(w)
		if id := aes(tk, eIn)[:8]; hx(id) != c.ProxID {
			t.Errorf("%s: openssl id %x, vector %s", c.Name, id, c.ProxID)
		}
	}
	if n == 0 {
		t.Fatal("no proximity_id vectors")
	}
}
