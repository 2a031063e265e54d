// Package pgscratch makes throwaway PostgreSQL databases, for the test
// suites that run against a real PostgreSQL and for the load harness
// (cloud/internal/simdev): one fresh database per suite or run, made from
// a base DSN whose role may CREATEDB, and dropped with FORCE afterwards.
package pgscratch

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// Create makes a database named prefix_<random> on the server base points
// at and returns its DSN (base with the database replaced) and a function
// that drops it. prefix must be a lower-case SQL identifier of at most 31
// characters.
func Create(base, prefix string) (dsn string, drop func() error, err error) {
	if !prefixRE.MatchString(prefix) {
		return "", nil, fmt.Errorf("pgscratch: prefix %q: want [a-z][a-z0-9_]{0,30}", prefix)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("pgscratch: base DSN: %w", err)
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	defer db.Close()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	if _, err := db.Exec(`CREATE DATABASE ` + name); err != nil {
		return "", nil, fmt.Errorf("pgscratch: create database (the role needs CREATEDB): %w", err)
	}
	u.Path = "/" + name
	drop = func() error {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
		return err
	}
	return u.String(), drop, nil
}
