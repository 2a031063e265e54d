package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// Bucket names. Each is one aggregate; see the package documentation for
// the keys and record encodings.
var (
	bucketSessions = []byte("sessions") // session ID [16] → session record
	bucketOutbox   = []byte("outbox")   // holds the nested items and ids buckets
	bucketItems    = []byte("items")    // in outbox: seq u64 big-endian → item record
	bucketIDs      = []byte("ids")      // in outbox: message ID → seq u64 big-endian
	bucketMeta     = []byte("meta")     // counters and settings, see meta keys
	bucketSeen     = []byte("seen")     // session ID [16] → seen record
	// bucketNonces (nonce.go): relay nonce [16] → ticket expiry
)

// Meta keys.
var (
	metaFormat    = []byte("format")     // u64: the file layout, FormatVersion
	metaUsageSeq  = []byte("usage_seq")  // u64: the last usage sequence number handed out
	metaConfigGen = []byte("config_gen") // u64: the generation of the applied configuration
)

// FormatVersion is the layout of the whole file (bucket set and key
// scheme). Open refuses a file written with another layout.
const FormatVersion = 1

// Errors. Every error the package returns wraps one of these (or
// signed.ErrReplayed), so vend.KindOf and vend.CodeOf classify it.
var (
	ErrNotFound   = vend.E(vend.NotFound, mqttapi.CodeSessionUnknown, "journal: no such session")
	ErrBusy       = vend.E(vend.Conflict, mqttapi.CodeMachineBusy, "journal: machine has a live session")
	ErrTransition = vend.E(vend.Conflict, "journal.transition", "journal: transition not allowed")
	ErrState      = vend.E(vend.Conflict, "journal.state", "journal: session state does not allow this")
	ErrMeter      = vend.E(vend.Invalid, "journal.meter", "journal: metered units go backwards")
	ErrInvalid    = vend.E(vend.Invalid, "journal.invalid", "journal: invalid argument")
	ErrDuplicate  = vend.E(vend.Conflict, "journal.duplicate", "journal: message id already in the outbox")
	ErrCorrupt    = vend.E(vend.Internal, "journal.corrupt", "journal: malformed record")
	ErrLocked     = vend.E(vend.Transient, "journal.locked", "journal: file is locked by another process")
	ErrClosed     = vend.E(vend.Internal, "journal.closed", "journal: closed")
	ErrStorage    = vend.E(vend.Internal, "journal.storage", "journal: storage failure")
)

// Opts configures Open. The zero value of each field picks its default.
type Opts struct {
	// Timeout bounds the wait for the file lock (bbolt's flock) that keeps
	// a second process out. Default 2 s; Open returns ErrLocked after it.
	Timeout time.Duration
	// MeterInterval is the least time between two metering commits of one
	// running session (flash-wear policy). Default 1 s. Negative means
	// every Meter call commits (tests).
	MeterInterval time.Duration
	// Logger receives storage events. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// DefaultOpts returns the options Open uses for a nil *Opts.
func DefaultOpts() *Opts {
	return &Opts{
		Timeout:       2 * time.Second,
		MeterInterval: time.Second,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:           time.Now,
	}
}

// Stats counts successful write transactions (each is one bbolt commit
// with an fsync) since Open.
type Stats struct {
	Commits           uint64 // all commits
	MeterCommits      uint64 // commits made by Meter, Flush, FlushDue and Close for metered readings
	TransitionCommits uint64 // commits by Accept, AcceptRelay, Transition and EndSession
	OutboxCommits     uint64 // commits by Enqueue, Ack and MarkAttempt (and Drain's attempt marks)
	OtherCommits      uint64 // meta and housekeeping commits (NextUsageSeq, SetConfigGen, Prune…)
}

type commitKind int

const (
	kindMeter commitKind = iota
	kindTransition
	kindOutbox
	kindOther
)

// Journal is the controller's durable state in one bbolt file. Its methods
// are safe for concurrent use. Writes are serialised by the Journal; reads
// run in parallel.
type Journal struct {
	db       *bolt.DB
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration

	mu     sync.Mutex // guards live, closed and serialises writes that touch live
	live   map[vend.SessionID]*liveSess
	closed bool

	drainMu   sync.Mutex // one Drain at a time
	drainNext atomic.Uint64

	commits [4]atomic.Uint64
}

// liveSess is the in-memory view of a session that still holds its
// machine (not yet reported), rebuilt from the file at Open.
type liveSess struct {
	machine    string
	state      State
	units      uint64    // durable units
	pend       *reading  // latest reading not yet committed
	lastCommit time.Time // when the durable reading was committed
}

type reading struct{ units, meter uint64 }

// Open opens (creating if needed) the journal file at path with fsync on
// every commit, waits at most opts.Timeout for its lock, creates the
// buckets, and rebuilds the set of live sessions. Errors: ErrLocked when
// another process holds the file; ErrCorrupt naming bucket and key when a
// record cannot be decoded or the layout is unknown; ErrStorage otherwise.
func Open(path string, opts *Opts) (*Journal, error) {
	o := DefaultOpts()
	if opts != nil {
		if opts.Timeout > 0 {
			o.Timeout = opts.Timeout
		}
		if opts.MeterInterval != 0 {
			o.MeterInterval = opts.MeterInterval
		}
		if opts.Logger != nil {
			o.Logger = opts.Logger
		}
		if opts.Now != nil {
			o.Now = opts.Now
		}
	}
	if o.MeterInterval < 0 {
		o.MeterInterval = 0
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: o.Timeout,
		NoSync:  false,
		// The freelist is rebuilt by a scan at open instead of being written
		// at every commit: one page less per commit on flash.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, vend.Errorf(ErrLocked, "%s: no lock within %s", path, o.Timeout)
		}
		return nil, vend.Errorf(ErrStorage, "open %s: %v", path, err)
	}
	j := &Journal{
		db:       db,
		log:      o.Logger,
		now:      o.Now,
		interval: o.MeterInterval,
		live:     make(map[vend.SessionID]*liveSess),
	}
	if err := j.init(); err != nil {
		db.Close()
		return nil, err
	}
	return j, nil
}

// init creates the buckets, checks the layout and loads live sessions.
func (j *Journal) init() error {
	err := j.db.Update(func(tx *bolt.Tx) error {
		// A file written before the nonce log existed gets its bucket
		// (the layout is otherwise the same): that is a write.
		added := false
		for _, n := range [][]byte{bucketSessions, bucketOutbox, bucketMeta, bucketSeen, bucketNonces} {
			added = added || tx.Bucket(n) == nil
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return vend.Errorf(ErrStorage, "create bucket %s: %v", n, err)
			}
		}
		ob := tx.Bucket(bucketOutbox)
		for _, n := range [][]byte{bucketItems, bucketIDs} {
			if _, err := ob.CreateBucketIfNotExists(n); err != nil {
				return vend.Errorf(ErrStorage, "create bucket outbox/%s: %v", n, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(metaFormat)
		if v == nil {
			return meta.Put(metaFormat, u64(FormatVersion))
		}
		f, err := getU64(bucketMeta, metaFormat, v)
		if err != nil {
			return err
		}
		if f != FormatVersion {
			return vend.Errorf(ErrCorrupt, "bucket meta key format: layout %d, this build reads %d", f, FormatVersion)
		}
		if added {
			return nil
		}
		return errNoop // nothing to write
	})
	if err != nil && !errors.Is(err, errNoop) {
		return err
	}
	now := j.now()
	return j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			s, err := decodeSession(k, v)
			if err != nil {
				return err
			}
			if s.State.holdsMachine() {
				j.live[s.ID] = &liveSess{machine: s.Machine, state: s.State, units: s.Units, lastCommit: now}
			}
			return nil
		})
	})
}

// errNoop rolls back a write transaction that found nothing to change, so
// that no commit (and no flash write) happens.
var errNoop = errors.New("journal: no change")

// update runs fn in a write transaction and counts the commit. A fn
// returning errNoop rolls back and update returns nil.
func (j *Journal) update(kind commitKind, fn func(tx *bolt.Tx) error) error {
	var fnErr error
	err := j.db.Update(func(tx *bolt.Tx) error {
		fnErr = fn(tx)
		return fnErr
	})
	switch {
	case err == nil:
		j.commits[kind].Add(1)
		return nil
	case errors.Is(err, errNoop):
		return nil
	case fnErr != nil:
		// fn's own error (ours, or a callback's such as a Signer's): as is.
		err = fnErr
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return vend.Errorf(ErrClosed, "%v", err)
	default:
		err = vend.Errorf(ErrStorage, "commit: %v", err)
	}
	if vend.KindOf(err) == vend.Internal {
		j.log.Error("journal: write failed", "err", err)
	}
	return err
}

// view runs fn in a read transaction.
func (j *Journal) view(fn func(tx *bolt.Tx) error) error {
	err := j.db.View(fn)
	if err == nil {
		return nil
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return vend.Errorf(ErrClosed, "%v", err)
	}
	var ve *vend.Error
	if !errors.As(err, &ve) {
		return vend.Errorf(ErrStorage, "read: %v", err)
	}
	return err
}

// Stats returns the commit counters.
func (j *Journal) Stats() Stats {
	s := Stats{
		MeterCommits:      j.commits[kindMeter].Load(),
		TransitionCommits: j.commits[kindTransition].Load(),
		OutboxCommits:     j.commits[kindOutbox].Load(),
		OtherCommits:      j.commits[kindOther].Load(),
	}
	s.Commits = s.MeterCommits + s.TransitionCommits + s.OutboxCommits + s.OtherCommits
	return s
}

// Path returns the file's path.
func (j *Journal) Path() string { return j.db.Path() }

// Close commits pending meter readings (one commit), then closes the file
// and releases its lock. Calling it again returns nil.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	ferr := j.flushLocked(func(*liveSess) bool { return true })
	j.closed = true
	j.mu.Unlock()
	if err := j.db.Close(); err != nil {
		return vend.Errorf(ErrStorage, "close: %v", err)
	}
	return ferr
}

// NextUsageSeq allocates the next usage sequence number in a commit of its
// own: strictly increasing from 1 and never handed out twice, even across
// crashes. EndSession allocates inside its own transaction instead; this
// is for callers that sign other reports.
func (j *Journal) NextUsageSeq() (uint64, error) {
	var seq uint64
	err := j.update(kindOther, func(tx *bolt.Tx) error {
		var err error
		seq, err = nextUsageSeq(tx)
		return err
	})
	if err != nil {
		return 0, err
	}
	return seq, nil
}

func nextUsageSeq(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	var cur uint64
	if v := meta.Get(metaUsageSeq); v != nil {
		var err error
		if cur, err = getU64(bucketMeta, metaUsageSeq, v); err != nil {
			return 0, err
		}
	}
	cur++
	if err := meta.Put(metaUsageSeq, u64(cur)); err != nil {
		return 0, vend.Errorf(ErrStorage, "put meta usage_seq: %v", err)
	}
	return cur, nil
}

// UsageSeq returns the last usage sequence number handed out (0 for none).
func (j *Journal) UsageSeq() (uint64, error) { return j.metaU64(metaUsageSeq) }

// ConfigGen returns the generation of the configuration last applied, 0
// when none was recorded.
func (j *Journal) ConfigGen() (uint64, error) { return j.metaU64(metaConfigGen) }

// SetConfigGen records the generation of the configuration now applied
// (one commit; none when it is unchanged).
func (j *Journal) SetConfigGen(gen uint64) error {
	return j.update(kindOther, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(metaConfigGen); v != nil {
			if cur, err := getU64(bucketMeta, metaConfigGen, v); err == nil && cur == gen {
				return errNoop
			}
		}
		return meta.Put(metaConfigGen, u64(gen))
	})
}

func (j *Journal) metaU64(key []byte) (uint64, error) {
	var n uint64
	err := j.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(key)
		if v == nil {
			return nil
		}
		var err error
		n, err = getU64(bucketMeta, key, v)
		return err
	})
	return n, err
}

func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

func getU64(bucket, key, v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, corrupt(bucket, key, fmt.Errorf("%d bytes, want 8", len(v)))
	}
	return binary.BigEndian.Uint64(v), nil
}

// corrupt names the bucket and key of a record that cannot be decoded.
func corrupt(bucket, key []byte, why error) error {
	return vend.Errorf(ErrCorrupt, "bucket %s key %s: %v", bucket, keyString(bucket, key), why)
}

// keyString renders a key readably: session IDs as UUID text, sequence
// numbers as decimal, printable keys as text, anything else as hex.
func keyString(bucket, key []byte) string {
	switch {
	case len(key) == 16 && (string(bucket) == string(bucketSessions) || string(bucket) == string(bucketSeen)):
		return vend.SessionID(key).String()
	case len(key) == 8 && string(bucket) == "outbox/items":
		return fmt.Sprintf("%d", binary.BigEndian.Uint64(key))
	}
	for _, c := range key {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%x", key)
		}
	}
	return fmt.Sprintf("%q", key)
}
