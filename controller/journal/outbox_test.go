package journal_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

// enqueueN queues n small evt messages with ids m000, m001, …
func enqueueN(t *testing.T, j *journal.Journal, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("m%03d", i)
		if _, err := j.Enqueue(mqttapi.LeafEvt, id, []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatalf("Enqueue(%s) = %v", id, err)
		}
		ids = append(ids, id)
	}
	return ids
}

func pendingIDs(t *testing.T, j *journal.Journal) []string {
	t.Helper()
	items, err := j.Pending(0)
	if err != nil {
		t.Fatalf("Pending = %v", err)
	}
	var ids []string
	var last uint64
	for _, it := range items {
		if it.Seq <= last {
			t.Fatalf("Pending out of order: seq %d after %d", it.Seq, last)
		}
		last = it.Seq
		ids = append(ids, it.MsgID)
	}
	return ids
}

func TestOutboxOrderAckDepth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := journal.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := enqueueN(t, j, 300) // more than 255, so byte order of keys matters
	if _, err := j.Enqueue(mqttapi.LeafEvt, "m005", []byte("{}")); !errors.Is(err, journal.ErrDuplicate) {
		t.Fatalf("Enqueue(duplicate id) = %v, want ErrDuplicate", err)
	}
	for _, bad := range []struct {
		leaf    mqttapi.Leaf
		id      string
		payload []byte
	}{
		{mqttapi.LeafTelemetry, "x", []byte("{}")},
		{mqttapi.LeafEvt, "bad id", []byte("{}")},
		{mqttapi.LeafEvt, "x", nil},
		{mqttapi.LeafEvt, "x", make([]byte, mqttapi.MaxPayload+1)},
	} {
		_, err := j.Enqueue(bad.leaf, bad.id, bad.payload)
		wantCode(t, fmt.Sprintf("Enqueue(%s, %q, %d bytes)", bad.leaf, bad.id, len(bad.payload)), err, journal.ErrInvalid.Code, vend.Invalid)
	}
	if d, _ := j.Depth(); d != 300 {
		t.Fatalf("Depth = %d, want 300", d)
	}
	if got := pendingIDs(t, j); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("Pending order differs from enqueue order")
	}
	if first, _ := j.Pending(3); len(first) != 3 || first[0].MsgID != "m000" || first[2].MsgID != "m002" {
		t.Fatalf("Pending(3) = %v", first)
	}
	// Ack out of order, with unknown ids, twice.
	if n, err := j.Ack("m001", "m250", "nope"); err != nil || n != 2 {
		t.Fatalf("Ack = %d, %v; want 2", n, err)
	}
	if n, err := j.Ack("m001", "m250"); err != nil || n != 0 {
		t.Fatalf("Ack again = %d, %v; want 0", n, err)
	}
	if err := j.MarkAttempt("m000", "m000", "nope"); err != nil {
		t.Fatal(err)
	}
	j.Close()
	// Survives reopen; new items go after the old ones even after acks.
	j = mustOpen(t, path, nil)
	if d, _ := j.Depth(); d != 298 {
		t.Fatalf("Depth after reopen = %d, want 298", d)
	}
	seq, err := j.Enqueue(mqttapi.LeafEvt, "late", []byte("{}"))
	if err != nil || seq != 301 {
		t.Fatalf("Enqueue after reopen = seq %d, %v; want 301", seq, err)
	}
	got := pendingIDs(t, j)
	if got[0] != "m000" || got[1] != "m002" || got[len(got)-1] != "late" || len(got) != 299 {
		t.Fatalf("Pending after ack = %v…", got[:3])
	}
	items, _ := j.Pending(1)
	if items[0].Attempts != 2 || items[0].LastAttempt.IsZero() {
		t.Fatalf("attempts = %d, want 2", items[0].Attempts)
	}
	// Ack everything: empty.
	if n, err := j.Ack(got...); err != nil || n != 299 {
		t.Fatalf("Ack(all) = %d, %v", n, err)
	}
	if d, _ := j.Depth(); d != 0 {
		t.Fatalf("Depth = %d, want 0", d)
	}
}

func TestDrainRateStopResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := mustOpen(t, "", nil) // the bubble's fake time.Now is the clock
		ids := enqueueN(t, j, 50)
		rate := journal.Rate{PerSecond: 20, Burst: 1}
		var sent []string
		var at []time.Time
		fail := 20
		send := func(it journal.Item) error {
			if len(sent) == fail {
				fail = -1
				return errors.New("link down")
			}
			sent = append(sent, it.MsgID)
			at = append(at, time.Now())
			return nil
		}
		n, err := j.Drain(t.Context(), send, rate)
		if err == nil || n != 20 || len(sent) != 20 {
			t.Fatalf("Drain = %d, %v; want 20 and the send error", n, err)
		}
		// Resume: continues at the failed message, in order.
		n, err = j.Drain(t.Context(), send, rate)
		if err != nil || n != 30 {
			t.Fatalf("Drain(resume) = %d, %v; want 30, nil", n, err)
		}
		if fmt.Sprint(sent) != fmt.Sprint(ids) {
			t.Fatalf("sent %v, want %v", sent, ids)
		}
		for i := 1; i < len(at); i++ {
			if d := at[i].Sub(at[i-1]); d < 50*time.Millisecond-time.Microsecond {
				t.Fatalf("send %d only %s after the previous; rate 20/s", i, d)
			}
		}
		// Nothing was removed; attempts recorded.
		if d, _ := j.Depth(); d != 50 {
			t.Fatalf("Depth after drain = %d, want 50", d)
		}
		items, _ := j.Pending(0)
		if items[0].Attempts != 1 || items[20].Attempts != 2 {
			t.Fatalf("attempts = %d, %d; want 1, 2 (the failed one twice)", items[0].Attempts, items[20].Attempts)
		}
		// Nothing new: Drain sends nothing. After a reconnect, everything again.
		if n, err := j.Drain(t.Context(), send, rate); n != 0 || err != nil {
			t.Fatalf("Drain(empty) = %d, %v", n, err)
		}
		j.Ack(ids[:40]...)
		j.RewindDrain()
		sent = nil
		if n, err := j.Drain(t.Context(), send, rate); n != 10 || err != nil || sent[0] != "m040" {
			t.Fatalf("Drain(after rewind) = %d, %v, first %v", n, err, sent)
		}
		// Cancellation stops a waiting Drain.
		j.RewindDrain()
		ctx, cancel := context.WithTimeout(t.Context(), 120*time.Millisecond)
		defer cancel()
		n, err = j.Drain(ctx, func(journal.Item) error { return nil }, rate)
		if !errors.Is(err, context.DeadlineExceeded) || n < 2 || n > 4 {
			t.Fatalf("Drain(ctx 120ms) = %d, %v; want 3ish and DeadlineExceeded", n, err)
		}
	})
}
