package service_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
)

// Progress events cost no store write: a running machine sends one a
// second, and each used to be recorded as processed (a commit, a WAL
// flush). Measured over one running machine's minute: the processed
// records written, and on SQLite the WAL's growth, which is zero exactly
// when nothing was committed.
func TestProgressWritesNothing(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.db")
			dsn := "sqlite:" + path
			if name == "postgres" {
				dsn = svctest.PostgresDSN(t, "vend_svc_progress")
			}
			r := newPRig(t, dsn, service.Options{})
			ctx := context.Background()
			ss := r.authorized(t, "key-00001")
			r.handle(t, mqttapi.LeafEvt, &mqttapi.Event{Envelope: mqttapi.NewEnvelope(time.Now()), Kind: mqttapi.EventStarted, Session: ss.ID, Machine: ss.Machine})
			walBefore := walSize(path)
			var before int
			if err := r.st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM processed_messages`).Scan(&before); err != nil {
				t.Fatal(err)
			}
			const seconds = 60
			for i := range seconds {
				units := uint64(100 * (i + 1))
				amount := vend.Amount{Minor: int64(5 * (i + 1)), Currency: "EUR"}
				r.handle(t, mqttapi.LeafEvt, &mqttapi.Event{Envelope: mqttapi.NewEnvelope(time.Now()), Kind: mqttapi.EventProgress,
					Session: ss.ID, Machine: ss.Machine, Units: &units, Unit: vend.UnitML, Amount: &amount})
			}
			var after int
			if err := r.st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM processed_messages`).Scan(&after); err != nil {
				t.Fatal(err)
			}
			grew := walSize(path) - walBefore
			t.Logf("%s: %d progress events (one running machine, %d s): %d processed records written (%.2f commits/s), WAL grew %d bytes",
				name, seconds, seconds, after-before, float64(after-before)/seconds, grew)
			if after != before {
				t.Errorf("progress events wrote %d processed records, want 0", after-before)
			}
			if name == "sqlite" && grew != 0 {
				t.Errorf("SQLite WAL grew %d bytes over progress events alone, want 0 (no commit)", grew)
			}
		})
	}
}

func walSize(db string) int64 {
	fi, err := os.Stat(db + "-wal")
	if err != nil {
		return 0
	}
	return fi.Size()
}
