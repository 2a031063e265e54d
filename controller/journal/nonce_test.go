package journal_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

// AcceptRelay records the session and its nonce in one commit: the nonce
// is refused afterwards (also after a reopen), and a refused accept
// (reused nonce, replayed session, busy machine) writes neither the
// session nor the nonce.
func TestAcceptRelayRecordsNonceAtomically(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := journal.Open(path, &journal.Opts{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	g, b := mustGrant(t, "m1", clk.Now())
	nonce := [signed.RelayNonceLen]byte{0xaa, 15: 0x01}
	if seen, err := j.NonceSeen(nonce); err != nil || seen {
		t.Fatalf("NonceSeen before = %v, %v", seen, err)
	}
	before := j.Stats().Commits
	ev := mustEvent(t, "authorized", g.Session, clk.Now())
	if err := j.AcceptRelay(g, b, journal.Relay{Nonce: nonce, ExpiresAt: g.ExpiresAt}, ev); err != nil {
		t.Fatalf("AcceptRelay = %v", err)
	}
	if n := j.Stats().Commits - before; n != 1 {
		t.Errorf("AcceptRelay took %d commits, want 1", n)
	}
	if seen, err := j.NonceSeen(nonce); err != nil || !seen {
		t.Fatalf("NonceSeen after = %v, %v", seen, err)
	}
	if seen, _ := j.Seen(g.Session); !seen {
		t.Fatal("session not seen after AcceptRelay")
	}

	// Same nonce with a new grant on another machine: refused, nothing written.
	g2, b2 := mustGrant(t, "m2", clk.Now())
	depth, _ := j.Depth()
	err = j.AcceptRelay(g2, b2, journal.Relay{Nonce: nonce, ExpiresAt: g2.ExpiresAt}, mustEvent(t, "authorized", g2.Session, clk.Now()))
	wantCode(t, "AcceptRelay(reused nonce)", err, gattapi.ErrNonceReused.Code, vend.Conflict)
	if seen, _ := j.Seen(g2.Session); seen {
		t.Error("refused relay left its session seen")
	}
	if d, _ := j.Depth(); d != depth {
		t.Errorf("refused relay queued %d messages", d-depth)
	}
	// A replayed session with a fresh nonce, and a busy machine: refused,
	// and the fresh nonces are not recorded.
	fresh := [signed.RelayNonceLen]byte{0xbb}
	g3, b3 := mustGrant(t, "m1", clk.Now())
	wantCode(t, "AcceptRelay(busy)", j.AcceptRelay(g3, b3, journal.Relay{Nonce: fresh, ExpiresAt: g3.ExpiresAt}), "machine.busy", vend.Conflict)
	if err := j.Transition(g.Session, journal.Expired, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := j.EndSession(g.Session, signer); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "AcceptRelay(replay)", j.AcceptRelay(g, b, journal.Relay{Nonce: fresh, ExpiresAt: g.ExpiresAt}), signed.ErrReplayed.Code, vend.Conflict)
	if seen, _ := j.NonceSeen(fresh); seen {
		t.Error("a refused accept recorded its nonce")
	}
	wantCode(t, "AcceptRelay(no expiry)", j.AcceptRelay(g2, b2, journal.Relay{Nonce: fresh}), journal.ErrInvalid.Code, vend.Invalid)

	// Survives a reopen; pruned only after its ticket's expiry.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, path, &journal.Opts{Now: clk.Now})
	if seen, err := j.NonceSeen(nonce); err != nil || !seen {
		t.Fatalf("NonceSeen after reopen = %v, %v", seen, err)
	}
	if id, err := j.LastRelayed(); err != nil || id != g.Session {
		t.Fatalf("LastRelayed after reopen = %v, %v; want %v", id, err, g.Session)
	}
	if n, err := j.PruneNonces(g.ExpiresAt); err != nil || n != 0 {
		t.Fatalf("PruneNonces(at expiry) = %d, %v; want 0", n, err)
	}
	if n, err := j.PruneNonces(g.ExpiresAt.Add(time.Millisecond)); err != nil || n != 1 {
		t.Fatalf("PruneNonces(after expiry) = %d, %v; want 1", n, err)
	}
	if seen, _ := j.NonceSeen(nonce); seen {
		t.Error("nonce kept after PruneNonces")
	}
	if n, _ := j.Nonces(); n != 0 {
		t.Errorf("%d nonces left", n)
	}
}

// A journal file written before the nonce log existed opens with an empty
// log and takes relayed grants.
func TestNonceLogAddedToOlderFile(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "j.db")
	j := mustOpen(t, path, &journal.Opts{Now: clk.Now})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("nonces")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	j = mustOpen(t, path, &journal.Opts{Now: clk.Now})
	g, b := mustGrant(t, "m1", clk.Now())
	if err := j.AcceptRelay(g, b, journal.Relay{Nonce: [16]byte{1}, ExpiresAt: g.ExpiresAt}); err != nil {
		t.Fatalf("AcceptRelay on an older file = %v", err)
	}
}

// A corrupt nonce record is ErrCorrupt naming the bucket, not a panic.
func TestNonceCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j := mustOpen(t, path, nil)
	j.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := bytes.Repeat([]byte{7}, 16)
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("nonces")).Put(n, []byte{1, 2}) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	j = mustOpen(t, path, nil)
	_, err = j.NonceSeen([16]byte(n))
	wantCode(t, "NonceSeen(corrupt)", err, journal.ErrCorrupt.Code, vend.Internal)
	_, err = j.PruneNonces(time.Now())
	wantCode(t, "PruneNonces(corrupt)", err, journal.ErrCorrupt.Code, vend.Internal)
}

// LastRelayed names the relayed session accepted last: none before, then
// the one whose ticket expires last.
func TestLastRelayed(t *testing.T) {
	clk := newClock()
	j := mustOpen(t, "", &journal.Opts{Now: clk.Now})
	if id, err := j.LastRelayed(); err != nil || !id.IsZero() {
		t.Fatalf("LastRelayed on an empty log = %v, %v", id, err)
	}
	g1, b1 := mustGrant(t, "m1", clk.Now())
	if err := j.AcceptRelay(g1, b1, journal.Relay{Nonce: [16]byte{1}, ExpiresAt: g1.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	g2, b2 := mustGrant(t, "m2", clk.Now())
	if err := j.AcceptRelay(g2, b2, journal.Relay{Nonce: [16]byte{2}, ExpiresAt: g2.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	// An MQTT grant is no relayed session.
	g3, b3 := mustGrant(t, "m3", clk.Now().Add(time.Second))
	if err := j.Accept(g3, b3); err != nil {
		t.Fatal(err)
	}
	if id, err := j.LastRelayed(); err != nil || id != g2.Session {
		t.Fatalf("LastRelayed = %v, %v; want %v", id, err, g2.Session)
	}
}
