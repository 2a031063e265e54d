package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// Outgoing is an uplink message to queue in the outbox, alone (Enqueue) or
// in the same commit as the state change that caused it (Accept,
// Transition, EndSession).
type Outgoing struct {
	Leaf    mqttapi.Leaf   // an uplink the cloud acks: evt or usage
	MsgID   string         // the envelope's message ID; the cloud's Ack names it
	Payload []byte         // the encoded message, at most mqttapi.MaxPayload bytes
	Session vend.SessionID // for a usage report: the session its Ack settles; zero otherwise
}

func (o *Outgoing) validate() error {
	switch {
	case o.Leaf != mqttapi.LeafEvt && o.Leaf != mqttapi.LeafUsage:
		return vend.Errorf(ErrInvalid, "outbox: leaf %q is not an acked uplink (evt, usage)", clip(string(o.Leaf)))
	case mqttapi.ValidateMessageID(o.MsgID) != nil:
		return vend.Errorf(ErrInvalid, "outbox: %v", mqttapi.ValidateMessageID(o.MsgID))
	case len(o.Payload) == 0 || len(o.Payload) > mqttapi.MaxPayload:
		return vend.Errorf(ErrInvalid, "outbox: payload of %d bytes, want 1-%d", len(o.Payload), mqttapi.MaxPayload)
	}
	return nil
}

// Item is one queued uplink message.
type Item struct {
	Seq         uint64         `json:"seq"`                   // position in the outbox, from 1, strictly increasing, never reused
	Leaf        mqttapi.Leaf   `json:"leaf"`                  // topic leaf to publish on
	MsgID       string         `json:"id"`                    // message ID the cloud acks
	Payload     []byte         `json:"payload"`               // encoded message
	Session     vend.SessionID `json:"session,omitzero"`      // usage reports: the session settled by the ack
	Enqueued    time.Time      `json:"enqueued"`              // when it was queued (UTC)
	Attempts    uint32         `json:"attempts"`              // publishes attempted so far
	LastAttempt time.Time      `json:"last_attempt,omitzero"` // when the last one was
}

type itemRecord struct {
	V int `json:"v"`
	Item
}

// Enqueue queues one message in its own commit and returns its sequence
// number. Errors: ErrInvalid for a leaf that is not an acked uplink, a bad
// message ID or an empty or oversized payload; ErrDuplicate when msgID is
// queued already; storage errors.
func (j *Journal) Enqueue(leaf mqttapi.Leaf, msgID string, payload []byte) (uint64, error) {
	o := Outgoing{Leaf: leaf, MsgID: msgID, Payload: payload}
	if err := o.validate(); err != nil {
		return 0, err
	}
	var seq uint64
	err := j.update(kindOutbox, func(tx *bolt.Tx) error {
		var err error
		seq, err = enqueue(tx, j.now().UTC(), o)
		return err
	})
	if err != nil {
		return 0, err
	}
	return seq, nil
}

func enqueueAll(tx *bolt.Tx, now time.Time, os []Outgoing) error {
	for _, o := range os {
		if _, err := enqueue(tx, now, o); err != nil {
			return err
		}
	}
	return nil
}

func enqueue(tx *bolt.Tx, now time.Time, o Outgoing) (uint64, error) {
	ob := tx.Bucket(bucketOutbox)
	items, ids := ob.Bucket(bucketItems), ob.Bucket(bucketIDs)
	if ids.Get([]byte(o.MsgID)) != nil {
		return 0, vend.Errorf(ErrDuplicate, "message %s", o.MsgID)
	}
	seq, err := items.NextSequence()
	if err != nil {
		return 0, vend.Errorf(ErrStorage, "outbox sequence: %v", err)
	}
	it := Item{Seq: seq, Leaf: o.Leaf, MsgID: o.MsgID, Payload: bytes.Clone(o.Payload), Session: o.Session, Enqueued: now}
	if err := putItem(items, &it); err != nil {
		return 0, err
	}
	if err := ids.Put([]byte(o.MsgID), u64(seq)); err != nil {
		return 0, vend.Errorf(ErrStorage, "put outbox id: %v", err)
	}
	return seq, nil
}

func putItem(items *bolt.Bucket, it *Item) error {
	b, err := json.Marshal(itemRecord{V: RecordVersion, Item: *it})
	if err != nil {
		return vend.Errorf(ErrInvalid, "encode outbox item %d: %v", it.Seq, err)
	}
	if err := items.Put(u64(it.Seq), b); err != nil {
		return vend.Errorf(ErrStorage, "put outbox item %d: %v", it.Seq, err)
	}
	return nil
}

var itemsName = []byte("outbox/items")

func decodeItem(k, v []byte) (Item, error) {
	var r itemRecord
	if len(k) != 8 {
		return Item{}, corrupt(itemsName, k, fmt.Errorf("key of %d bytes, want 8", len(k)))
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return Item{}, corrupt(itemsName, k, err)
	}
	if r.V != RecordVersion {
		return Item{}, corrupt(itemsName, k, fmt.Errorf("record version %d, want %d", r.V, RecordVersion))
	}
	if seq := binary.BigEndian.Uint64(k); r.Seq != seq {
		return Item{}, corrupt(itemsName, k, fmt.Errorf("record names seq %d", r.Seq))
	}
	o := Outgoing{Leaf: r.Leaf, MsgID: r.MsgID, Payload: r.Payload}
	if err := o.validate(); err != nil {
		return Item{}, corrupt(itemsName, k, err)
	}
	return r.Item, nil
}

// Pending returns up to limit queued messages (all when limit <= 0) in
// queue order. Errors: ErrCorrupt naming the item; storage errors.
func (j *Journal) Pending(limit int) ([]Item, error) { return j.pendingFrom(0, limit) }

func (j *Journal) pendingFrom(from uint64, limit int) ([]Item, error) {
	var out []Item
	err := j.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Bucket(bucketItems).Cursor()
		for k, v := c.Seek(u64(from)); k != nil; k, v = c.Next() {
			it, err := decodeItem(k, v)
			if err != nil {
				return err
			}
			out = append(out, it)
			if limit > 0 && len(out) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Depth returns how many messages are queued.
func (j *Journal) Depth() (int, error) {
	n := 0
	err := j.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Bucket(bucketIDs).Stats().KeyN
		return nil
	})
	return n, err
}

// Ack removes the queued messages whose IDs the cloud acknowledged, in one
// commit, and returns how many it removed. Unknown IDs (never queued, or
// acked before) are ignored, so Ack is idempotent; with nothing to remove
// it writes nothing. Acking a usage report also moves its session from
// Reported to Settled in the same commit. Errors: ErrCorrupt, storage.
func (j *Journal) Ack(msgIDs ...string) (int, error) {
	if len(msgIDs) == 0 {
		return 0, nil
	}
	now := j.now().UTC()
	removed := 0
	err := j.update(kindOutbox, func(tx *bolt.Tx) error {
		removed = 0
		ob := tx.Bucket(bucketOutbox)
		items, ids := ob.Bucket(bucketItems), ob.Bucket(bucketIDs)
		for _, id := range msgIDs {
			sv := ids.Get([]byte(id))
			if sv == nil {
				continue
			}
			seq, err := getU64(itemsName, []byte(id), sv)
			if err != nil {
				return err
			}
			key := u64(seq)
			if v := items.Get(key); v != nil {
				it, err := decodeItem(key, v)
				if err != nil {
					return err
				}
				if !it.Session.IsZero() {
					if err := settle(tx, it.Session, it.MsgID, now); err != nil {
						return err
					}
				}
				if err := items.Delete(key); err != nil {
					return vend.Errorf(ErrStorage, "delete outbox item %d: %v", seq, err)
				}
			}
			if err := ids.Delete([]byte(id)); err != nil {
				return vend.Errorf(ErrStorage, "delete outbox id: %v", err)
			}
			removed++
		}
		if removed == 0 {
			return errNoop
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return removed, nil
}

// settle moves a reported session to Settled when the ack names its usage
// message. A session already settled or pruned is left alone.
func settle(tx *bolt.Tx, id vend.SessionID, msgID string, now time.Time) error {
	v := tx.Bucket(bucketSessions).Get(id[:])
	if v == nil {
		return nil
	}
	s, err := decodeSession(id[:], v)
	if err != nil {
		return err
	}
	if s.State != Reported || s.UsageMsgID != msgID {
		return nil
	}
	if err := enter(s, Settled, now); err != nil {
		return err
	}
	return putSession(tx, s)
}

// MarkAttempt counts one publish attempt, at now, for each queued message
// named (unknown IDs are ignored), in one commit.
func (j *Journal) MarkAttempt(msgIDs ...string) error {
	if len(msgIDs) == 0 {
		return nil
	}
	now := j.now().UTC()
	return j.update(kindOutbox, func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOutbox)
		items, ids := ob.Bucket(bucketItems), ob.Bucket(bucketIDs)
		n := 0
		for _, id := range msgIDs {
			sv := ids.Get([]byte(id))
			if sv == nil {
				continue
			}
			key := bytes.Clone(sv)
			v := items.Get(key)
			if v == nil {
				continue
			}
			it, err := decodeItem(key, v)
			if err != nil {
				return err
			}
			it.Attempts++
			it.LastAttempt = now
			if err := putItem(items, &it); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			return errNoop
		}
		return nil
	})
}

// Rate bounds how fast Drain sends: a token bucket refilled at PerSecond
// tokens a second holding at most Burst (at least 1). PerSecond <= 0 means
// no bound.
type Rate struct {
	PerSecond float64
	Burst     int
}

// DefaultRate is 20 messages a second with bursts of 5: gentle on a
// cellular link and on a broker after a fleet-wide reconnect.
var DefaultRate = Rate{PerSecond: 20, Burst: 5}

// drainBatch is how many items Drain reads per read transaction, and marks
// attempted per commit.
const drainBatch = 32

// Drain sends queued messages in queue order through send, at most at
// rate, starting at the drain cursor: the first message not yet sent since
// the last RewindDrain. It returns when the outbox has nothing beyond the
// cursor (nil), on the first send error (that error, wrapped; the cursor
// stays on the failed message so the next Drain resumes there), or when
// ctx is done. It removes nothing: messages leave only on Ack. Attempts
// are recorded once per batch of up to 32 sends. Only one Drain runs at a
// time; a second call waits. It returns how many messages were sent. The
// rate is measured on the real clock (time.Now), not Opts.Now, because its
// waits are real timers.
func (j *Journal) Drain(ctx context.Context, send func(Item) error, rate Rate) (int, error) {
	j.drainMu.Lock()
	defer j.drainMu.Unlock()
	tb := newBucket(rate, time.Now())
	sent := 0
	for {
		items, err := j.pendingFrom(j.drainNext.Load(), drainBatch)
		if err != nil {
			return sent, err
		}
		if len(items) == 0 {
			return sent, nil
		}
		var done []string
		for _, it := range items {
			if err := tb.wait(ctx, time.Now); err != nil {
				return sent, j.markAttempts(done, err)
			}
			if err := send(it); err != nil {
				err = fmt.Errorf("journal: drain: send %s %s (seq %d): %w", it.Leaf, it.MsgID, it.Seq, err)
				return sent, j.markAttempts(append(done, it.MsgID), err)
			}
			done = append(done, it.MsgID)
			j.drainNext.Store(it.Seq + 1)
			sent++
		}
		if err := j.markAttempts(done, nil); err != nil {
			return sent, err
		}
	}
}

// markAttempts records attempts for ids and returns cause, or the storage
// error when there is no cause.
func (j *Journal) markAttempts(ids []string, cause error) error {
	err := j.MarkAttempt(ids...)
	if cause != nil {
		if err != nil {
			j.log.Error("journal: mark attempts", "err", err)
		}
		return cause
	}
	return err
}

// RewindDrain moves the drain cursor back to the oldest queued message.
// The uplink calls it after every (re)connect, so every message not yet
// acked is sent again: a PUBACK on the old connection proved nothing.
func (j *Journal) RewindDrain() { j.drainNext.Store(0) }

// tokenBucket is a token bucket on the journal's clock.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(r Rate, now time.Time) *tokenBucket {
	b := float64(max(r.Burst, 1))
	return &tokenBucket{rate: r.PerSecond, burst: b, tokens: b, last: now}
}

func (b *tokenBucket) wait(ctx context.Context, now func() time.Time) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if b.rate <= 0 {
			return nil
		}
		t := now()
		b.tokens = min(b.burst, b.tokens+t.Sub(b.last).Seconds()*b.rate)
		b.last = t
		if b.tokens >= 1 {
			b.tokens--
			return nil
		}
		d := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
		if d < time.Millisecond {
			d = time.Millisecond
		}
		tm := time.NewTimer(d)
		select {
		case <-ctx.Done():
			tm.Stop()
			return ctx.Err()
		case <-tm.C:
		}
	}
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
