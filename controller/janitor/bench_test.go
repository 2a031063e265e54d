package janitor_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"beaconvend/app-protocol/vend"
	"beaconvend/controller/janitor"
	"beaconvend/controller/journal"
)

// BenchmarkJournalOpen measures journal.Open (and Close) on a journal
// that has sold a history of settled sessions, plus the last week's 1000
// (which the janitor keeps). Sub-benchmark "unpruned" has every settled
// session still in the file (no janitor); "janitor" had the janitor sweep
// after every 10,000 sessions, as it would while the board sells (hourly
// sweeps, a week's retention), so freed pages were reused and the file
// stayed small; "pruned-once" is the unpruned file swept once (a journal
// written before the janitor existed): the records are gone but bbolt
// never shrinks a file. Run it with
//
//	go test -run '^$' -bench JournalOpen -benchtime 5x ./controller/janitor/
func BenchmarkJournalOpen(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		path := settledHistory(b, n, 1000, 0)
		b.Run(fmt.Sprintf("settled=%d/unpruned", n), func(b *testing.B) { benchOpen(b, path) })
		if r := sweep(b, path); r.Sessions != n+1 { // the copies and their template
			b.Fatalf("sweep = %+v; want %d sessions pruned", r, n+1)
		}
		b.Run(fmt.Sprintf("settled=%d/pruned-once", n), func(b *testing.B) { benchOpen(b, path) })
		swept := settledHistory(b, n, 1000, 10_000)
		b.Run(fmt.Sprintf("settled=%d/janitor", n), func(b *testing.B) { benchOpen(b, swept) })
	}
}

// sweep runs one janitor sweep a week and two hours after t0.
func sweep(b *testing.B, path string) janitor.Result {
	b.Helper()
	j, err := journal.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	now := t0.Add(7*24*time.Hour + 2*time.Hour)
	r, err := janitor.New(j, janitor.Opts{Now: func() time.Time { return now }}).Sweep()
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func benchOpen(b *testing.B, path string) {
	for b.Loop() {
		j, err := journal.Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		j.Close()
	}
}

// settledHistory writes a journal with old settled sessions (settled at
// t0) and recent ones (settled a week later), each a copy of a real
// settled record under a fresh session ID, with its seen entry. With
// sweepEvery > 0 the janitor sweeps after every sweepEvery old sessions.
func settledHistory(b *testing.B, old, recent, sweepEvery int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "journal.db")
	c := &clock{t: t0}
	j, err := journal.Open(path, &journal.Opts{Now: c.Now, MeterInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	oldT, _ := sell(b, j, "m1", c.Now(), true)
	c.Advance(7 * 24 * time.Hour)
	recentT, _ := sell(b, j, "m1", c.Now(), true)
	j.Close()
	templates := map[vend.SessionID][2][]byte{}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		for _, id := range []vend.SessionID{oldT.Session, recentT.Session} {
			templates[id] = [2][]byte{bytes.Clone(tx.Bucket([]byte("sessions")).Get(id[:])), bytes.Clone(tx.Bucket([]byte("seen")).Get(id[:]))}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	db.Close()
	add := func(tmpl vend.SessionID, n int) {
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		rec, seen := templates[tmpl][0], templates[tmpl][1]
		for done := 0; done < n; {
			err := db.Update(func(tx *bolt.Tx) error {
				sb, eb := tx.Bucket([]byte("sessions")), tx.Bucket([]byte("seen"))
				for k := 0; k < 10_000 && done < n; k++ {
					id := vend.NewSessionID()
					r := bytes.ReplaceAll(rec, []byte(tmpl.String()), []byte(id.String()))
					if err := sb.Put(bytes.Clone(id[:]), r); err != nil {
						return err
					}
					if err := eb.Put(bytes.Clone(id[:]), seen); err != nil {
						return err
					}
					done++
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	chunk := sweepEvery
	if chunk <= 0 {
		chunk = old
	}
	for done := 0; done < old; done += chunk {
		add(oldT.Session, min(chunk, old-done))
		if sweepEvery > 0 {
			sweep(b, path)
		}
	}
	add(recentT.Session, recent)
	return path
}
