package gattapi_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

var update = flag.Bool("update", false, "rewrite ../testdata/gatt_vectors.json from the code")

const vectorsFile = "../testdata/gatt_vectors.json"

// File is the layout of gatt_vectors.json; GATT.md documents it.
type File struct {
	Format      string `json:"format"`
	Description string `json:"description"`
	Keys        Keys   `json:"keys"`
	Cases       []Case `json:"cases"`
}

// Keys are fixed, public test keys (seeds are SHA-256 of a label). Never
// use them for anything else.
type Keys struct {
	CloudSeed     string `json:"cloud_seed"`
	CloudPublic   string `json:"cloud_public"`
	OtherSeed     string `json:"other_cloud_seed"`
	DeviceSeed    string `json:"device_seed"`
	DevicePublic  string `json:"device_public"`
	BoardPrivate  string `json:"board_x25519_private"`
	BoardPublic   string `json:"board_x25519_public"`
	UnusedPrivate string `json:"other_x25519_private"`
}

// Case is one vector; Kind says which fields are used (GATT.md).
type Case struct {
	Name   string          `json:"name"`
	Kind   string          `json:"kind"`
	Note   string          `json:"note,omitempty"`
	Fields json.RawMessage `json:"fields,omitempty"`
	Size   int             `json:"size,omitempty"`
	Chunks []string        `json:"chunks,omitempty"`
	Check  *CheckJSON      `json:"check,omitempty"`
	Bytes  string          `json:"bytes,omitempty"`
	Body   string          `json:"body,omitempty"`
	Tag    string          `json:"tag,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// CheckJSON is a RelayCheck: the board's state when a relay_check value arrives.
type CheckJSON struct {
	Device       string   `json:"device"`
	Machines     []string `json:"machines"`
	NowMs        int64    `json:"now_ms"`
	SkewMs       int64    `json:"skew_ms"`
	Trusted      string   `json:"trusted_key"` // cloud or other
	SeenSessions []string `json:"seen_sessions,omitempty"`
	SeenNonces   []string `json:"seen_nonces,omitempty"`
}

func seed(label string) []byte {
	s := sha256.Sum256([]byte("beaconvend gatt vectors: " + label))
	return s[:]
}

var (
	t0       = time.UnixMilli(1767225600000).UTC() // 2026-01-01T00:00:00Z
	cloudKey = ed25519.NewKeyFromSeed(seed("cloud"))
	otherKey = ed25519.NewKeyFromSeed(seed("other cloud"))
	devKey   = ed25519.NewKeyFromSeed(seed("device"))
	sess     = vend.SessionID{0x5e, 0x55, 1, 2, 3, 4, 0x45, 6, 0x87, 8, 9, 10, 11, 12, 13, 14}
	nonce    = [16]byte{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf}
)

func boardKey(t testing.TB, label string) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().NewPrivateKey(seed(label))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func h(b []byte) string { return hex.EncodeToString(b) }

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func raw(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func grant() signed.Grant {
	return signed.Grant{Session: sess, Device: "wash-01", Machine: "washer1", Unit: vend.UnitCycle, Price: vend.Price{Minor: 350, Per: 1},
		Currency: "EUR", CapUnits: 1, CapMoney: 350, IssuedAt: t0, ExpiresAt: t0.Add(60 * time.Second), Window: uint32(t0.Unix()) &^ 1023, WindowK: 10}
}

// relayValue builds a RelayGrant value; change edits the grant and ticket first.
func relayValue(t testing.TB, signer ed25519.PrivateKey, change func(*signed.Grant, *signed.RelayTicket)) []byte {
	t.Helper()
	g := grant()
	tk := signed.RelayTicket{Session: g.Session, Device: g.Device, Nonce: nonce, ExpiresAt: g.ExpiresAt}
	if change != nil {
		change(&g, &tk)
	}
	sg, err := signed.SignGrant(signer, g)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Grant == ([32]byte{}) {
		tk.Grant = signed.Digest(sg)
	}
	st, err := signed.SignRelayTicket(signer, tk)
	if err != nil {
		t.Fatal(err)
	}
	v, err := gattapi.RelayGrant{Grant: sg, Ticket: st}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustEnc(t testing.TB, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func usageReport(t testing.TB) []byte {
	t.Helper()
	g := grant()
	su, err := signed.SignUsage(devKey, signed.Usage{Device: g.Device, Seq: 3, Session: g.Session, Machine: g.Machine, Unit: g.Unit, Units: 1,
		Price: g.Price, Currency: g.Currency, Amount: 350, StartedAt: t0.Add(5 * time.Second), EndedAt: t0.Add(40 * time.Minute),
		MeterStart: 41, MeterEnd: 42, Outcome: vend.OutcomeCompleted})
	if err != nil {
		t.Fatal(err)
	}
	return su
}

func baseCheck() *CheckJSON {
	return &CheckJSON{Device: "wash-01", Machines: []string{"washer1", "dryer1"}, NowMs: t0.Add(time.Second).UnixMilli(), SkewMs: 5000, Trusted: "cloud"}
}

// build computes every case from the code. The sealed_bundle case is
// randomized (HPKE's ephemeral key): it is checked by opening the file's bytes.
func build(t testing.TB) File {
	t.Helper()
	board := boardKey(t, "board")
	other := boardKey(t, "other board")
	f := File{
		Format:      "beaconvend-gatt-vectors/1",
		Description: "BLE GATT relay and claim contract of beaconvend (app-protocol/gattapi, GATT.md). Bytes are lower-case hex.",
		Keys: Keys{CloudSeed: h(seed("cloud")), CloudPublic: h(cloudKey.Public().(ed25519.PublicKey)), OtherSeed: h(seed("other cloud")),
			DeviceSeed: h(seed("device")), DevicePublic: h(devKey.Public().(ed25519.PublicKey)),
			BoardPrivate: h(board.Bytes()), BoardPublic: h(board.PublicKey().Bytes()), UnusedPrivate: h(other.Bytes())},
	}
	add := func(c Case) { f.Cases = append(f.Cases, c) }

	msg := make([]byte, 1000)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, size := range []int{512, 200} {
		cs, err := gattapi.Chunk(msg, size, gattapi.MaxBundle)
		if err != nil {
			t.Fatal(err)
		}
		var hs []string
		for _, c := range cs {
			hs = append(hs, h(c))
		}
		add(Case{Name: "chunk 1000 bytes", Kind: "chunk", Size: size, Bytes: h(msg), Chunks: hs})
	}
	add(Case{Name: "reassemble out of order", Kind: "reassemble", Chunks: []string{"000000030a0b", "000200030c"}, Error: "gatt.chunk"})
	add(Case{Name: "reassemble count changes", Kind: "reassemble", Chunks: []string{"000000030a0b", "000100040c"}, Error: "gatt.chunk"})
	add(Case{Name: "reassemble header only", Kind: "reassemble", Chunks: []string{"00000001"}, Error: "gatt.truncated"})
	add(Case{Name: "reassemble index past count", Kind: "reassemble", Chunks: []string{"0001000100"}, Error: "gatt.chunk"})
	add(Case{Name: "reassemble restart at index 0", Kind: "reassemble", Chunks: []string{"000000030a0b", "000000020c", "000100020d"}, Bytes: "0c0d"})

	v := relayValue(t, cloudKey, nil)
	var rg gattapi.RelayGrant
	if err := rg.UnmarshalBinary(v); err != nil {
		t.Fatal(err)
	}
	add(Case{Name: "relay grant", Kind: "relay_grant", Fields: raw(t, map[string]string{"grant": h(rg.Grant), "ticket": h(rg.Ticket)}), Bytes: h(v)})
	tkBody := rg.Ticket[:len(rg.Ticket)-ed25519.SignatureSize]
	add(Case{Name: "relay ticket", Kind: "relay_ticket", Fields: raw(t, map[string]any{"session": sess.String(), "device": "wash-01",
		"nonce": h(nonce[:]), "grant_digest": h(tkBody[len(tkBody)-40 : len(tkBody)-8]), "expires_ms": grant().ExpiresAt.UnixMilli()}),
		Body: h(tkBody), Bytes: h(rg.Ticket)})

	// relay_check: what the board checks, in order.
	ok := baseCheck()
	add(Case{Name: "relay accepted", Kind: "relay_check", Bytes: h(v), Check: ok})
	c := *ok
	c.SeenSessions = []string{sess.String()}
	add(Case{Name: "relayed twice (session seen)", Kind: "relay_check", Bytes: h(v), Check: ptr(c), Error: signed.ErrReplayed.Code})
	c = *ok // a fresh copy: each case keeps its own check
	c.SeenNonces = []string{h(nonce[:])}
	add(Case{Name: "nonce reused", Kind: "relay_check", Bytes: h(v), Check: ptr(c), Error: gattapi.ErrNonceReused.Code})
	c = *ok // a fresh copy: each case keeps its own check
	c.Device = "wash-02"
	add(Case{Name: "to another board", Kind: "relay_check", Bytes: h(v), Check: ptr(c), Error: signed.ErrWrongDevice.Code})
	c = *ok // a fresh copy: each case keeps its own check
	c.NowMs = grant().ExpiresAt.UnixMilli()
	add(Case{Name: "after expiry", Kind: "relay_check", Bytes: h(v), Check: ptr(c), Error: signed.ErrExpired.Code})
	c = *ok // a fresh copy: each case keeps its own check
	c.NowMs = t0.Add(-time.Minute).UnixMilli()
	add(Case{Name: "issued in the future", Kind: "relay_check", Bytes: h(v), Check: ptr(c), Error: signed.ErrNotYetValid.Code})
	c = *ok // a fresh copy: each case keeps its own check
	c.Machines = []string{"dryer1"}
	add(Case{Name: "machine not on this board", Kind: "relay_check", Bytes: h(v), Check: ptr(c), Error: gattapi.ErrMachine.Code})
	c = *ok // a fresh copy: each case keeps its own check
	c.Trusted = "other"
	add(Case{Name: "signed by an untrusted key", Kind: "relay_check", Bytes: h(v), Check: ptr(c), Error: signed.ErrUnknownKey.Code})
	bad := bytes.Clone(v)
	bad[len(bad)-1] ^= 1
	add(Case{Name: "ticket signature altered", Kind: "relay_check", Bytes: h(bad), Check: ok, Error: signed.ErrSignature.Code})
	add(Case{Name: "ticket for another grant", Kind: "relay_check", Check: ok, Error: gattapi.ErrGrantMismatch.Code,
		Bytes: h(relayValue(t, cloudKey, func(_ *signed.Grant, tk *signed.RelayTicket) { tk.Grant[0] = 1 }))})
	add(Case{Name: "ticket for another session", Kind: "relay_check", Check: ok, Error: gattapi.ErrGrantMismatch.Code,
		Bytes: h(relayValue(t, cloudKey, func(_ *signed.Grant, tk *signed.RelayTicket) { tk.Session[0] ^= 1 }))})
	add(Case{Name: "ticket for another device", Kind: "relay_check", Check: ok, Error: signed.ErrWrongDevice.Code,
		Bytes: h(relayValue(t, cloudKey, func(_ *signed.Grant, tk *signed.RelayTicket) { tk.Device = "wash-02" }))})
	add(Case{Name: "truncated value", Kind: "relay_check", Bytes: h(v[:40]), Check: ok, Error: gattapi.ErrTruncated.Code})
	add(Case{Name: "unknown layout", Kind: "relay_check", Bytes: "02" + h(v[1:]), Check: ok, Error: gattapi.ErrVersion.Code})

	for _, p := range []gattapi.Progress{{State: gattapi.StateAccepted}, {State: gattapi.StateRunning, Units: 1500, Amount: 75},
		{State: gattapi.StateRefused, Reason: gattapi.ATTCodes[signed.ErrReplayed.Code]}} {
		add(Case{Name: "progress", Kind: "progress", Fields: raw(t, map[string]any{"state": p.State, "reason": p.Reason, "units": p.Units, "amount": p.Amount}), Bytes: h(mustEnc(t, p))})
	}
	add(Case{Name: "progress reason without refusal", Kind: "progress_decode", Bytes: "01020700000000000000000000000000000000", Error: gattapi.ErrField.Code})
	add(Case{Name: "progress short", Kind: "progress_decode", Bytes: "0102", Error: gattapi.ErrTruncated.Code})

	su := usageReport(t)
	add(Case{Name: "receipt none", Kind: "receipt", Fields: raw(t, map[string]any{"status": 0, "usage": ""}), Bytes: h(mustEnc(t, gattapi.Receipt{}))})
	add(Case{Name: "receipt ready", Kind: "receipt", Fields: raw(t, map[string]any{"status": 1, "usage": h(su)}),
		Bytes: h(mustEnc(t, gattapi.Receipt{Status: gattapi.ReceiptReady, Usage: su}))})
	add(Case{Name: "receipt ready without report", Kind: "receipt_decode", Bytes: "01010000", Error: gattapi.ErrField.Code})

	d := signed.Digest(su)
	add(Case{Name: "phone ack", Kind: "ack", Fields: raw(t, map[string]any{"kind": 1, "session": sess.String(), "digest": h(d[:])}),
		Bytes: h(mustEnc(t, gattapi.Ack{Kind: gattapi.AckPhone, Session: sess, Digest: d}))})
	ua, err := signed.SignUsageAck(cloudKey, signed.UsageAck{Device: "wash-01", Session: sess, Report: d})
	if err != nil {
		t.Fatal(err)
	}
	add(Case{Name: "cloud ack", Kind: "ack", Fields: raw(t, map[string]any{"kind": 2, "cloud_ack": h(ua)}),
		Bytes: h(mustEnc(t, gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: ua}))})
	add(Case{Name: "usage ack", Kind: "usage_ack", Fields: raw(t, map[string]any{"device": "wash-01", "session": sess.String(), "report": h(d[:])}),
		Body: h(ua[:len(ua)-ed25519.SignatureSize]), Bytes: h(ua)})
	add(Case{Name: "ack unknown kind", Kind: "ack_decode", Bytes: "03", Error: gattapi.ErrField.Code})
	add(Case{Name: "phone ack short", Kind: "ack_decode", Bytes: "0100", Error: gattapi.ErrTruncated.Code})

	bp := board.PublicKey().Bytes()
	add(Case{Name: "claim info unclaimed", Kind: "claim_info", Fields: raw(t, map[string]any{"state": 0, "seal_key": h(bp)}),
		Bytes: h(mustEnc(t, gattapi.ClaimInfo{State: gattapi.Unclaimed, SealKey: bp}))})
	dp := devKey.Public().(ed25519.PublicKey)
	add(Case{Name: "claim info claimed", Kind: "claim_info", Fields: raw(t, map[string]any{"state": 1, "seal_key": h(bp), "device": "wash-01", "sign_key": h(dp)}),
		Bytes: h(mustEnc(t, gattapi.ClaimInfo{State: gattapi.Claimed, SealKey: bp, Device: "wash-01", SignKey: dp}))})
	add(Case{Name: "claim info unclaimed with a device", Kind: "claim_info_decode", Bytes: "0100" + h(bp) + "014100", Error: gattapi.ErrField.Code})

	tag := beacon.ClaimTag(bp)
	fr := beacon.Unclaimed{CompanyID: 0xFFFF, TxPower: -59, Tag: tag}
	add(Case{Name: "unclaimed frame", Kind: "unclaimed_frame", Fields: raw(t, map[string]any{"company_id": 0xFFFF, "tx_power": -59, "seal_key": h(bp)}),
		Tag: h(tag[:]), Bytes: h(fr.Encode())})

	doc := []byte(`{"version":1,"device_id":"wash-01"}`)
	sealed, err := provision.Seal(bp, doc)
	if err != nil {
		t.Fatal(err)
	}
	add(Case{Name: "sealed bundle", Kind: "sealed_bundle", Note: "HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, info \"beaconvend bundle v1\"; randomized: open it with board_x25519_private",
		Bytes: h(sealed), Body: h(doc)})
	return f
}

func TestVectors(t *testing.T) {
	want := build(t)
	if *update {
		b, err := json.MarshalIndent(want, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var got File
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if raw(t, got.Keys) == nil || string(raw(t, got.Keys)) != string(raw(t, want.Keys)) {
		t.Fatalf("keys differ from the code's")
	}
	if len(got.Cases) != len(want.Cases) {
		t.Fatalf("%d cases in %s, the code makes %d (run with -update after an intended change)", len(got.Cases), vectorsFile, len(want.Cases))
	}
	for i, c := range got.Cases {
		if c.Kind != "sealed_bundle" {
			if g, w := string(raw(t, c)), string(raw(t, want.Cases[i])); g != w {
				t.Errorf("case %d %q:\n file %s\n code %s", i, c.Name, g, w)
			}
		}
		t.Run(c.Name, func(t *testing.T) { replay(t, got.Keys, c) })
	}
}

// replay checks a case from the file alone, as another implementation would.
func replay(t *testing.T, k Keys, c Case) {
	var err error
	switch c.Kind {
	case "chunk":
		var chunks [][]byte
		chunks, err = gattapi.Chunk(unhex(t, c.Bytes), c.Size, gattapi.MaxBundle)
		if err == nil {
			r := gattapi.Reassembler{Max: gattapi.MaxBundle}
			for i, ch := range chunks {
				if h(ch) != c.Chunks[i] {
					t.Errorf("chunk %d = %x, want %s", i, ch, c.Chunks[i])
				}
				msg, done, aerr := r.Add(ch)
				if aerr != nil || done != (i == len(chunks)-1) || (done && h(msg) != c.Bytes) {
					t.Errorf("Add(chunk %d) = %x, %v, %v", i, msg, done, aerr)
				}
			}
		}
	case "reassemble":
		r := gattapi.Reassembler{Max: gattapi.MaxBundle}
		var msg []byte
		for _, ch := range c.Chunks {
			if msg, _, err = r.Add(unhex(t, ch)); err != nil {
				break
			}
		}
		if err == nil && h(msg) != c.Bytes {
			t.Errorf("reassembled %x, want %s", msg, c.Bytes)
		}
	case "relay_check":
		ck := c.Check
		trusted := ed25519.NewKeyFromSeed(unhex(t, k.CloudSeed))
		if ck.Trusted == "other" {
			trusted = ed25519.NewKeyFromSeed(unhex(t, k.OtherSeed))
		}
		keys, kerr := signed.NewKeys(trusted.Public().(ed25519.PublicKey))
		if kerr != nil {
			t.Fatal(kerr)
		}
		_, _, err = gattapi.CheckRelay(unhex(t, c.Bytes), gattapi.RelayCheck{Keys: keys, Device: ck.Device, Machines: ck.Machines,
			Now: time.UnixMilli(ck.NowMs), Skew: time.Duration(ck.SkewMs) * time.Millisecond,
			Seen: func(id vend.SessionID) (bool, error) {
				for _, s := range ck.SeenSessions {
					if s == id.String() {
						return true, nil
					}
				}
				return false, nil
			},
			NonceSeen: func(n [16]byte) (bool, error) {
				for _, s := range ck.SeenNonces {
					if s == h(n[:]) {
						return true, nil
					}
				}
				return false, nil
			}})
	case "relay_grant":
		var g gattapi.RelayGrant
		if err = g.UnmarshalBinary(unhex(t, c.Bytes)); err == nil {
			var f struct{ Grant, Ticket string }
			_ = json.Unmarshal(c.Fields, &f)
			if h(g.Grant) != f.Grant || h(g.Ticket) != f.Ticket {
				t.Errorf("decoded %x / %x", g.Grant, g.Ticket)
			}
		}
	case "relay_ticket":
		keys, _ := signed.NewKeys(ed25519.NewKeyFromSeed(unhex(t, k.CloudSeed)).Public().(ed25519.PublicKey))
		_, err = signed.OpenRelayTicket(unhex(t, c.Bytes), keys)
	case "usage_ack":
		keys, _ := signed.NewKeys(ed25519.NewKeyFromSeed(unhex(t, k.CloudSeed)).Public().(ed25519.PublicKey))
		_, err = signed.OpenUsageAck(unhex(t, c.Bytes), keys)
	case "progress", "progress_decode":
		err = roundTrip(t, c.Bytes, &gattapi.Progress{})
	case "receipt", "receipt_decode":
		err = roundTrip(t, c.Bytes, &gattapi.Receipt{})
	case "ack", "ack_decode":
		err = roundTrip(t, c.Bytes, &gattapi.Ack{})
	case "claim_info", "claim_info_decode":
		err = roundTrip(t, c.Bytes, &gattapi.ClaimInfo{})
	case "unclaimed_frame":
		var u beacon.Unclaimed
		if u, err = beacon.DecodeUnclaimed(unhex(t, c.Bytes), 0xFFFF); err == nil && h(u.Tag[:]) != c.Tag {
			t.Errorf("tag %x, want %s", u.Tag, c.Tag)
		}
	case "sealed_bundle":
		board, kerr := ecdh.X25519().NewPrivateKey(unhex(t, k.BoardPrivate))
		if kerr != nil {
			t.Fatal(kerr)
		}
		var doc []byte
		if doc, err = provision.Open(board, unhex(t, c.Bytes)); err == nil && h(doc) != c.Body {
			t.Errorf("opened %q", doc)
		}
		other, _ := ecdh.X25519().NewPrivateKey(unhex(t, k.UnusedPrivate))
		if _, oerr := provision.Open(other, unhex(t, c.Bytes)); vend.CodeOf(oerr) != provision.ErrOpen.Code {
			t.Errorf("opened with another board's key: %v, want %s", oerr, provision.ErrOpen.Code)
		}
	default:
		t.Fatalf("unknown kind %q", c.Kind)
	}
	if vend.CodeOf(err) != c.Error {
		t.Errorf("%s %q: error %v (code %q), want %q", c.Kind, c.Name, err, vend.CodeOf(err), c.Error)
	}
}

type codec interface {
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

// roundTrip decodes hex into m and checks it encodes back to the same bytes.
func roundTrip(t *testing.T, hexBytes string, m codec) error {
	t.Helper()
	b := unhex(t, hexBytes)
	if err := m.UnmarshalBinary(b); err != nil {
		return err
	}
	again, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("decoded %x but cannot encode it: %v", b, err)
	}
	if !bytes.Equal(again, b) {
		t.Errorf("decoded %x, re-encoded %x", b, again)
	}
	return nil
}

func ptr(c CheckJSON) *CheckJSON { return &c }
