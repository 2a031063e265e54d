package payments

import (
	"context"
	"errors"
	"sync"
	"time"

	"beaconvend/app-protocol/vend"
)

// BreakerOpts configure a Breaker. Zero fields take the defaults.
type BreakerOpts struct {
	Failures int              // consecutive technical failures that open it; 5
	Cooldown time.Duration    // how long it stays open before one probe; 30 s
	Now      func() time.Time // the clock; time.Now
}

// Breaker tracks a channel's health: Failures technical errors in a row
// (ErrProvider and other vend.Transient errors, timeouts) open it; while
// open, calls are refused without reaching the provider; after Cooldown
// one probe call is let through (half-open): success closes it, failure
// opens it for another Cooldown. A business refusal (vend.Conflict, …)
// is an answer, not a failure: it counts as success. Safe for concurrent use.
type Breaker struct {
	opts     BreakerOpts
	mu       sync.Mutex
	fails    int
	openTill time.Time // zero: closed
	probing  bool      // half-open: a probe is out
}

// NewBreaker returns a closed breaker.
func NewBreaker(opts BreakerOpts) *Breaker {
	if opts.Failures <= 0 {
		opts.Failures = 5
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Breaker{opts: opts}
}

// Healthy reports whether a call would be let through now (closed, or
// open with its cool-down over and no probe out), without taking the probe.
func (b *Breaker) Healthy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openTill.IsZero() || (!b.probing && !b.opts.Now().Before(b.openTill))
}

// Open reports whether the breaker is open or half-open: technical
// failures tripped it and no call has succeeded since. It only reads
// memory (the beaconvend_payment_breaker_open gauge calls it per scrape).
func (b *Breaker) Open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.openTill.IsZero()
}

// Allow reports whether a call may go to the provider now; when the
// breaker is half-open it lets exactly one probe through until Record.
func (b *Breaker) Allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openTill.IsZero() {
		return true
	}
	if b.probing || b.opts.Now().Before(b.openTill) {
		return false
	}
	b.probing = true
	return true
}

// Record feeds the outcome of an allowed call.
func (b *Breaker) Record(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if errors.Is(err, context.Canceled) {
		return // the caller gave up: says nothing about the provider
	}
	if !technical(err) {
		b.fails, b.openTill = 0, time.Time{}
		return
	}
	b.fails++
	if b.fails >= b.opts.Failures || !b.openTill.IsZero() {
		b.openTill = b.opts.Now().Add(b.opts.Cooldown)
	}
}

// technical reports whether err is the provider failing rather than answering.
func technical(err error) bool {
	if err == nil {
		return false
	}
	return vend.KindOf(err) == vend.Transient || vend.KindOf(err) == vend.Internal ||
		errors.Is(err, context.DeadlineExceeded)
}
