package pgscratch_test

import (
	"database/sql"
	"os"
	"strings"
	"testing"

	"beaconvend/cloud/internal/pgscratch"
	"beaconvend/cloud/internal/svctest"
)

func TestCreateAndDrop(t *testing.T) {
	if _, _, err := pgscratch.Create("postgres://x@127.0.0.1/db", "Bad-Name"); err == nil || !strings.Contains(err.Error(), "prefix") {
		t.Fatalf("bad prefix: %v", err)
	}
	base := os.Getenv("VEND_PG_DSN")
	if base == "" {
		svctest.Missing(t, "PostgreSQL (VEND_PG_DSN)", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
	}
	dsn, drop, err := pgscratch.Create(base, "pgscratch_test")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	if err := db.QueryRow(`SELECT current_database()`).Scan(&name); err != nil || !strings.HasPrefix(name, "pgscratch_test_") {
		t.Fatalf("connected to %q, %v", name, err)
	}
	db.Close()
	if err := drop(); err != nil {
		t.Fatal(err)
	}
	admin, _ := sql.Open("pgx", base)
	defer admin.Close()
	var n int
	if err := admin.QueryRow(`SELECT COUNT(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%s still exists after drop (%d, %v)", name, n, err)
	}
}
