package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/pgaf"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/store"
)

// countLog counts the store's switch-over messages.
type countLog struct{ retries, commitLost, through atomic.Int64 }

func (c *countLog) Enabled(context.Context, slog.Level) bool { return true }
func (c *countLog) Handle(_ context.Context, r slog.Record) error {
	switch {
	case strings.Contains(r.Message, "lost during commit"):
		c.commitLost.Add(1)
	case strings.Contains(r.Message, "failed on a switch-over"):
		c.retries.Add(1)
	case strings.Contains(r.Message, "went through after a switch-over"):
		c.through.Add(1)
	}
	return nil
}
func (c *countLog) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *countLog) WithGroup(string) slog.Handler      { return c }

// TestFailoverMidTraffic kills the primary of a real pg_auto_failover
// formation (SIGKILL to PostgreSQL and its keeper) while workers move
// money through the store with top-ups and sessions started and settled.
// Every operation is retried by its worker with the same key until it is
// acknowledged, as a phone or a device would; afterwards every
// acknowledged operation is in the ledger exactly once, the ledger
// balances, and the store works against the new primary. The time
// operations stalled for is printed, not asserted.
//
// VEND_PGAF_TRAFFIC sets the traffic after the failover (default 2s).
func TestFailoverMidTraffic(t *testing.T) {
	t0 := time.Now()
	f := pgaf.Start(t)
	tStart := time.Since(t0)
	ctx := context.Background()
	old, err := f.Primary(ctx)
	must(t, err)
	dsn := f.ScratchDSN(t, "vend_failover")
	logs := &countLog{}
	e := newEnv(t, backend{name: "pgaf", dsn: func(testing.TB) string { return dsn }},
		&store.Opts{SwitchWait: 60 * time.Second, Logger: slog.New(logs)})

	const workers = 6
	const startFunds = 1_000_000
	type worker struct {
		user, device       string
		topups, captured   int64
		sessions           []vend.SessionID
		dupTopups, dupSets int
	}
	ws := make([]*worker, workers)
	for i := range ws {
		u, err := e.s.CreateUser(ctx, fmt.Sprintf("w%d@example.com", i), "correct horse")
		must(t, err)
		d := e.devA
		d.ID = fmt.Sprintf("dev-w%d", i)
		d.IdentityKey = [16]byte{byte(i + 10)}
		must(t, e.s.CreateDevice(ctx, d))
		_, err = e.s.TopUp(ctx, u.ID, vend.Amount{Minor: startFunds, Currency: "EUR"}, "sandbox_card", "seed")
		must(t, err)
		ws[i] = &worker{user: u.ID, device: d.ID}
	}

	var (
		stop     atomic.Bool
		killedAt atomic.Int64 // unix ns
		mu       sync.Mutex
		lastAck  = make([]time.Time, workers) // per worker
		stalled  time.Duration                // the longest gap between a worker's acknowledgements across the kill
		longest  time.Duration
		clientRe atomic.Int64 // errors returned to a worker, which then retried
		ops      atomic.Int64
	)
	// do runs op for worker wi until it succeeds, as a client retrying
	// with the same key.
	do := func(wi int, op func() error) {
		for {
			began := time.Now()
			err := op()
			end := time.Now()
			if err == nil {
				ops.Add(1)
				mu.Lock()
				if k := killedAt.Load(); k != 0 && !lastAck[wi].IsZero() && lastAck[wi].UnixNano() < k+int64(time.Second) {
					if gap := end.Sub(lastAck[wi]); gap > stalled && end.UnixNano() > k {
						stalled = gap
					}
				}
				lastAck[wi] = end
				if d := end.Sub(began); d > longest {
					longest = d
				}
				mu.Unlock()
				return
			}
			clientRe.Add(1)
			t.Logf("worker sees %v; retrying", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for wi, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				do(wi, func() error {
					r, err := e.s.TopUp(ctx, w.user, vend.Amount{Minor: 100, Currency: "EUR"}, "sandbox_card", fmt.Sprintf("t-%d-%d", wi, i))
					if err == nil {
						w.topups += 100
						if r.Duplicate {
							w.dupTopups++
						}
					}
					return err
				})
				var ss store.Session
				do(wi, func() error {
					var err error
					ss, err = e.s.StartSession(ctx, store.StartInput{User: w.user, Device: w.device, Machine: "w1",
						CapUnits: 1000, IdemKey: fmt.Sprintf("s-%d-%d", wi, i)})
					return err
				})
				w.sessions = append(w.sessions, ss.ID)
				u, sig := e.usage(ss, 600, vend.OutcomeUserStop) // 0.6 l at 0.50/l = 30
				do(wi, func() error {
					st, err := e.s.Settle(ctx, u, sig)
					if err == nil {
						w.captured += st.Captured
						if st.Duplicate {
							w.dupSets++
						}
					}
					return err
				})
			}
		}()
	}

	time.Sleep(1500 * time.Millisecond)
	before := ops.Load()
	kill := time.Now()
	killedAt.Store(kill.UnixNano())
	killed, err := f.KillPrimary(ctx)
	must(t, err)
	if killed != old {
		t.Fatalf("killed %v, the primary was %v", killed, old)
	}
	np, err := f.WaitFailover(ctx, killed, 90*time.Second)
	must(t, err)
	promoted := time.Since(kill)
	traffic := 2 * time.Second
	if v := os.Getenv("VEND_PGAF_TRAFFIC"); v != "" {
		traffic, err = time.ParseDuration(v)
		must(t, err)
	}
	time.Sleep(traffic)
	stop.Store(true)
	wg.Wait()

	// Every acknowledged operation exactly once.
	var sessions int
	for _, w := range ws {
		if got := e.wallet(w.user); got != startFunds+w.topups-w.captured {
			t.Errorf("%s: wallet %d, want %d + %d top-ups - %d captured", w.user, got, startFunds, w.topups, w.captured)
		}
		if h := e.holds(w.user); h != 0 {
			t.Errorf("%s: holds %d after every session settled", w.user, h)
		}
		var n int
		must(t, e.s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE user_id = $1`, w.user).Scan(&n))
		if n != len(w.sessions) {
			t.Errorf("%s: %d sessions in the store, %d acknowledged", w.user, n, len(w.sessions))
		}
		for _, id := range w.sessions {
			ss, err := e.s.GetSession(ctx, id)
			must(t, err)
			if ss.State != store.Settled || ss.Captured != 30 {
				t.Errorf("session %s: %s captured %d, want settled 30", id, ss.State, ss.Captured)
			}
		}
		sessions += len(w.sessions)
	}
	var captured int64
	for _, w := range ws {
		captured += w.captured
	}
	if r := e.revenue(e.opA.ID); r != captured {
		t.Errorf("operator revenue %d, want %d captured", r, captured)
	}
	e.checkLedger()
	// The store keeps working against the new primary.
	_, err = e.s.TopUp(ctx, ws[0].user, vend.Amount{Minor: 1, Currency: "EUR"}, "sandbox_card", "after")
	must(t, err)
	now, err := f.Primary(ctx)
	must(t, err)
	if now.Name == killed.Name {
		t.Fatalf("primary is still %v", now)
	}
	var dupT, dupS int
	for _, w := range ws {
		dupT += w.dupTopups
		dupS += w.dupSets
	}
	t.Logf("pgaf failover: formation ready in %v; %s killed, %s promoted after %v (monitor); "+
		"operations stalled for %v (the longest gap between a worker's acknowledgements across the kill), longest operation %v; "+
		"%d operations (%d before the kill), %d sessions; store re-ran %d transactions on the switch (%d commits of unknown outcome, "+
		"%d went through after waiting), %d errors reached the workers; duplicates found by re-running: %d top-ups, %d settlements",
		tStart.Round(time.Millisecond), killed.Name, np.Name, promoted.Round(time.Millisecond), stalled.Round(time.Millisecond),
		longest.Round(time.Millisecond), ops.Load(), before, sessions, logs.retries.Load(), logs.commitLost.Load(),
		logs.through.Load(), clientRe.Load(), dupT, dupS)
}

// cutProxy is a loopback TCP proxy in front of PostgreSQL that, when
// armed, cuts the connection that sends the next COMMIT: either before
// forwarding it (the transaction rolls back) or after the server
// received it, dropping the server's answer (the transaction commits, the
// client never learns).
type cutProxy struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	armed    string // "", "before" or "after"
	cuts     int
}

func newCutProxy(t *testing.T, upstream string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &cutProxy{ln: ln, upstream: upstream}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *cutProxy) arm(mode string) {
	p.mu.Lock()
	p.armed = mode
	p.mu.Unlock()
}

func (p *cutProxy) cutCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

func (p *cutProxy) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer s.Close()
	var drop atomic.Bool
	go func() { // server → client, unless cut
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 && !drop.Load() {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				c.Close()
				return
			}
		}
	}()
	// client → server, message by message: the startup message has no
	// type byte; every later one is a type byte and a length.
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	n := binary.BigEndian.Uint32(hdr[:])
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c, body); err != nil {
		return
	}
	if _, err := s.Write(append(hdr[:], body...)); err != nil {
		return
	}
	for {
		var h [5]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(h[1:])
		body := make([]byte, n-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		msg := append(h[:], body...)
		if h[0] == 'Q' && strings.EqualFold(string(bytes.TrimRight(body, "\x00")), "commit") {
			p.mu.Lock()
			mode := p.armed
			if mode != "" {
				p.armed = ""
				p.cuts++
			}
			p.mu.Unlock()
			switch mode {
			case "before":
				return // closes both: the server rolls the transaction back
			case "after":
				drop.Store(true)
				_, _ = s.Write(msg)
				time.Sleep(300 * time.Millisecond) // the server commits; its answer is dropped
				return
			}
		}
		if _, err := s.Write(msg); err != nil {
			return
		}
	}
}

// TestCommitLostIsResolved cuts the connection during COMMIT, so that the
// store cannot know whether its transaction committed: it runs the
// transaction again, which finds its own write (it committed) or writes
// it once (it did not), and the money step happens exactly once. Runs
// against $VEND_PG_DSN through a loopback proxy.
func TestCommitLostIsResolved(t *testing.T) {
	if os.Getenv("VEND_PG_DSN") == "" {
		svctest.Missing(t, "PostgreSQL (VEND_PG_DSN)", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
	}
	var pgb backend
	for _, b := range backends(t) {
		if b.name == "postgres" {
			pgb = b
		}
	}
	direct := pgb.dsn(t)
	u, err := url.Parse(direct)
	must(t, err)
	p := newCutProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	logs := &countLog{}
	e := newEnv(t, backend{name: "proxy", dsn: func(testing.TB) string { return u.String() }},
		&store.Opts{Logger: slog.New(logs)})
	ctx := e.ctx
	e.topUp(e.user.ID, 10_000)

	for _, mode := range []string{"after", "before"} {
		t.Run(mode, func(t *testing.T) {
			cuts, lost := p.cutCount(), logs.commitLost.Load()
			w0 := e.wallet(e.user.ID)
			p.arm(mode)
			r, err := e.s.TopUp(ctx, e.user.ID, vend.Amount{Minor: 100, Currency: "EUR"}, "sandbox_card", "cut-"+mode)
			must(t, err)
			if p.cutCount() != cuts+1 || logs.commitLost.Load() != lost+1 {
				t.Fatalf("cuts %d, commits of unknown outcome %d: the proxy did not cut the COMMIT", p.cutCount()-cuts, logs.commitLost.Load()-lost)
			}
			if r.Duplicate != (mode == "after") {
				t.Errorf("top-up duplicate = %v: with the COMMIT cut %s the server received it, the re-run should find its write only then", r.Duplicate, mode)
			}
			if w := e.wallet(e.user.ID); w != w0+100 {
				t.Fatalf("wallet %d after the top-up, want %d: not exactly once", w, w0+100)
			}

			ss, err := e.start(e.user.ID, "w1", "", 1000, "s-cut-"+mode)
			must(t, err)
			us, sig := e.usage(ss, 600, vend.OutcomeUserStop)
			p.arm(mode)
			st, err := e.s.Settle(ctx, us, sig)
			must(t, err)
			if p.cutCount() != cuts+2 {
				t.Fatal("the proxy did not cut the settlement's COMMIT")
			}
			if st.Session.State != store.Settled || st.Session.Captured != 30 {
				t.Fatalf("settle after a cut commit = %+v", st)
			}
			if w := e.wallet(e.user.ID); w != w0+100-30 {
				t.Fatalf("wallet %d after settling, want %d", w, w0+100-30)
			}
			e.checkLedger()
		})
	}
	t.Logf("commits cut before and after the server received them: %d, each resolved by running the transaction again", p.cutCount())
}
