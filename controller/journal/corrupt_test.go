package journal_test

import (
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

// rawPut writes value under bucket path/key with bbolt directly, as a bug
// or bit rot might.
func rawPut(t *testing.T, path string, bucket []string, key, value []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket[0]))
		for _, n := range bucket[1:] {
			b = b.Bucket([]byte(n))
		}
		return b.Put(key, value)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMalformedRecords(t *testing.T) {
	type setup struct {
		path string
		sess vend.SessionID
	}
	prepare := func(t *testing.T) setup {
		path := filepath.Join(t.TempDir(), "j.db")
		j, err := journal.Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		g, b := mustGrant(t, "m1", t0)
		if err := j.Accept(g, b); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Enqueue(mqttapi.LeafEvt, "e1", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		j.Close()
		return setup{path, g.Session}
	}
	seq1 := make([]byte, 8)
	binary.BigEndian.PutUint64(seq1, 1)
	garbage := []byte{0xff, 0x00, '{', 0x13, 0x37}

	cases := []struct {
		name   string
		bucket []string
		key    func(setup) []byte
		value  []byte
		use    func(*journal.Journal, setup) error // nil: Open itself must fail
		want   []string                            // substrings of the error
	}{
		{"session garbage", []string{"sessions"}, func(s setup) []byte { return s.sess[:] }, garbage, nil,
			[]string{"bucket sessions", "journal: malformed record"}},
		{"session version", []string{"sessions"}, func(s setup) []byte { return s.sess[:] }, []byte(`{"v":9}`), nil,
			[]string{"bucket sessions", "record version 9"}},
		{"session wrong id", []string{"sessions"}, func(s setup) []byte { return s.sess[:] },
			[]byte(`{"v":1,"id":"00000000-0000-4000-8000-000000000001","machine":"m1","state":"running","grant":"AA=="}`), nil,
			[]string{"bucket sessions", "record names session"}},
		{"session short key", []string{"sessions"}, func(setup) []byte { return []byte("k") }, []byte(`{"v":1}`), nil,
			[]string{"bucket sessions key \"k\""}},
		{"meta format", []string{"meta"}, func(setup) []byte { return []byte("format") }, []byte{1, 2}, nil,
			[]string{"bucket meta key \"format\"", "2 bytes, want 8"}},
		{"outbox item", []string{"outbox", "items"}, func(setup) []byte { return seq1 }, garbage,
			func(j *journal.Journal, _ setup) error { _, err := j.Pending(0); return err },
			[]string{"bucket outbox/items key 1"}},
		{"outbox item on ack", []string{"outbox", "items"}, func(setup) []byte { return seq1 }, []byte(`{"v":1,"seq":1}`),
			func(j *journal.Journal, _ setup) error { _, err := j.Ack("e1"); return err },
			[]string{"bucket outbox/items key 1"}},
		{"seen", []string{"seen"}, func(s setup) []byte { return s.sess[:] }, garbage,
			func(j *journal.Journal, s setup) error { _, err := j.Seen(s.sess); return err },
			[]string{"bucket seen key ", "seen record of 5 bytes"}},
		{"usage seq", []string{"meta"}, func(setup) []byte { return []byte("usage_seq") }, garbage,
			func(j *journal.Journal, _ setup) error { _, err := j.NextUsageSeq(); return err },
			[]string{"bucket meta key \"usage_seq\""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := prepare(t)
			rawPut(t, s.path, tc.bucket, tc.key(s), tc.value)
			j, err := journal.Open(s.path, nil)
			if tc.use != nil {
				if err != nil {
					t.Fatalf("Open = %v, want success (the bad record is not read at open)", err)
				}
				defer j.Close()
				err = tc.use(j, s)
			} else if err == nil {
				j.Close()
				t.Fatalf("Open succeeded over a malformed record")
			}
			if vend.CodeOf(err) != journal.ErrCorrupt.Code {
				t.Fatalf("error = %v, want code %s", err, journal.ErrCorrupt.Code)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNotAJournalFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	if err := writeFile(path, []byte(strings.Repeat("not bbolt ", 1000))); err != nil {
		t.Fatal(err)
	}
	_, err := journal.Open(path, nil)
	if vend.CodeOf(err) != journal.ErrStorage.Code || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open(garbage file) = %v, want ErrStorage naming the file", err)
	}
}
