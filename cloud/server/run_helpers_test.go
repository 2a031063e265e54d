package server_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"beaconvend/cloud/server"
	"beaconvend/cloud/store"
)

// openStore opens cfg's database as cloud serve does (with a test bcrypt
// cost), its data directory made, and closes it when the test ends.
func openStore(t *testing.T, cfg *server.Config) *store.Store {
	t.Helper()
	so, err := cfg.StoreOptions(store.Opts{BcryptCost: 4}, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), cfg.Database, &so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// runServer runs srv and waits up to within for it to be ready. It
// returns stop, which cancels the run and returns Run's error, and an
// error when Run ended first (stop then returns nil) or within passed.
func runServer(srv *server.Server, within time.Duration) (stop func() error, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() { close(ready) }) }()
	stop = func() error {
		cancel()
		return <-done
	}
	select {
	case <-ready:
		return stop, nil
	case err := <-done:
		done <- nil // Run is over; stop reports nothing more
		return stop, fmt.Errorf("Run: %v", err)
	case <-time.After(within):
		return stop, fmt.Errorf("not ready within %v", within)
	}
}
