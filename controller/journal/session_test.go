package journal_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

func TestReplayRefusedAcrossReopenAndPrune(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := journal.Open(path, &journal.Opts{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	g, b := mustGrant(t, "m1", clk.Now())
	if seen, err := j.Seen(g.Session); err != nil || seen {
		t.Fatalf("Seen before Accept = %v, %v; want false, nil", seen, err)
	}
	if err := j.Accept(g, b); err != nil {
		t.Fatalf("Accept = %v", err)
	}
	// Finish it, settle it and prune its record.
	if err := j.Transition(g.Session, journal.Expired, nil); err != nil {
		t.Fatal(err)
	}
	s, err := j.EndSession(g.Session, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Ack(s.UsageMsgID); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	j = mustOpen(t, path, &journal.Opts{Now: clk.Now})
	if n, err := j.Prune(clk.Now()); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1, nil", n, err)
	}
	if _, err := j.Get(g.Session); !errors.Is(err, journal.ErrNotFound) {
		t.Fatalf("Get(pruned) = %v, want ErrNotFound", err)
	}
	seen, err := j.Seen(g.Session)
	if err != nil || !seen {
		t.Fatalf("Seen after reopen and prune = %v, %v; want true, nil", seen, err)
	}
	wantCode(t, "Accept(replay)", j.Accept(g, b), signed.ErrReplayed.Code, vend.Conflict)
	// The grant check used by the controller refuses it too.
	_, err = signed.VerifyGrant(b, signed.GrantCheck{
		Keys: mustKeys(t, cloudKey), Device: testDevice, Machine: "m1",
		Now: g.IssuedAt, Seen: j.Seen,
	})
	wantCode(t, "VerifyGrant(replay)", err, "grant.replayed", vend.Conflict)
}

func TestOneLiveSessionPerMachine(t *testing.T) {
	clk := newClock()
	j := mustOpen(t, "", &journal.Opts{Now: clk.Now})
	id := mustStart(t, j, "m1", clk.Now(), 0)
	g2, b2 := mustGrant(t, "m1", clk.Now())
	before := j.Stats().Commits
	wantCode(t, "Accept(busy)", j.Accept(g2, b2), mqttapi.CodeMachineBusy, vend.Conflict)
	if got := j.Stats().Commits; got != before {
		t.Fatalf("refused Accept committed: %d commits, want %d", got, before)
	}
	if seen, _ := j.Seen(g2.Session); seen {
		t.Fatalf("refused Accept marked the session seen")
	}
	// Another machine is free.
	g3, b3 := mustGrant(t, "m2", clk.Now())
	if err := j.Accept(g3, b3); err != nil {
		t.Fatalf("Accept(m2) = %v", err)
	}
	if s, err := j.ByMachine("m1"); err != nil || s.ID != id {
		t.Fatalf("ByMachine(m1) = %v, %v; want %s", s.ID, err, id)
	}
	// Each ended state still holds the machine until reported.
	if err := j.Transition(id, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeUserStop }); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "Accept(ending)", j.Accept(g2, b2), mqttapi.CodeMachineBusy, vend.Conflict)
	if _, err := j.EndSession(id, signer); err != nil {
		t.Fatal(err)
	}
	if err := j.Accept(g2, b2); err != nil {
		t.Fatalf("Accept after report = %v", err)
	}
	if _, err := j.ByMachine("m3"); !errors.Is(err, journal.ErrNotFound) {
		t.Fatalf("ByMachine(m3) = %v, want ErrNotFound", err)
	}
}

func TestAcceptRefusesMismatchedBytes(t *testing.T) {
	j := mustOpen(t, "", nil)
	g, b := mustGrant(t, "m1", time.Now())
	g2, _ := mustGrant(t, "m1", time.Now())
	for name, tc := range map[string]struct {
		g signed.Grant
		b []byte
	}{
		"other grant": {g2, b},
		"truncated":   {g, b[:len(b)-1]},
		"invalid":     {signed.Grant{}, b},
	} {
		wantCode(t, "Accept("+name+")", j.Accept(tc.g, tc.b), journal.ErrInvalid.Code, vend.Invalid)
	}
	if st := j.Stats(); st.Commits != 0 {
		t.Fatalf("commits = %d, want 0", st.Commits)
	}
}

func TestTransitionTable(t *testing.T) {
	all := []journal.State{journal.Authorized, journal.Running, journal.Ending, journal.Reported,
		journal.Settled, journal.Expired, journal.Failed, journal.Refunded, journal.Credited}
	// path to reach each state from a fresh session
	paths := map[journal.State][]journal.State{
		journal.Authorized: nil,
		journal.Credited:   {journal.Credited},
		journal.Running:    {journal.Running},
		journal.Ending:     {journal.Running, journal.Ending},
		journal.Expired:    {journal.Expired},
		journal.Failed:     {journal.Failed},
		journal.Refunded:   {journal.Running, journal.Refunded},
		journal.Reported:   {journal.Expired, journal.Reported},
		journal.Settled:    {journal.Expired, journal.Reported, journal.Settled},
	}
	clk := newClock()
	j := mustOpen(t, "", &journal.Opts{Now: clk.Now})
	n := 0
	for _, from := range all {
		for _, to := range all {
			if journal.Allowed(from, to) {
				continue
			}
			n++
			t.Run(fmt.Sprintf("%s-%s", from, to), func(t *testing.T) {
				g, b := mustGrant(t, fmt.Sprintf("m%d", n), clk.Now())
				if err := j.Accept(g, b); err != nil {
					t.Fatal(err)
				}
				for _, st := range paths[from] {
					var err error
					switch st {
					case journal.Reported:
						_, err = j.EndSession(g.Session, signer)
					case journal.Ending:
						err = j.Transition(g.Session, st, func(s *journal.Session) { s.Outcome = vend.OutcomeCompleted })
					default:
						err = j.Transition(g.Session, st, nil)
					}
					if err != nil {
						t.Fatalf("reach %s: %s: %v", from, st, err)
					}
				}
				before, _ := j.Get(g.Session)
				commits := j.Stats().Commits
				err := j.Transition(g.Session, to, func(s *journal.Session) { s.Outcome = vend.OutcomeCompleted })
				wantCode(t, fmt.Sprintf("Transition(%s→%s)", from, to), err, journal.ErrTransition.Code, vend.Conflict)
				after, _ := j.Get(g.Session)
				if j.Stats().Commits != commits || after.State != before.State || len(after.Steps) != len(before.Steps) {
					t.Fatalf("refused transition wrote: state %s→%s, %d commits", before.State, after.State, j.Stats().Commits-commits)
				}
			})
		}
	}
	if n < 50 {
		t.Fatalf("only %d illegal pairs checked", n)
	}
}

// A credited session (coin pulses may be in the machine) goes to running
// when the machine runs, or ends; it holds its machine until reported,
// and is live for recovery.
func TestCreditedSession(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(path, &journal.Opts{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	g, b := mustGrant(t, "w1", clk.Now())
	if err := j.Accept(g, b); err != nil {
		t.Fatal(err)
	}
	if err := j.Transition(g.Session, journal.Credited, nil); err != nil {
		t.Fatalf("authorized → credited: %v", err)
	}
	g2, b2 := mustGrant(t, "w1", clk.Now())
	wantCode(t, "Accept on a credited machine", j.Accept(g2, b2), journal.ErrBusy.Code, vend.Conflict)
	j.Close()
	j = mustOpen(t, path, &journal.Opts{Now: clk.Now})
	live, err := j.Live()
	if err != nil || len(live) != 1 || live[0].State != journal.Credited {
		t.Fatalf("Live after reopen = %+v, %v; want the credited session", live, err)
	}
	if err := j.Transition(g.Session, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeInterrupted; s.Units = 1 }); err != nil {
		t.Fatalf("credited → ending: %v", err)
	}
	s, err := j.EndSession(g.Session, signer)
	if err != nil || s.State != journal.Reported {
		t.Fatalf("EndSession = %+v, %v", s, err)
	}
}

// The coin pulse count of a credited session is committed before each
// pulse, survives a reopen, never goes down, and is refused outside the
// credited state.
func TestCoinPulse(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "journal.db")
	j := mustOpen(t, path, &journal.Opts{Now: clk.Now})
	g, b := mustGrant(t, "w1", clk.Now())
	if err := j.Accept(g, b); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "CoinPulse on an authorized session", j.CoinPulse(g.Session, 1), journal.ErrState.Code, vend.Conflict)
	if err := j.Transition(g.Session, journal.Credited, func(s *journal.Session) { s.CoinPulses = 1 }); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "CoinPulse 0", j.CoinPulse(g.Session, 0), journal.ErrInvalid.Code, vend.Invalid)
	before := j.Stats()
	if err := j.CoinPulse(g.Session, 1); err != nil {
		t.Fatal(err)
	}
	if after := j.Stats(); after != before {
		t.Errorf("CoinPulse of the recorded count wrote: %+v → %+v", before, after)
	}
	if err := j.CoinPulse(g.Session, 2); err != nil {
		t.Fatal(err)
	}
	if err := j.CoinPulse(g.Session, 1); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j = mustOpen(t, path, &journal.Opts{Now: clk.Now})
	live, err := j.Live()
	if err != nil || len(live) != 1 || live[0].CoinPulses != 2 {
		t.Fatalf("Live after reopen = %+v, %v; want the credited session with 2 coin pulses", live, err)
	}
	err = j.Transition(g.Session, journal.Running, func(s *journal.Session) { s.CoinPulses = 1 })
	wantCode(t, "Transition lowering the coin pulses", err, journal.ErrInvalid.Code, vend.Invalid)
	if err := j.Transition(g.Session, journal.Running, nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "CoinPulse on a running session", j.CoinPulse(g.Session, 3), journal.ErrState.Code, vend.Conflict)
}

// A cancellation is remembered as a seen entry that a later Accept of
// the grant is refused by, and that SeenState tells from a replay; an
// accepted session is not cancelled.
func TestCancel(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(path, &journal.Opts{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	g, b := mustGrant(t, "m1", clk.Now())
	if acc, err := j.Cancel(g.Session, clk.Now().Add(time.Hour)); acc || err != nil {
		t.Fatalf("Cancel = %v, %v", acc, err)
	}
	j.Close()
	j = mustOpen(t, path, &journal.Opts{Now: clk.Now})
	if seen, c, err := j.SeenState(g.Session); !seen || !c || err != nil {
		t.Fatalf("SeenState = %v %v %v, want seen and cancelled", seen, c, err)
	}
	wantCode(t, "Accept of a cancelled session", j.Accept(g, b), "grant.replayed", vend.Conflict)
	g2, b2 := mustGrant(t, "m1", clk.Now())
	if err := j.Accept(g2, b2); err != nil {
		t.Fatal(err)
	}
	if acc, err := j.Cancel(g2.Session, clk.Now().Add(time.Hour)); !acc || err != nil {
		t.Fatalf("Cancel of an accepted session = %v, %v; want accepted", acc, err)
	}
	if _, c, _ := j.SeenState(g2.Session); c {
		t.Fatal("an accepted session was marked cancelled")
	}
	// Cancellations are pruned after their bound, not before.
	if n, err := j.PruneSeen(clk.Now().Add(30 * time.Minute)); n != 0 || err != nil {
		t.Fatalf("PruneSeen before the bound = %d, %v", n, err)
	}
	if n, err := j.PruneSeen(clk.Now().Add(2 * time.Hour)); n != 1 || err != nil {
		t.Fatalf("PruneSeen after the bound = %d, %v; want the cancellation", n, err)
	}
}

func TestTransitionUpdateGuards(t *testing.T) {
	clk := newClock()
	j := mustOpen(t, "", &journal.Opts{Now: clk.Now})
	id := mustStart(t, j, "m1", clk.Now(), 100)
	if err := j.Meter(id, 10, 110); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(id); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		to   journal.State
		f    func(*journal.Session)
		code string
	}{
		"machine":        {journal.Ending, func(s *journal.Session) { s.Machine = "m2"; s.Outcome = 1 }, journal.ErrInvalid.Code},
		"state":          {journal.Ending, func(s *journal.Session) { s.State = journal.Settled; s.Outcome = 1 }, journal.ErrInvalid.Code},
		"units down":     {journal.Ending, func(s *journal.Session) { s.Units = 5; s.Outcome = 1 }, journal.ErrMeter.Code},
		"no outcome":     {journal.Ending, nil, journal.ErrInvalid.Code},
		"bad outcome":    {journal.Ending, func(s *journal.Session) { s.Outcome = 99 }, journal.ErrInvalid.Code},
		"usage":          {journal.Failed, func(s *journal.Session) { s.Usage = []byte("x") }, journal.ErrInvalid.Code},
		"to reported":    {journal.Reported, nil, journal.ErrTransition.Code},
		"bad emit":       {journal.Failed, nil, journal.ErrInvalid.Code},
		"duplicate emit": {journal.Failed, nil, journal.ErrDuplicate.Code},
	} {
		var emit []journal.Outgoing
		switch name {
		case "bad emit":
			emit = []journal.Outgoing{{Leaf: mqttapi.LeafState, MsgID: "a", Payload: []byte("{}")}}
		case "duplicate emit":
			o := mustEvent(t, mqttapi.EventStarted, id, clk.Now())
			if _, err := j.Enqueue(o.Leaf, o.MsgID, o.Payload); err != nil {
				t.Fatal(err)
			}
			emit = []journal.Outgoing{o}
		}
		before, _ := j.Get(id)
		commits := j.Stats().Commits
		err := j.Transition(id, tc.to, tc.f, emit...)
		if vend.CodeOf(err) != tc.code {
			t.Errorf("%s: Transition = %v, want code %s", name, err, tc.code)
		}
		after, _ := j.Get(id)
		if j.Stats().Commits != commits || after.State != journal.Running || !bytes.Equal(after.Grant, before.Grant) || after.Units != 10 {
			t.Errorf("%s: refused transition wrote something: %+v", name, after)
		}
	}
}

func TestRecoveryAfterReopen(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := journal.Open(path, &journal.Opts{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	run := mustStart(t, j, "m1", clk.Now(), 5000)
	clk.Advance(time.Millisecond)
	auth, authB := mustGrant(t, "m2", clk.Now())
	if err := j.Accept(auth, authB); err != nil {
		t.Fatal(err)
	}
	done := mustStart(t, j, "m3", clk.Now(), 0)
	if err := j.Transition(done, journal.Failed, func(s *journal.Session) { s.FaultCode = 7 }); err != nil {
		t.Fatal(err)
	}
	if _, err := j.EndSession(done, signer); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 30; i++ {
		clk.Advance(100 * time.Millisecond)
		if err := j.Meter(run, i*10, 5000+i*10); err != nil {
			t.Fatal(err)
		}
	}
	// The last readings are pending (< 1 s since the last commit); Close
	// commits them.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, path, &journal.Opts{Now: clk.Now})
	live, err := j.Live()
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 2 || live[0].ID != run || live[1].ID != auth.Session {
		t.Fatalf("Live() = %d sessions, want running %s then authorized %s", len(live), run, auth.Session)
	}
	if s := live[0]; s.State != journal.Running || s.Units != 300 || s.MeterStart != 5000 || s.MeterLast != 5300 || s.StartedAt.IsZero() {
		t.Fatalf("recovered running session = state %s units %d meter %d..%d, want running 300 5000..5300", s.State, s.Units, s.MeterStart, s.MeterLast)
	}
	if live[1].State != journal.Authorized {
		t.Fatalf("recovered authorized session state %s", live[1].State)
	}
	// The controller finishes it from the journal.
	if err := j.Transition(run, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeInterrupted }); err != nil {
		t.Fatal(err)
	}
	s, err := j.EndSession(run, signer)
	if err != nil {
		t.Fatal(err)
	}
	u, err := signed.OpenUsage(s.Usage, mustKeys(t, deviceKey))
	if err != nil {
		t.Fatalf("OpenUsage = %v", err)
	}
	if u.Units != 300 || u.Amount != 15 || u.Seq != 2 || u.Outcome != vend.OutcomeInterrupted || u.MeterEnd != 5300 {
		t.Fatalf("usage = units %d amount %d seq %d outcome %s meter end %d; want 300 15 2 interrupted 5300", u.Units, u.Amount, u.Seq, u.Outcome, u.MeterEnd)
	}
}

func TestEndSessionSignsEnqueuesAndAckSettles(t *testing.T) {
	clk := newClock()
	j := mustOpen(t, "", &journal.Opts{Now: clk.Now})
	id := mustStart(t, j, "m1", clk.Now(), 0)
	clk.Advance(2 * time.Second)
	if err := j.Meter(id, 6000, 6000); err != nil { // overshoot past the 5000 ml cap
		t.Fatal(err)
	}
	if err := j.Transition(id, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeCapReached }); err != nil {
		t.Fatal(err)
	}
	ended := mustEvent(t, mqttapi.EventEnded, id, clk.Now())
	commits := j.Stats().Commits
	s, err := j.EndSession(id, signer, ended)
	if err != nil {
		t.Fatal(err)
	}
	if got := j.Stats().Commits - commits; got != 1 {
		t.Fatalf("EndSession made %d commits, want 1", got)
	}
	if s.State != journal.Reported || s.UsageSeq != 1 || s.Units != 6000 {
		t.Fatalf("EndSession = state %s seq %d units %d", s.State, s.UsageSeq, s.Units)
	}
	items, err := j.Pending(0)
	if err != nil || len(items) != 2 {
		t.Fatalf("Pending = %d items, %v; want 2", len(items), err)
	}
	if items[0].Leaf != mqttapi.LeafUsage || items[0].MsgID != s.UsageMsgID || items[1].MsgID != ended.MsgID {
		t.Fatalf("Pending = %s %s, %s %s; want usage then ended", items[0].Leaf, items[0].MsgID, items[1].Leaf, items[1].MsgID)
	}
	m, err := mqttapi.DecodeAs[mqttapi.Usage](items[0].Payload)
	if err != nil {
		t.Fatalf("decode usage message: %v", err)
	}
	u, err := signed.OpenUsage(m.Report, mustKeys(t, deviceKey))
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.DecodeGrant()
	if err != nil {
		t.Fatal(err)
	}
	if u.Units != 5000 || u.Amount != 250 || m.Seq != 1 || m.Session != id || signed.CheckAgainstGrant(u, g) != nil {
		t.Fatalf("usage units %d amount %d seq %d: billed must be capped at the grant", u.Units, u.Amount, m.Seq)
	}
	// A second report of the same session is refused; seq is not consumed.
	if _, err := j.EndSession(id, signer); !errors.Is(err, journal.ErrState) {
		t.Fatalf("EndSession again = %v, want ErrState", err)
	}
	// A failing signer writes nothing and does not consume a seq.
	id2 := mustStart(t, j, "m1", clk.Now(), 0)
	if err := j.Transition(id2, journal.Refunded, nil); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("hsm unplugged")
	if _, err := j.EndSession(id2, func(signed.Usage) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("EndSession(bad signer) = %v", err)
	}
	if seq, _ := j.UsageSeq(); seq != 1 {
		t.Fatalf("UsageSeq after failed sign = %d, want 1", seq)
	}
	s2, err := j.EndSession(id2, signer)
	if err != nil || s2.UsageSeq != 2 || s2.Outcome != vend.OutcomeVendFailed {
		t.Fatalf("EndSession(refunded) = seq %d outcome %s, %v", s2.UsageSeq, s2.Outcome, err)
	}
	// Ack settles the session in the same commit.
	commits = j.Stats().Commits
	if n, err := j.Ack(s.UsageMsgID, "unknown-id"); err != nil || n != 1 {
		t.Fatalf("Ack = %d, %v; want 1", n, err)
	}
	if got, _ := j.Get(id); got.State != journal.Settled {
		t.Fatalf("after Ack state = %s, want settled", got.State)
	}
	if n, err := j.Ack(s.UsageMsgID); err != nil || n != 0 {
		t.Fatalf("Ack again = %d, %v; want 0, nil", n, err)
	}
	if got := j.Stats().Commits - commits; got != 1 {
		t.Fatalf("acks made %d commits, want 1 (a no-op ack writes nothing)", got)
	}
	if seq, err := j.NextUsageSeq(); err != nil || seq != 3 {
		t.Fatalf("NextUsageSeq = %d, %v; want 3", seq, err)
	}
}

func TestMeterErrors(t *testing.T) {
	clk := newClock()
	j := mustOpen(t, "", &journal.Opts{Now: clk.Now})
	g, b := mustGrant(t, "m1", clk.Now())
	if err := j.Accept(g, b); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "Meter(authorized)", j.Meter(g.Session, 1, 1), journal.ErrState.Code, vend.Conflict)
	wantCode(t, "Meter(unknown)", j.Meter(vend.NewSessionID(), 1, 1), journal.ErrNotFound.Code, vend.NotFound)
	if err := j.Transition(g.Session, journal.Running, nil); err != nil {
		t.Fatal(err)
	}
	if err := j.Meter(g.Session, 10, 10); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "Meter(backwards)", j.Meter(g.Session, 9, 9), journal.ErrMeter.Code, vend.Invalid)
}

func TestConfigGen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := journal.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.SetConfigGen(7); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j = mustOpen(t, path, nil)
	if g, err := j.ConfigGen(); err != nil || g != 7 {
		t.Fatalf("ConfigGen = %d, %v; want 7", g, err)
	}
	if err := j.SetConfigGen(7); err != nil || j.Stats().Commits != 0 {
		t.Fatalf("SetConfigGen(same) = %v with %d commits, want nil and none", err, j.Stats().Commits)
	}
}

func TestOpenTimeoutWhenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	mustOpen(t, path, nil)
	start := time.Now()
	_, err := journal.Open(path, &journal.Opts{Timeout: 100 * time.Millisecond})
	wantCode(t, "Open(locked)", err, journal.ErrLocked.Code, vend.Transient)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Open(locked) took %s", d)
	}
}

// TestSessionsListsEveryRecord: Sessions returns settled records too (what
// a harness reads to check every acknowledged report was settled), oldest
// accepted first, while Unsettled returns only the reported one.
func TestSessionsListsEveryRecord(t *testing.T) {
	clk := newClock()
	j := mustOpen(t, "", &journal.Opts{Now: clk.Now, MeterInterval: -1})
	var ids []vend.SessionID
	for _, machine := range []string{"m1", "m2", "m3"} {
		g, b := mustGrant(t, machine, clk.Now())
		if err := j.Accept(g, b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, g.Session)
		clk.Advance(time.Second)
	}
	// m1: reported and acknowledged (settled); m2: reported; m3: live.
	for _, id := range ids[:2] {
		if err := j.Transition(id, journal.Expired, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := j.EndSession(id, signer); err != nil {
			t.Fatal(err)
		}
	}
	s1, err := j.Get(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Ack(s1.UsageMsgID); err != nil {
		t.Fatal(err)
	}
	all, err := j.Sessions()
	if err != nil {
		t.Fatal(err)
	}
	want := []journal.State{journal.Settled, journal.Reported, journal.Authorized}
	if len(all) != 3 {
		t.Fatalf("Sessions() = %d records, want 3", len(all))
	}
	for i, s := range all {
		if s.ID != ids[i] || s.State != want[i] {
			t.Errorf("Sessions()[%d] = %s %s, want %s %s", i, s.ID, s.State, ids[i], want[i])
		}
	}
	un, err := j.Unsettled()
	if err != nil {
		t.Fatal(err)
	}
	if len(un) != 1 || un[0].ID != ids[1] {
		t.Errorf("Unsettled() = %v, want only %s", un, ids[1])
	}
}
