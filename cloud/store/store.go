package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
)

// Errors. Each carries a vend kind and a stable code; the store wraps them
// with detail using vend.Errorf, so test with errors.Is or vend.CodeOf.
var (
	ErrDSN              = vend.E(vend.Invalid, "store.dsn", "store: unsupported dsn")
	ErrSchemaNewer      = vend.E(vend.Internal, "store.schema_newer", "store: database schema is newer than this binary")
	ErrInput            = vend.E(vend.Invalid, "store.input", "store: invalid input")
	ErrCurrency         = vend.E(vend.Invalid, "money.currency_mismatch", "store: currency does not match")
	ErrAmount           = vend.E(vend.Invalid, "money.amount", "store: amount must be positive")
	ErrMachineBusy      = vend.E(vend.Conflict, "machine.busy", "store: machine has a live session")
	ErrFunds            = vend.E(vend.Conflict, "funds.insufficient", "store: insufficient funds")
	ErrSessionNotFound  = vend.E(vend.NotFound, "session.not_found", "store: session not found")
	ErrSessionState     = vend.E(vend.Conflict, "session.state", "store: session is not in a state that allows this")
	ErrDeviceNotFound   = vend.E(vend.NotFound, "device.not_found", "store: device not found")
	ErrDeviceDisabled   = vend.E(vend.Conflict, "device.disabled", "store: device is disabled")
	ErrDeviceExists     = vend.E(vend.Conflict, "device.exists", "store: device already exists")
	ErrMachineNotFound  = vend.E(vend.NotFound, "machine.not_found", "store: machine not found")
	ErrSlotNotFound     = vend.E(vend.NotFound, "slot.not_found", "store: slot not found")
	ErrUserNotFound     = vend.E(vend.NotFound, "user.not_found", "store: user not found")
	ErrOperatorNotFound = vend.E(vend.NotFound, "operator.not_found", "store: operator not found")
	ErrEmailTaken       = vend.E(vend.Conflict, "email.taken", "store: email already registered")
	ErrCredentials      = vend.E(vend.Unauthorized, "auth.credentials", "store: wrong email or password")
	ErrToken            = vend.E(vend.Unauthorized, "auth.token", "store: token unknown, expired or revoked")
	ErrIdemConflict     = vend.E(vend.Conflict, "idempotency.conflict", "store: idempotency key reused with a different request")
	ErrUsageMismatch    = vend.E(vend.Invalid, "usage.mismatch", "store: usage report departs from its session")
	ErrCommandNotFound  = vend.E(vend.NotFound, "command.not_found", "store: command reply not found")
	ErrIdemNotFound     = vend.E(vend.NotFound, "idempotency.not_found", "store: no stored response for this key")
)

// Opts configures a Store. The zero value (or nil) is usable.
type Opts struct {
	// Logger receives internal errors and migration notes; discard when nil.
	Logger *slog.Logger
	// Now is the clock; time.Now when nil. Tests set it.
	Now func() time.Time
	// MaxOpenConns bounds the connection pool; 0 means 8 for SQLite, 16 for PostgreSQL.
	MaxOpenConns int
	// KeyEncKey, when 32 bytes, encrypts device identity keys at rest with
	// AES-256-GCM (the device ID as additional data). When nil, identity
	// keys are stored in clear: acceptable for a pilot on a private disk only.
	KeyEncKey []byte
	// PrevKeyEncKeys are retired key-encryption keys (32 bytes each):
	// rows still sealed under one of them are read, and
	// ReencryptIdentityKeys reseals them under KeyEncKey.
	PrevKeyEncKeys [][]byte
	// BcryptCost is the bcrypt cost for passwords; 0 means bcrypt.DefaultCost (10).
	// Tests use bcrypt.MinCost (4).
	BcryptCost int
	// AckBound is how long after a grant's expiry (its start-by bound) a
	// pending session's hold stays before ExpireHolds releases it: the
	// allowance for a device clock behind the cloud's; 0 means 10 s.
	AckBound time.Duration
	// Lifecycle bounds the acknowledged states (longest runs, offline
	// allowance, settlement window, the unreported policy); zero: defaults.
	Lifecycle Lifecycle
	// SwitchWait bounds how long a write transaction that failed on a
	// PostgreSQL switch-over (connection lost, primary shutting down or
	// read-only, no primary reachable) keeps being run again, backing off
	// from 50 ms to 1 s, before its error is returned; 0 means 30 s. Set
	// it above the failover time of the database's manager.
	SwitchWait time.Duration
}

// Store is the cloud's database: devices, users, sessions, the ledger.
// It is safe for concurrent use by many goroutines and, on PostgreSQL, by
// many cloud instances at once.
type Store struct {
	db      *sql.DB
	d       dialect
	log     *slog.Logger
	now     func() time.Time
	keyEnc  []byte
	keyPrev [][]byte
	cost    int
	ackBnd  time.Duration
	life    Lifecycle
	swWait  time.Duration
	Dialect string // "sqlite" or "postgres"
}

// Open connects to dsn and applies pending schema migrations.
// "postgres://…" or "postgresql://…" selects PostgreSQL (pgx); "sqlite:PATH",
// "file:PATH" or a bare path selects SQLite (a file in WAL mode). Errors:
// ErrDSN, ErrSchemaNewer, and the driver's.
func Open(ctx context.Context, dsn string, opts *Opts) (*Store, error) {
	if opts == nil {
		opts = &Opts{}
	}
	d, conn, err := pickDialect(dsn)
	if err != nil {
		return nil, err
	}
	if opts.KeyEncKey != nil && len(opts.KeyEncKey) != 32 {
		return nil, vend.Errorf(ErrInput, "key encryption key of %d bytes, want 32", len(opts.KeyEncKey))
	}
	for _, k := range opts.PrevKeyEncKeys {
		if len(k) != 32 {
			return nil, vend.Errorf(ErrInput, "previous key encryption key of %d bytes, want 32", len(k))
		}
	}
	db, err := sql.Open(d.driver, conn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", d.name, err)
	}
	n := opts.MaxOpenConns
	if n == 0 {
		n = d.defaultConns
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	s := &Store{db: db, d: d, log: opts.Logger, now: opts.Now, keyEnc: opts.KeyEncKey, keyPrev: opts.PrevKeyEncKeys,
		cost: opts.BcryptCost, ackBnd: opts.AckBound, life: opts.Lifecycle.withDefaults(), swWait: opts.SwitchWait, Dialect: d.name}
	if s.swWait <= 0 {
		s.swWait = 30 * time.Second
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.ackBnd == 0 {
		s.ackBnd = 10 * time.Second
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: connect %s: %w", d.name, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the connection pool.
func (s *Store) Close() error { return s.db.Close() }

// DB returns the underlying pool, for health checks and tests; do not write
// through it.
func (s *Store) DB() *sql.DB { return s.db }

func (s *Store) nowMs() int64 { return s.now().UnixMilli() }

// newID returns prefix_ + 16 random hex digits.
func newID(prefix string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

// queryer is what both *sql.DB and *sql.Tx offer.
type queryer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// errRetry marks an attempt that must be retried in a fresh transaction
// (a unique key raced, a deadlock, a busy database).
var errRetry = errors.New("store: retry")

const maxAttempts = 8

var errorf = vend.Errorf

// tx runs fn in one write transaction, retrying on transient conflicts
// (serialization failure, deadlock, SQLITE_BUSY, a unique key taken by a
// concurrent transaction) up to maxAttempts times, and on a switch-over
// (see dialect.lost) for up to Opts.SwitchWait with a growing back-off.
// fn must be safe to run again, and more: when the connection is lost
// during COMMIT the outcome is unknown, and fn runs again in a fresh
// transaction, so it must find its own earlier write instead of writing
// twice (every money step is keyed: a top-up by its idempotency key, a
// session by its request key, a settlement by its session; doc.go).
func (s *Store) tx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	var last error
	var swStart time.Time // first switch-over error; zero while none
	swBackoff := 50 * time.Millisecond
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			// Short jittered back-off.
			var b [1]byte
			_, _ = rand.Read(b[:])
			t := time.NewTimer(time.Duration(attempt*attempt)*time.Millisecond + time.Duration(b[0])*20*time.Microsecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("store: %s: %w", what, ctx.Err())
			case <-t.C:
			}
		}
		err := s.tryTx(ctx, fn)
		if err == nil {
			if !swStart.IsZero() {
				s.log.Info("store: transaction went through after a switch-over", "tx", what, "waited", time.Since(swStart).Round(time.Millisecond))
			}
			return nil
		}
		if s.d.lost(err) && ctx.Err() == nil {
			if swStart.IsZero() {
				swStart = time.Now()
			}
			if time.Since(swStart) < s.swWait {
				var cu *commitUnknown
				if errors.As(err, &cu) {
					s.log.Warn("store: connection lost during commit; running the transaction again to find or make its write", "tx", what, "err", cu.err)
				} else {
					s.log.Warn("store: transaction failed on a switch-over; running it again", "tx", what, "err", err, "in", swBackoff)
				}
				t := time.NewTimer(swBackoff)
				select {
				case <-ctx.Done():
					t.Stop()
					return fmt.Errorf("store: %s: %w", what, ctx.Err())
				case <-t.C:
				}
				swBackoff = min(2*swBackoff, time.Second)
				last = err
				attempt = 0 // switch-overs do not use up the conflict attempts
				continue
			}
			return vend.Errorf(vend.E(vend.Transient, "store.unavailable", "store: database unavailable"), "%s: no writable primary for %v: %v", what, s.swWait, err)
		}
		if errors.Is(err, errRetry) || s.d.retryable(err) || s.d.unique(err) {
			last = err
			continue
		}
		var ve *vend.Error
		if errors.As(err, &ve) {
			return err
		}
		return fmt.Errorf("store: %s: %w", what, err)
	}
	if s.d.unique(last) {
		return fmt.Errorf("store: %s: %w", what, last)
	}
	return vend.Errorf(vend.E(vend.Transient, "store.busy", "store: database busy"), "%s: %v", what, last)
}

// commitUnknown is a COMMIT whose connection broke: the transaction may
// or may not have committed.
type commitUnknown struct{ err error }

func (e *commitUnknown) Error() string { return "store: commit outcome unknown: " + e.err.Error() }
func (e *commitUnknown) Unwrap() error { return e.err }

func (s *Store) tryTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil && s.d.lost(err) {
		return &commitUnknown{err}
	}
	return err
}

// in returns "($n,$n+1,…)" placeholders for k values starting at n.
func in(n, k int) string {
	var b strings.Builder
	b.WriteByte('(')
	for i := 0; i < k; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "$%d", n+i)
	}
	b.WriteByte(')')
	return b.String()
}
