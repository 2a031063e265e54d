package svctest

import (
	"os"
	"testing"

	"beaconvend/cloud/internal/pgscratch"
)

// PostgresDSN returns the DSN of a new PostgreSQL database made from
// $VEND_PG_DSN (pgscratch.Create with prefix) and dropped when the test
// ends. Without VEND_PG_DSN, or when the database cannot be made, the
// rule of Missing applies.
func PostgresDSN(tb testing.TB, prefix string) string {
	tb.Helper()
	base := os.Getenv("VEND_PG_DSN")
	if base == "" {
		Missing(tb, "PostgreSQL (VEND_PG_DSN)", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
	}
	dsn, drop, err := pgscratch.Create(base, prefix)
	if err != nil {
		Missing(tb, "a scratch database at VEND_PG_DSN", err.Error())
	}
	tb.Cleanup(func() {
		if err := drop(); err != nil {
			tb.Logf("drop scratch database: %v", err)
		}
	})
	return dsn
}
