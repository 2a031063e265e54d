package service

import (
	"context"
	"errors"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Presence bounds.
const (
	// MaxClockSkew is how far ahead of the cloud's clock an envelope ts may
	// be before it is counted and clamped: device clocks are allowed to be
	// wrong by up to ten minutes.
	MaxClockSkew = 10 * time.Minute
	// DefaultTelemetryPeriod is the controller's default telemetry period
	// (controller/config mqtt.telemetry_interval).
	DefaultTelemetryPeriod = 60 * time.Second
	// DefaultStaleAfter is the staleness bound: a device from which
	// nothing was heard for three telemetry periods is offline, whatever
	// its retained state says.
	DefaultStaleAfter = 3 * DefaultTelemetryPeriod
)

// ErrUsageUnverifiable is the code a usage report is dead-lettered under
// when it names another device or a session its retired key does not
// cover; a signature no key verifies keeps app-protocol/signed's code.
var ErrUsageUnverifiable = vend.E(vend.Invalid, "usage.unverifiable", "service: usage report can never verify")

// deviceTime is the envelope ts as a time, clamped to now when it is
// more than MaxClockSkew ahead (counted).
func (s *Service) deviceTime(tsMs int64, now time.Time) time.Time {
	t := time.UnixMilli(tsMs)
	if t.After(now.Add(MaxClockSkew)) {
		s.Metrics.skewed.Inc()
		return now
	}
	return t
}

// DeviceDisconnected is the embedded broker's disconnect hook: the
// device's connection ended at at (the cloud's clock) other than by a
// takeover. It marks the device offline when the connection epoch the
// cloud holds began by then (store.SetDeviceLost with no grace: the hook
// runs for the connection itself, never late for a newer one). Errors
// are logged; the will and the staleness bound remain.
func (s *Service) DeviceDisconnected(ctx context.Context, device string, at time.Time) {
	changed, err := s.st.SetDeviceLost(ctx, device, at, 0)
	switch {
	case errors.Is(err, store.ErrDeviceNotFound):
	case err != nil:
		s.log.Error("service: device disconnect", "device", device, "err", err)
	case changed:
		s.Metrics.offline.WithLabelValues("disconnect").Inc()
		s.presenceChanged(ctx, device, false, "disconnect", at)
		s.log.Info("service: device offline: connection closed", "device", device)
	}
}

// PresenceOptions configure a [Presence].
type PresenceOptions struct {
	// StaleAfter: a device not heard from for this long is offline;
	// DefaultStaleAfter when zero. Set it to a few times the fleet's
	// telemetry period.
	StaleAfter time.Duration
	// Interval is how often stale devices are looked for; StaleAfter/6
	// (30 s by default) when zero, so a device is offline at most
	// StaleAfter+Interval after it was last heard.
	Interval time.Duration
}

// Presence marks offline the devices nothing was heard from within the
// staleness bound: a board that lost power with its broker, a half-open
// connection the broker has not noticed yet, a retained online state
// replayed for a board that died while the cloud was away. The will and
// the disconnect hook are the fast path; this is the bound. Make it with
// [Service.Presence] and run it with Run.
type Presence struct {
	s    *Service
	opts PresenceOptions
}

// Presence returns the service's staleness sweeper.
func (s *Service) Presence(opts PresenceOptions) *Presence {
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = DefaultStaleAfter
	}
	if opts.Interval <= 0 {
		opts.Interval = max(opts.StaleAfter/6, 100*time.Millisecond)
	}
	return &Presence{s: s, opts: opts}
}

// Bound is how long after a device was last heard it is offline at the
// latest when nothing else tells the cloud: StaleAfter + Interval (3 min
// 30 s by default). It is the bound on a NATS cluster, where a node that
// dies takes its clients' wills with it (they are never published), and
// the bound for any broker when a board dies with its link.
func (p *Presence) Bound() time.Duration { return p.opts.StaleAfter + p.opts.Interval }

// Sweep marks the stale devices offline once and returns them.
func (p *Presence) Sweep(ctx context.Context) ([]string, error) {
	ids, err := p.s.st.ExpirePresence(ctx, p.s.now().Add(-p.opts.StaleAfter))
	for _, id := range ids {
		p.s.Metrics.offline.WithLabelValues("stale").Inc()
		p.s.presenceChanged(ctx, id, false, "stale", p.s.now())
		p.s.log.Info("service: device offline: nothing heard within the presence bound", "device", id, "bound", p.opts.StaleAfter)
	}
	return ids, err
}

// Run sweeps every Interval until ctx is done, then returns nil.
func (p *Presence) Run(ctx context.Context) error {
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := p.Sweep(ctx); err != nil && ctx.Err() == nil {
				p.s.log.Error("service: presence sweep", "err", err)
			}
		}
	}
}

func clipString(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
