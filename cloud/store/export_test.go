package store

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"time"
)

// OpenAtVersion opens dsn and applies only the first version migrations,
// for tests of a later migration on existing rows; the caller closes the
// returned pool.
func OpenAtVersion(ctx context.Context, dsn string, version int) (*sql.DB, error) {
	d, conn, err := pickDialect(dsn)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(d.driver, conn)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, d: d, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := s.applyMigrations(ctx, ms[:version]); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// DeviceExistsOrNotFound calls the unexported check that SetDeviceStatus
// and SetDeviceLost fall back on when no row was updated.
func DeviceExistsOrNotFound(s *Store, ctx context.Context, device string) error {
	return s.deviceExists(ctx, device)
}

// RawExec runs a statement on the store's database, for tests of the
// schema's own checks.
func RawExec(s *Store, ctx context.Context, q string) (sql.Result, error) {
	return s.db.ExecContext(ctx, q)
}
