package store_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"

	"beaconvend/app-protocol/proxid"
	"beaconvend/cloud/store"
)

// rawKey reads a device's identity_key column as stored.
func rawKey(t *testing.T, s *store.Store, id string) []byte {
	t.Helper()
	var raw []byte
	must(t, s.DB().QueryRow(`SELECT identity_key FROM devices WHERE id = $1`, id).Scan(&raw))
	return raw
}

func kek(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// A fleet provisioned without a key-encryption key (rows in clear), some
// devices added later under an old KEK, is resealed under the new KEK:
// every key still reads the same, no row stays in clear or under the old
// key, a second run changes nothing, and a row no key opens is reported
// without stopping the others.
func TestReencryptIdentityKeys(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil) // dev-a in clear
		add := func(s *store.Store, id string, key byte) proxid.Key {
			pub, _, _ := ed25519.GenerateKey(rand.Reader)
			ik := proxid.Key{key, 9}
			must(t, s.CreateDevice(e.ctx, store.Device{ID: id, OperatorID: e.opA.ID, K: 5, SignKey: pub, MQTTHash: "x", IdentityKey: ik, Machines: testMachines()}))
			return ik
		}
		want := map[string]proxid.Key{"dev-a": e.devA.IdentityKey}
		// More than one batch of clear rows.
		for i := 0; i < 130; i++ {
			id := fmt.Sprintf("dev-c%03d", i)
			want[id] = add(e.s, id, byte(i))
		}
		old := mustOpen(t, e.dsn, e.clk, &store.Opts{KeyEncKey: kek(1)})
		want["dev-old"] = add(old, "dev-old", 200)
		if r := rawKey(t, e.s, "dev-c000"); r[0] != 0 {
			t.Fatalf("setup: dev-c000 stored as %x, want clear", r)
		}

		// Without a KEK there is nothing to seal with.
		if _, err := e.s.ReencryptIdentityKeys(e.ctx, false); err == nil {
			t.Fatal("ReencryptIdentityKeys without KeyEncKey succeeded")
		}
		s := mustOpen(t, e.dsn, e.clk, &store.Opts{KeyEncKey: kek(2), PrevKeyEncKeys: [][]byte{kek(1)}})
		dry, err := s.ReencryptIdentityKeys(e.ctx, true)
		must(t, err)
		if dry.Sealed != 131 || dry.Resealed != 1 || dry.Current != 0 {
			t.Fatalf("dry run = %+v, want 131 sealed, 1 resealed", dry)
		}
		if r := rawKey(t, s, "dev-c000"); r[0] != 0 {
			t.Fatal("dry run wrote")
		}
		rep, err := s.ReencryptIdentityKeys(e.ctx, false)
		must(t, err)
		if rep.Sealed != 131 || rep.Resealed != 1 || rep.Current != 0 || len(rep.Failed) != 0 {
			t.Fatalf("run = %+v, want 131 sealed, 1 resealed", rep)
		}
		// Only the new KEK is needed now: the old one can be forgotten.
		only := mustOpen(t, e.dsn, e.clk, &store.Opts{KeyEncKey: kek(2)})
		for id, k := range want {
			if r := rawKey(t, only, id); r[0] != 1 || bytes.Contains(r, k[:]) {
				t.Fatalf("%s stored as %x, want sealed", id, r)
			}
			d, err := only.GetDevice(e.ctx, id)
			must(t, err)
			if d.IdentityKey != k {
				t.Fatalf("%s identity key %x after resealing, want %x", id, d.IdentityKey, k)
			}
		}
		again, err := only.ReencryptIdentityKeys(e.ctx, false)
		must(t, err)
		if again.Current != 132 || again.Clear() {
			t.Fatalf("second run = %+v, want all 132 current", again)
		}

		// A row under a key nobody configured is reported by ID; the rest
		// is still done.
		stray := mustOpen(t, e.dsn, e.clk, &store.Opts{KeyEncKey: kek(3)})
		add(stray, "dev-stray", 1)
		add(e.s, "dev-new-clear", 2)
		rep, err = only.ReencryptIdentityKeys(e.ctx, false)
		if err == nil || len(rep.Failed) != 1 || rep.Failed[0] != "dev-stray" || rep.Sealed != 1 {
			t.Fatalf("with a stray row: %+v, %v", rep, err)
		}
		if r := rawKey(t, only, "dev-new-clear"); r[0] != 1 {
			t.Fatal("clear row beside a stray one was not sealed")
		}
	})
}

// A store configured with a new KEK and the previous one reads rows under
// either, so a cloud restarted with a rotated KEK serves before the
// re-encryption has run.
func TestPreviousKeyEncKeyReads(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, &store.Opts{KeyEncKey: kek(1)})
		if _, err := mustOpen(t, e.dsn, e.clk, &store.Opts{KeyEncKey: kek(2)}).GetDevice(e.ctx, "dev-a"); err == nil {
			t.Fatal("read a row sealed under another KEK")
		}
		d, err := mustOpen(t, e.dsn, e.clk, &store.Opts{KeyEncKey: kek(2), PrevKeyEncKeys: [][]byte{kek(1)}}).GetDevice(e.ctx, "dev-a")
		must(t, err)
		if d.IdentityKey != e.devA.IdentityKey {
			t.Fatalf("identity key %x, want %x", d.IdentityKey, e.devA.IdentityKey)
		}
	})
}
