package store

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"               // registers the "sqlite" database/sql driver
)

// dialect holds every difference between SQLite and PostgreSQL that the
// store knows of. The SQL text of queries is otherwise shared: $n
// placeholders, ON CONFLICT, RETURNING and partial indexes work in both.
type dialect struct {
	name         string // "sqlite" or "postgres"
	driver       string // database/sql driver name
	defaultConns int
	// schema text substitutions: {{ID}} an auto-increment integer primary
	// key, {{BYTES}} a byte string.
	idType, bytesType string
	// lockRow ends a SELECT that must hold its row until commit: " FOR
	// UPDATE" on PostgreSQL; empty on SQLite, whose write transactions
	// (BEGIN IMMEDIATE) already run one at a time.
	lockRow   string
	retryable func(error) bool // busy, deadlock, serialization failure
	unique    func(error) bool // unique or primary key violation
	// lost reports an error of a switch-over: the connection broke or
	// the server stopped being a writable primary. The transaction may be
	// run again once a primary answers; see Store.tx.
	lost func(error) bool
}

var sqliteDialect = dialect{
	name: "sqlite", driver: "sqlite", defaultConns: 8,
	idType:    "INTEGER PRIMARY KEY",
	bytesType: "BLOB",
	retryable: func(err error) bool {
		var e *sqlite.Error
		if errors.As(err, &e) {
			c := e.Code() & 0xff
			return c == 5 || c == 6 // SQLITE_BUSY, SQLITE_LOCKED
		}
		return false
	},
	unique: func(err error) bool {
		var e *sqlite.Error
		if errors.As(err, &e) {
			return e.Code() == 2067 || e.Code() == 1555 // SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY
		}
		return false
	},
	lost: func(error) bool { return false }, // a file: nothing to switch
}

var postgresDialect = dialect{
	name: "postgres", driver: "pgx", defaultConns: 16,
	idType:    "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
	bytesType: "BYTEA",
	lockRow:   " FOR UPDATE",
	retryable: func(err error) bool {
		var e *pgconn.PgError
		if errors.As(err, &e) {
			return e.Code == "40001" || e.Code == "40P01" // serialization_failure, deadlock_detected
		}
		return false
	},
	unique: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505"
	},
	lost: pgLost,
}

// Unavailable reports whether err is the database being unreachable or
// switching over (a lost connection, a server shutting down or not yet a
// writable primary): transient for the caller, who may try again, as
// opposed to a bug or bad input. A transaction retries these itself for
// Opts.SwitchWait; a single read fails at once with one of them.
func Unavailable(err error) bool { return pgLost(err) }

// pgLost reports the errors a PostgreSQL switch-over produces: the server
// said it is going away or is not (yet) a writable primary, or the
// connection failed, broke or was closed under the transaction.
func pgLost(err error) bool {
	if err == nil {
		return false
	}
	var e *pgconn.PgError
	if errors.As(err, &e) {
		switch e.Code {
		case "57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
			return true
		case "25006": // read_only_sql_transaction: connected to a demoted primary
			return true
		}
		return strings.HasPrefix(e.Code, "08") // connection_exception class
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// schema returns migration text for this dialect: {{ID}} and {{BYTES}}
// replaced, and the blocks between a line "-- only sqlite" (or "-- only
// postgres") and a line "-- end only" kept for that dialect alone.
func (d dialect) schema(text string) string {
	var b strings.Builder
	keep := true
	for _, line := range strings.SplitAfter(text, "\n") {
		t := strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(t, "-- only "); ok {
			keep = name == d.name
			continue
		}
		if t == "-- end only" {
			keep = true
			continue
		}
		if keep {
			b.WriteString(line)
		}
	}
	return strings.NewReplacer("{{ID}}", d.idType, "{{BYTES}}", d.bytesType).Replace(b.String())
}

// pickDialect chooses the driver from the DSN and returns the connection
// string to hand it.
func pickDialect(dsn string) (dialect, string, error) {
	switch {
	case dsn == "":
		return dialect{}, "", errorf(ErrDSN, "empty")
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return postgresDialect, dsn, nil
	case strings.Contains(dsn, "://"):
		return dialect{}, "", errorf(ErrDSN, "scheme of %q: want postgres:// or sqlite:", redact(dsn))
	}
	path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	if path == "" || path == ":memory:" {
		return dialect{}, "", errorf(ErrDSN, "sqlite needs a file path (in-memory databases are per connection)")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return dialect{}, "", errorf(ErrDSN, "sqlite query: %v", err)
	}
	// Every connection: WAL, wait up to 10 s for the write lock, enforce
	// foreign keys, and synchronous=FULL: in WAL mode NORMAL may lose the
	// last committed transactions on a power loss, and a device deletes a
	// usage report once the cloud acknowledged its commit. A DSN that sets
	// synchronous itself (the benchmark compares NORMAL) keeps its own.
	// Every transaction begins IMMEDIATE so that concurrent writers queue
	// on the lock instead of deadlocking on an upgrade.
	sync := "synchronous(FULL)"
	for _, p := range q["_pragma"] {
		if strings.HasPrefix(strings.ToLower(p), "synchronous") {
			sync = ""
		}
	}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	if sync != "" {
		q.Add("_pragma", sync)
	}
	q.Set("_txlock", "immediate")
	return sqliteDialect, "file:" + path + "?" + q.Encode(), nil
}

// redact hides a password in a DSN for error text.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable dsn)"
	}
	return u.Redacted()
}
