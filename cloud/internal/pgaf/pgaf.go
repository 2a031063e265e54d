// Package pgaf is test support for PostgreSQL failover: a pg_auto_failover
// formation (a monitor and two data nodes on loopback ports, made by
// scripts/pgaf.sh), the multi-host DSN the cloud connects with, and real
// faults: the primary's PostgreSQL and its keeper killed with SIGKILL,
// then a wait until the monitor has promoted the secondary.
//
// When pg_autoctl cannot be had (not installed and not root, or the
// script fails) the rule of svctest.Missing applies: a loud skip, or a
// failure when VEND_REQUIRE_SERVICES is set.
package pgaf

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"beaconvend/cloud/internal/pgscratch"
	"beaconvend/cloud/internal/svctest"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// Node is a data node of the formation.
type Node struct {
	Name string // node1 or node2
	Port int    // its PostgreSQL port on 127.0.0.1
}

// NodeState is a node as the monitor sees it.
type NodeState struct {
	Node
	Reported, Goal string // pg_auto_failover states: primary, secondary, wait_primary, …
}

// Formation is a running formation.
type Formation struct {
	Dir         string // scripts/pgaf.sh's directory (VEND_PGAF_DIR)
	MonitorPort int
	Nodes       [2]Node
	dsn         string
	killed      map[string]bool
}

// DefaultDir is where scripts/pgaf.sh keeps the formation unless
// VEND_PGAF_DIR says otherwise.
const DefaultDir = "/var/tmp/vend-pgaf"

// Start brings the formation up (or reuses a running one) with
// scripts/pgaf.sh and returns it; when the test ends, any node it killed
// is started again (it rejoins as a secondary). Without pg_autoctl the
// rule of svctest.Missing applies.
func Start(tb testing.TB) *Formation {
	tb.Helper()
	f, out, err := StartProcs()
	if err != nil {
		svctest.Missing(tb, "a pg_auto_failover formation (scripts/pgaf.sh)", fmt.Sprintf("%v\n%s", err, tail(out, 2000)))
	}
	tb.Cleanup(func() {
		if len(f.killed) > 0 {
			if _, _, err := StartProcs(); err != nil {
				tb.Logf("pgaf: restarting the killed node: %v", err)
			}
		}
	})
	return f
}

// StartProcs is Start outside a test: it runs scripts/pgaf.sh and returns
// the formation, or an error and the script's output.
func StartProcs() (*Formation, string, error) {
	script, err := scriptPath()
	if err != nil {
		return nil, "", err
	}
	dir := os.Getenv("VEND_PGAF_DIR")
	if dir == "" {
		dir = DefaultDir
	}
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), "VEND_PGAF_DIR="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, stderr.String(), fmt.Errorf("pgaf: %s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dsn, ok := strings.CutPrefix(lines[len(lines)-1], "VEND_PGAF_DSN=")
	if !ok {
		return nil, stdout.String() + stderr.String(), fmt.Errorf("pgaf: %s printed no VEND_PGAF_DSN line", script)
	}
	f := &Formation{Dir: dir, dsn: dsn, killed: map[string]bool{}}
	env, err := readEnv(filepath.Join(dir, "pgaf.env"))
	if err != nil {
		return nil, "", err
	}
	f.MonitorPort = env["MONITOR_PORT"]
	f.Nodes = [2]Node{{"node1", env["NODE1_PORT"]}, {"node2", env["NODE2_PORT"]}}
	return f, stderr.String(), nil
}

// DSN is the multi-host URL of the formation's "vend" database, with
// target_session_attrs=read-write: it reaches whichever node is primary.
func (f *Formation) DSN() string { return f.dsn }

// ScratchDSN makes a fresh database on the formation (pgscratch, with
// the multi-host URL) and drops it when the test ends.
func (f *Formation) ScratchDSN(tb testing.TB, prefix string) string {
	tb.Helper()
	dsn, drop, err := pgscratch.Create(f.dsn, prefix)
	if err != nil {
		tb.Fatalf("pgaf: %v", err)
	}
	tb.Cleanup(func() {
		if err := drop(); err != nil {
			tb.Logf("pgaf: drop scratch database: %v", err)
		}
	})
	// pgx tries the hosts in order and stops at a server that says the
	// database does not exist (3D000): wait until the secondary has
	// replayed the CREATE DATABASE.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		err := ping(ctx, dsn)
		if err == nil {
			return dsn
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("pgaf: scratch database does not answer: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// State returns the data nodes as the monitor reports them.
func (f *Formation) State(ctx context.Context) ([]NodeState, error) {
	db, err := sql.Open("pgx", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/pg_auto_failover?sslmode=disable&connect_timeout=2", f.MonitorPort))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT nodename, nodeport, reportedstate::text, goalstate::text FROM pgautofailover.node ORDER BY nodename`)
	if err != nil {
		return nil, fmt.Errorf("pgaf: monitor: %w", err)
	}
	defer rows.Close()
	var out []NodeState
	for rows.Next() {
		var n NodeState
		if err := rows.Scan(&n.Name, &n.Port, &n.Reported, &n.Goal); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Primary returns the node the monitor reports as the writable primary
// (primary, or wait_primary when its secondary is gone).
func (f *Formation) Primary(ctx context.Context) (Node, error) {
	st, err := f.State(ctx)
	if err != nil {
		return Node{}, err
	}
	for _, n := range st {
		if writable(n.Reported) && n.Reported == n.Goal {
			return n.Node, nil
		}
	}
	return Node{}, fmt.Errorf("pgaf: no primary in %v", st)
}

func writable(state string) bool {
	return state == "primary" || state == "wait_primary" || state == "single"
}

// KillPrimary finds the primary and kills, with SIGKILL, its keeper
// (pg_autoctl and the processes it started: its session) and its
// PostgreSQL server processes, so that nothing restarts it. It returns
// the node killed.
func (f *Formation) KillPrimary(ctx context.Context) (Node, error) {
	p, err := f.Primary(ctx)
	if err != nil {
		return Node{}, err
	}
	return p, f.Kill(p)
}

// Kill kills node n as KillPrimary does.
func (f *Formation) Kill(n Node) error {
	pids := map[int]bool{}
	if b, err := os.ReadFile(filepath.Join(f.Dir, n.Name+".pid")); err == nil {
		if k, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && k > 1 {
			pids[k] = true
		}
	}
	var postmaster int
	if b, err := os.ReadFile(filepath.Join(f.Dir, n.Name, "postmaster.pid")); err == nil {
		postmaster, _ = strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	}
	// The sessions to kill: the keeper's from its pid file, and those of
	// every process whose arguments name the node's data directory (a
	// keeper "pg_autoctl run --pgdata DIR", a postmaster "postgres -D
	// DIR"): a keeper started outside scripts/pgaf.sh, or after its pid
	// file was written, is found too. Missing it would let the keeper
	// restart its postgres within seconds, and no failover would follow.
	pgdata := filepath.Join(f.Dir, n.Name)
	own, _, _ := procIDs(os.Getpid()) // never this test's own session
	sids := map[int]bool{}
	for pid := range pids {
		sids[pid] = true
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if namesDir(pid, pgdata) {
			if sid, _, ok := procIDs(pid); ok && sid > 1 && sid != own {
				sids[sid] = true
			}
			pids[pid] = true
		}
	}
	// Every process in those sessions, and the postmaster's children.
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sid, ppid, ok := procIDs(pid)
		if !ok {
			continue
		}
		if sids[sid] || (postmaster > 1 && (pid == postmaster || ppid == postmaster)) {
			pids[pid] = true
		}
	}
	if len(pids) == 0 {
		return fmt.Errorf("pgaf: no process of %s found", n.Name)
	}
	for pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	f.killed[n.Name] = true
	return nil
}

// namesDir reports whether one of pid's arguments is dir.
func namesDir(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, a := range bytes.Split(b, []byte{0}) {
		if string(a) == dir {
			return true
		}
	}
	return false
}

// procIDs returns the session and parent of pid from /proc/pid/stat.
func procIDs(pid int) (sid, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	fs := strings.Fields(string(b[i+1:])) // state ppid pgrp session …
	if len(fs) < 4 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(fs[1])
	sid, _ = strconv.Atoi(fs[3])
	return sid, ppid, true
}

// WaitFailover waits until the monitor reports a primary other than old
// and that node accepts a write, and returns it.
func (f *Formation) WaitFailover(ctx context.Context, old Node, timeout time.Duration) (Node, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		p, err := f.Primary(ctx)
		if err == nil && p.Name != old.Name {
			if err = writes(ctx, f.dsn); err == nil {
				return p, nil
			}
		}
		if err == nil {
			err = fmt.Errorf("pgaf: %s still reported primary", old.Name)
		}
		last = err
		select {
		case <-ctx.Done():
			return Node{}, fmt.Errorf("pgaf: no failover within %v: %v", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writes checks that dsn reaches a server that is not read-only.
func writes(ctx context.Context, dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	var ro string
	if err := db.QueryRowContext(ctx, `SHOW transaction_read_only`).Scan(&ro); err != nil {
		return err
	}
	if ro != "off" {
		return fmt.Errorf("pgaf: read-only")
	}
	return nil
}

func readEnv(path string) (map[string]int, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pgaf: %w", err)
	}
	defer fh.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("pgaf: %s: %s=%q", path, k, v)
		}
		out[k] = n
	}
	for _, k := range []string{"MONITOR_PORT", "NODE1_PORT", "NODE2_PORT"} {
		if out[k] == 0 {
			return nil, fmt.Errorf("pgaf: %s lacks %s", path, k)
		}
	}
	return out, sc.Err()
}

// scriptPath finds scripts/pgaf.sh from this source file's place in the
// module.
func scriptPath() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("pgaf: cannot locate the module")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "pgaf.sh")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("pgaf: %w", err)
	}
	return p, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
