package daemon

import (
	"sync"
	"time"
)

// cloudClock estimates the cloud's clock from Acks. When an uplink the
// outbox sent is acknowledged within maxRTT of being sent, the Ack's
// envelope time (the cloud's clock when it acknowledged) is taken as the
// cloud's time at the Ack's arrival: the error is at most the round trip.
// The estimate is kept as an anchor (cloud time, board time of arrival),
// and cloud time later is the anchor plus the board's elapsed time (Go's
// monotonic clock, so a board clock stepped by NTP does not move it). An
// estimate is fresh for freshFor; without a fresh one the board's own
// clock is used.
type cloudClock struct {
	mu       sync.Mutex
	sent     map[string]time.Time // outbox message ID → when it was (last) sent
	order    []string
	haveEst  bool
	cloudAt  time.Time // the cloud's time at recvAt
	recvAt   time.Time // board time the anchoring Ack arrived
	rtt      time.Duration
	maxRTT   time.Duration
	freshFor time.Duration
	changed  chan struct{} // closed (and replaced) when a new estimate is taken
}

const maxSentTracked = 256

func newCloudClock() *cloudClock {
	return &cloudClock{sent: map[string]time.Time{}, maxRTT: 2 * time.Second, freshFor: 6 * time.Hour, changed: make(chan struct{})}
}

// sentNow records that message id was sent at t.
func (c *cloudClock) sentNow(id string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.sent[id]; !ok {
		c.order = append(c.order, id)
	}
	c.sent[id] = t
	for len(c.order) > maxSentTracked {
		delete(c.sent, c.order[0])
		c.order = c.order[1:]
	}
}

// acked takes an Ack stamped ackTS (Unix ms, cloud clock) naming ids,
// received at recv (board clock).
func (c *cloudClock) acked(ids []string, ackTS int64, recv time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	best := time.Duration(-1)
	for _, id := range ids {
		t, ok := c.sent[id]
		if !ok {
			continue
		}
		delete(c.sent, id)
		rtt := recv.Sub(t)
		if rtt < 0 || rtt > c.maxRTT {
			continue
		}
		if best < 0 || rtt < best {
			best = rtt
		}
	}
	if best < 0 || ackTS <= 0 {
		return
	}
	c.haveEst, c.cloudAt, c.recvAt, c.rtt = true, time.UnixMilli(ackTS), recv, best
	close(c.changed)
	c.changed = make(chan struct{})
}

// fresh reports whether there is an estimate younger than freshFor at
// board time boardNow.
func (c *cloudClock) fresh(boardNow time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := boardNow.Sub(c.recvAt)
	return c.haveEst && el >= 0 && el <= c.freshFor
}

// next returns a channel closed when the next estimate is taken.
func (c *cloudClock) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// now returns the cloud's time estimated at board time boardNow, or
// boardNow without a fresh estimate.
func (c *cloudClock) now(boardNow time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.haveEst {
		return boardNow
	}
	el := boardNow.Sub(c.recvAt)
	if el < 0 || el > c.freshFor {
		return boardNow
	}
	return c.cloudAt.Add(el)
}
