package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	"beaconvend/cloud/internal/clusterfault"
	"beaconvend/cloud/internal/pgaf"
	"beaconvend/cloud/internal/pgscratch"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// formationDir is the test's own pg_auto_failover formation (unless
// VEND_PGAF_DIR names one), apart from the one other suites use, since
// the test kills its primary. Like the PostgreSQL of scripts/pg.sh it is
// a service kept between runs (scripts/pgaf.sh starts it, or reuses it);
// the node the test killed is started again at the end and rejoins as a
// secondary.
const formationDir = "/var/tmp/vend-pgaf-clusterfault"

// failover is the formation as the test's Failover.
type failover struct {
	f      *pgaf.Formation
	killed pgaf.Node
}

// KillPrimary SIGKILLs the primary's keeper and PostgreSQL processes.
func (f *failover) KillPrimary() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := f.f.KillPrimary(ctx)
	f.killed = n
	return err
}

// WaitFailover waits until the other node is primary and takes writes.
func (f *failover) WaitFailover(within time.Duration) error {
	_, err := f.f.WaitFailover(context.Background(), f.killed, within)
	return err
}

// startFailover brings the formation up with scripts/pgaf.sh, makes a
// scratch database on it (the multi-host DSN with
// target_session_attrs=read-write) and returns what drops it and
// restores the killed node.
func startFailover(cfg *clusterfault.Config, keep bool) (func(), error) {
	if os.Getenv("VEND_PGAF_DIR") == "" {
		os.Setenv("VEND_PGAF_DIR", formationDir)
	}
	f, err := startFormation()
	if err != nil {
		return nil, err
	}
	dsn, drop, err := pgscratch.Create(f.DSN(), "clusterfault")
	if err != nil {
		return nil, err
	}
	// A database just made may not be on the secondary yet, and pgx does
	// not try the next host after a server's error: wait until the DSN
	// connects.
	if err := connects(dsn, 30*time.Second); err != nil {
		_ = drop()
		return nil, err
	}
	cfg.DSN, cfg.Failover = dsn, &failover{f: f}
	return func() {
		// The killed node rejoins as a secondary (scripts/pgaf.sh starts
		// it again), then the scratch database goes.
		if _, err := startFormation(); err != nil {
			fmt.Fprintf(os.Stderr, "clusterfault: restoring the formation: %v\n", err)
		}
		if !keep {
			_ = drop()
		}
	}, nil
}

func connects(dsn string, within time.Duration) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	for deadline := time.Now().Add(within); ; time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the scratch database does not connect: %w", err)
		}
	}
}

// startFormation runs scripts/pgaf.sh (pgaf.StartProcs), up to three
// times: a formation whose keepers were stopped may need a second call.
func startFormation() (*pgaf.Formation, error) {
	var err error
	var out string
	for range 3 {
		var f *pgaf.Formation
		if f, out, err = pgaf.StartProcs(); err == nil {
			return f, nil
		}
		time.Sleep(3 * time.Second)
	}
	return nil, fmt.Errorf("%v\n%s", err, out)
}
