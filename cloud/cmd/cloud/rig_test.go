package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/store"
)

// buildCloud compiles this package's program into a temp dir.
func buildCloud(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cloud")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// pgScratchDSN returns the DSN of a new PostgreSQL database, dropped at
// the end of the test (svctest.PostgresDSN).
func pgScratchDSN(t *testing.T) string { return svctest.PostgresDSN(t, "cloudcmd") }

// cloudProc is `cloud serve` run as a process, restartable on the same
// HTTP address, so it can be killed with real signals.
type cloudProc struct {
	t        *testing.T
	bin      string
	args     []string
	logPath  string
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	HTTPURL  string
	Starts   int
	StartDur []time.Duration
}

func newCloudProc(t *testing.T, bin string, args ...string) *cloudProc {
	p := &cloudProc{t: t, bin: bin, args: args, logPath: filepath.Join(t.TempDir(), "cloud.log")}
	t.Cleanup(func() {
		if p.running() {
			p.signal(syscall.SIGKILL)
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.logPath)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("cloud log (tail):\n%s", b)
		}
	})
	return p
}

func (p *cloudProc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// start runs `cloud serve … -json` and waits for its JSON line.
func (p *cloudProc) start() {
	p.t.Helper()
	t0 := time.Now()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "==== start %d\n", p.Starts+1)
	cmd := exec.Command(p.bin, append([]string{"serve", "-dev", "-json"}, p.args...)...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	logf.Close()
	p.cmd, p.exited = cmd, make(chan struct{})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { p.exitErr = cmd.Wait(); close(p.exited) }()
	select {
	case l := <-lines:
		var m map[string]string
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["http"] == "" {
			p.t.Fatalf("cloud serve printed %q", l)
		}
		p.HTTPURL = m["http"]
	case <-p.exited:
		p.t.Fatalf("cloud serve exited at start: %v", p.exitErr)
	case <-time.After(30 * time.Second):
		p.t.Fatal("cloud serve did not start within 30 s")
	}
	p.Starts++
	p.StartDur = append(p.StartDur, time.Since(t0))
}

func (p *cloudProc) signal(sig syscall.Signal) {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		if sig != syscall.SIGKILL {
			p.t.Errorf("cloud serve did not stop on %v within 15 s", sig)
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *cloudProc) kill() { p.signal(syscall.SIGKILL) }

// stop sends SIGTERM (an orderly shutdown) and waits.
func (p *cloudProc) stop() {
	p.signal(syscall.SIGTERM)
	var ee *exec.ExitError
	if p.exitErr != nil && !errors.As(p.exitErr, &ee) {
		p.t.Errorf("cloud serve: %v", p.exitErr)
	} else if p.exitErr != nil {
		p.t.Errorf("cloud serve exited with %v after SIGTERM", p.exitErr)
	}
}

// retryable reports whether a phone should send the same request again:
// no answer (connection refused or reset, the cloud is down) or a 5xx.
func retryable(err error) bool {
	var ae *phoneapi.APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	return err != nil
}

// ---- store-level checks ----

type sessionRow struct {
	id                         string
	user, device, state        string
	hold, units, captured, rel int64
	priceMinor, pricePer       int64
	holds, captures, releases  int
	reports                    int
	created                    int64
}

// checkLedger opens the store at dsn and checks the money invariants:
// ledger balanced per currency, stored balances equal to their entries,
// no wallet or hold account ever below zero when its entries are replayed
// in commit order. It returns every session with its ledger transactions.
func checkLedger(t *testing.T, dsn string) (map[string]*sessionRow, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	imb, err := st.LedgerImbalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for cur, v := range imb {
		if v != 0 {
			t.Errorf("ledger imbalance %s = %d, want 0", cur, v)
		}
	}
	bad, err := st.CheckBalances(ctx)
	if err != nil || len(bad) != 0 {
		t.Errorf("CheckBalances = %+v, %v; want none", bad, err)
	}
	db := st.DB()
	// Entries of one account are written after its row is locked, so their
	// ids are in commit order: the running sum is the balance over time.
	rows, err := db.QueryContext(ctx, `SELECT a.id, a.kind, e.amount FROM entries e JOIN accounts a ON a.id = e.account_id
		WHERE a.kind IN ('user_wallet', 'user_holds', 'operator_revenue') ORDER BY a.id, e.id`)
	if err != nil {
		t.Fatal(err)
	}
	run := map[int64]int64{}
	for rows.Next() {
		var id, amt int64
		var kind string
		if err := rows.Scan(&id, &kind, &amt); err != nil {
			t.Fatal(err)
		}
		run[id] += amt
		if run[id] < 0 {
			t.Errorf("account %d (%s) went negative: %d", id, kind, run[id])
		}
	}
	rows.Close()

	out := map[string]*sessionRow{}
	rows, err = db.QueryContext(ctx, `SELECT id, user_id, device_id, state, hold_minor, units, captured, released, price_minor, price_per, created_ms FROM sessions`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		r := &sessionRow{}
		if err := rows.Scan(&r.id, &r.user, &r.device, &r.state, &r.hold, &r.units, &r.captured, &r.rel, &r.priceMinor, &r.pricePer, &r.created); err != nil {
			t.Fatal(err)
		}
		out[r.id] = r
	}
	rows.Close()
	rows, err = db.QueryContext(ctx, `SELECT session_id, kind, COUNT(*) FROM ledger_tx WHERE session_id IS NOT NULL GROUP BY session_id, kind`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, kind string
		var n int
		if err := rows.Scan(&id, &kind, &n); err != nil {
			t.Fatal(err)
		}
		r := out[id]
		if r == nil {
			t.Errorf("ledger transaction %s for unknown session %s", kind, id)
			continue
		}
		switch kind {
		case "hold":
			r.holds += n
		case "capture":
			r.captures += n
		case "release":
			r.releases += n
		default:
			t.Errorf("session %s: ledger transaction kind %s", id, kind)
		}
	}
	rows.Close()
	rows, err = db.QueryContext(ctx, `SELECT session_id FROM usage_reports`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		if r := out[id]; r != nil {
			r.reports++
		}
	}
	rows.Close()
	return out, st
}

// wantSettledOnce checks one session row against what the device
// reported: settled (or refunded for 0 units) once, captured ==
// min(cost(units), hold), the rest released, one hold, at most one
// capture and one release, one usage report.
func wantSettledOnce(r *sessionRow, units uint64) error {
	var errs []string
	cost, err := vend.Price{Minor: r.priceMinor, Per: uint32(r.pricePer)}.Cost(units)
	if err != nil {
		return err
	}
	want := min(cost, r.hold)
	wantState := "settled"
	if want == 0 {
		wantState = "refunded"
	}
	if r.state != wantState {
		errs = append(errs, fmt.Sprintf("state %s, want %s", r.state, wantState))
	}
	if uint64(r.units) != units || r.captured != want || r.rel != r.hold-want {
		errs = append(errs, fmt.Sprintf("units %d captured %d released %d, want %d/%d/%d (hold %d)", r.units, r.captured, r.rel, units, want, r.hold-want, r.hold))
	}
	wantCap, wantRel := 0, 0
	if want > 0 {
		wantCap = 1
	}
	if r.hold-want > 0 {
		wantRel = 1
	}
	if r.holds != 1 || r.captures != wantCap || r.releases != wantRel || r.reports != 1 {
		errs = append(errs, fmt.Sprintf("ledger: %d holds, %d captures, %d releases, %d usage reports; want 1/%d/%d/1", r.holds, r.captures, r.releases, r.reports, wantCap, wantRel))
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
