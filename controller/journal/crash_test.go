package journal_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

const crashEnv = "BV_JOURNAL_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		os.Exit(crashChild(path))
	}
	os.Exit(m.Run())
}

// crashChild is the subprocess of TestCrashSafety: it finishes the live
// sessions it finds, then runs sessions in a loop until killed. It prints a
// line after each call that returned nil, so every printed line names
// something the journal promised to keep:
//
//	A id              accepted
//	M id units        reading committed (Meter then Flush)
//	E msgid           queued
//	R id seq msgid    reported, usage queued
//	T msgid…          about to ack (may or may not have committed)
//	K msgid           acked
func crashChild(path string) int {
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	die := func(what string, err error) int { say("X %s: %v", what, err); return 3 }
	j, err := journal.Open(path, &journal.Opts{MeterInterval: -1, Timeout: 5 * time.Second})
	if err != nil {
		return die("open", err)
	}
	say("O")
	live, err := j.Live()
	if err != nil {
		return die("live", err)
	}
	finish := func(id vend.SessionID) error {
		s, err := j.EndSession(id, signer)
		if err != nil {
			return err
		}
		say("R %s %d %s", id, s.UsageSeq, s.UsageMsgID)
		return nil
	}
	for _, s := range live {
		switch s.State {
		case journal.Authorized:
			err = j.Transition(s.ID, journal.Expired, nil)
		case journal.Running:
			err = j.Transition(s.ID, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeInterrupted })
		}
		if err != nil {
			return die("recover", err)
		}
		if err := finish(s.ID); err != nil {
			return die("recover end", err)
		}
	}
	var toAck []string
	for i := 0; ; i++ {
		now := time.Now()
		g, b := mustGrant(tbChild{}, "m1", now)
		if err := j.Accept(g, b); err != nil {
			return die("accept", err)
		}
		say("A %s", g.Session)
		if err := j.Transition(g.Session, journal.Running, func(s *journal.Session) { s.MeterStart = 1000 }); err != nil {
			return die("start", err)
		}
		for k := uint64(1); k <= 4; k++ {
			if err := j.Meter(g.Session, k*10, 1000+k*10); err != nil {
				return die("meter", err)
			}
			if err := j.Flush(g.Session); err != nil {
				return die("flush", err)
			}
			say("M %s %d", g.Session, k*10)
		}
		id := fmt.Sprintf("e%d-%d", os.Getpid(), i)
		if _, err := j.Enqueue(mqttapi.LeafEvt, id, []byte(`{"x":1}`)); err != nil {
			return die("enqueue", err)
		}
		say("E %s", id)
		toAck = append(toAck, id)
		if err := j.Transition(g.Session, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeUserStop }); err != nil {
			return die("end", err)
		}
		if err := finish(g.Session); err != nil {
			return die("report", err)
		}
		if i%3 == 2 {
			// Announce the ack first: a kill between Ack's commit and
			// the K lines must not read as a lost message.
			say("T %s", strings.Join(toAck, " "))
			if _, err := j.Ack(toAck...); err != nil {
				return die("ack", err)
			}
			for _, id := range toAck {
				say("K %s", id)
			}
			toAck = nil
		}
	}
}

// tbChild lets the child reuse the test helpers outside a test.
type tbChild struct{ testing.TB }

func (tbChild) Helper()                   {}
func (tbChild) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

// TestCrashSafety kills a subprocess that writes to the journal with
// SIGKILL at random points, then reopens the file and checks that
// everything a nil error promised is there: accepted sessions (and their
// seen entries), flushed readings, reports with never-reused sequence
// numbers, outbox order, acks.
func TestCrashSafety(t *testing.T) {
	runs := 30
	if testing.Short() {
		runs = 6
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	accepted := map[vend.SessionID]bool{}
	metered := map[vend.SessionID]uint64{}
	reported := map[vend.SessionID]string{} // id → "seq msgid"
	var queued []string                     // message ids in queue order
	acked := map[string]bool{}
	acking := map[string]bool{} // an ack was attempted: the message may be gone
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	deadline := time.Now().Add(40 * time.Second)
	kills := 0
	for run := 0; run < runs && time.Now().Before(deadline); run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.IntN(60)) * time.Millisecond
		sc := bufio.NewScanner(stdout)
		var timer *time.Timer
		guard := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		lines := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			lines++
			switch f[0] {
			case "O":
				timer = time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
			case "X":
				cmd.Process.Kill()
				t.Fatalf("run %d: child failed: %s", run, sc.Text())
			case "A":
				accepted[mustParseID(t, f[1])] = true
			case "M":
				n, _ := strconv.ParseUint(f[2], 10, 64)
				metered[mustParseID(t, f[1])] = n
			case "E":
				queued = append(queued, f[1])
			case "R":
				reported[mustParseID(t, f[1])] = f[2] + " " + f[3]
				queued = append(queued, f[3])
			case "T":
				for _, id := range f[1:] {
					acking[id] = true
				}
			case "K":
				acked[f[1]] = true
			}
		}
		err = cmd.Wait()
		guard.Stop()
		if timer != nil {
			timer.Stop()
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("run %d: child ended without being killed: %v", run, err)
		}
		kills++
		checkCrashInvariants(t, run, path, accepted, metered, reported, queued, acked, acking)
	}
	if kills < min(runs, 5) {
		t.Fatalf("only %d kills", kills)
	}
	t.Logf("%d kills; %d sessions accepted, %d reported, %d messages queued, %d acked",
		kills, len(accepted), len(reported), len(queued), len(acked))
}

func mustParseID(t *testing.T, s string) vend.SessionID {
	t.Helper()
	id, err := vend.ParseSessionID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func checkCrashInvariants(t *testing.T, run int, path string, accepted map[vend.SessionID]bool,
	metered map[vend.SessionID]uint64, reported map[vend.SessionID]string, queued []string, acked, acking map[string]bool) {
	t.Helper()
	j, err := journal.Open(path, nil)
	if err != nil {
		t.Fatalf("run %d: reopen after SIGKILL = %v", run, err)
	}
	defer j.Close()
	seqs := map[uint64]vend.SessionID{}
	var maxSeq uint64
	for id := range accepted {
		if seen, err := j.Seen(id); err != nil || !seen {
			t.Fatalf("run %d: accepted session %s not seen: %v", run, id, err)
		}
		s, err := j.Get(id)
		if err != nil {
			t.Fatalf("run %d: accepted session %s lost: %v", run, id, err)
		}
		if s.Units < metered[id] {
			t.Fatalf("run %d: session %s units %d, flushed %d", run, id, s.Units, metered[id])
		}
		if want, ok := reported[id]; ok {
			if got := fmt.Sprintf("%d %s", s.UsageSeq, s.UsageMsgID); got != want || s.Live() {
				t.Fatalf("run %d: session %s report %q state %s, want %q", run, id, got, s.State, want)
			}
		}
		if s.UsageSeq != 0 {
			if other, dup := seqs[s.UsageSeq]; dup {
				t.Fatalf("run %d: usage seq %d used by %s and %s", run, s.UsageSeq, other, id)
			}
			seqs[s.UsageSeq] = id
			maxSeq = max(maxSeq, s.UsageSeq)
		}
	}
	if cur, err := j.UsageSeq(); err != nil || cur < maxSeq {
		t.Fatalf("run %d: usage seq counter %d below used %d (%v)", run, cur, maxSeq, err)
	}
	live, err := j.Live()
	if err != nil {
		t.Fatal(err)
	}
	if len(live) > 1 {
		t.Fatalf("run %d: %d live sessions on one machine", run, len(live))
	}
	items, err := j.Pending(0)
	if err != nil {
		t.Fatalf("run %d: Pending = %v", run, err)
	}
	pos := map[string]int{}
	var last uint64
	for i, it := range items {
		if it.Seq <= last {
			t.Fatalf("run %d: outbox seq %d after %d", run, it.Seq, last)
		}
		last = it.Seq
		pos[it.MsgID] = i
		if acked[it.MsgID] {
			t.Fatalf("run %d: acked message %s still queued", run, it.MsgID)
		}
	}
	prev := -1
	for _, id := range queued {
		if acked[id] {
			continue
		}
		p, ok := pos[id]
		if !ok && acking[id] {
			continue
		}
		if !ok {
			t.Fatalf("run %d: queued message %s lost", run, id)
		}
		if p <= prev {
			t.Fatalf("run %d: message %s out of order", run, id)
		}
		prev = p
	}
}
