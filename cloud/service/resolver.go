package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// ExpiredHorizon is how far back a heard ID is still recognised as its
// device's and answered proximity.expired rather than proximity.unknown
// (rounded up to whole steps of three windows, at most maxLagged of them).
const ExpiredHorizon = 5 * time.Minute

// maxLagged bounds the lagged resolvers per K (memory: 3 windows of IDs
// per device each).
const maxLagged = 8

// Resolver resolves heard proximity IDs for every active device of the
// store. It holds one proxid.Resolver per rotation exponent K in use (the
// current window ± 1), and beside each lagged ones running 3, 6, 9 …
// windows behind (windows −4 … −2, −7 … −5, …) back to ExpiredHorizon, so
// that an ID of a window that has ended is told apart as
// proximity.expired rather than proximity.unknown.
//
// Every cloud instance builds its own from store.DeviceKeys (the Scale
// path): Refresh reloads them (after a device is added, re-keyed or
// disabled, and periodically from Service.Run). Safe for concurrent use.
type Resolver struct {
	st  *store.Store
	now func() time.Time

	mu      sync.RWMutex
	live    map[uint8]*proxid.Resolver
	old     map[uint8][]*proxid.Resolver
	devices map[string]uint8 // device → its K
}

// NewResolver returns an empty resolver over st; call Refresh to load it.
func NewResolver(st *store.Store, now func() time.Time) *Resolver {
	return &Resolver{st: st, now: now, live: map[uint8]*proxid.Resolver{}, old: map[uint8][]*proxid.Resolver{}, devices: map[string]uint8{}}
}

// lagged returns how many lagged resolvers cover ExpiredHorizon for k.
func lagged(k uint8) int {
	win := time.Duration(1<<k) * time.Second
	n := int((ExpiredHorizon - win + 3*win - 1) / (3 * win))
	return min(max(n, 1), maxLagged)
}

func (r *Resolver) pair(k uint8) (*proxid.Resolver, []*proxid.Resolver, error) {
	if l, ok := r.live[k]; ok {
		return l, r.old[k], nil
	}
	l, err := proxid.NewResolver(k, r.now)
	if err != nil {
		return nil, nil, err
	}
	var olds []*proxid.Resolver
	for i := 1; i <= lagged(k); i++ {
		lag := time.Duration(3*i) * time.Duration(1<<k) * time.Second
		o, err := proxid.NewResolver(k, func() time.Time { return r.now().Add(-lag) })
		if err != nil {
			return nil, nil, err
		}
		olds = append(olds, o)
	}
	r.live[k], r.old[k] = l, olds
	return l, olds, nil
}

// Refresh reloads every active device's identity key from the store:
// new and re-keyed devices are added, disabled and removed ones dropped.
// Errors are the store's.
func (r *Resolver) Refresh(ctx context.Context) error {
	keys, err := r.st.DeviceKeys(ctx)
	if err != nil {
		return fmt.Errorf("service: load device keys: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if prev, ok := r.devices[k.DeviceID]; ok && prev != k.K {
			r.remove(prev, k.DeviceID)
		}
		l, olds, err := r.pair(k.K)
		if err != nil {
			return fmt.Errorf("service: device %s: %w", k.DeviceID, err)
		}
		for _, x := range append([]*proxid.Resolver{l}, olds...) {
			if err := x.Add(k.DeviceID, k.IdentityKey); err != nil {
				return fmt.Errorf("service: device %s: %w", k.DeviceID, err)
			}
		}
		r.devices[k.DeviceID] = k.K
		seen[k.DeviceID] = true
	}
	for id, k := range r.devices {
		if !seen[id] {
			r.remove(k, id)
			delete(r.devices, id)
		}
	}
	return nil
}

// remove drops a device from the resolvers of k; called with mu held.
func (r *Resolver) remove(k uint8, id string) {
	r.live[k].Remove(id)
	for _, o := range r.old[k] {
		o.Remove(id)
	}
}

// Len returns the number of devices loaded.
func (r *Resolver) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.devices)
}

// Resolve maps a heard ID to its device and window. It returns an error of
// code proximity.expired for an ID of a window before the accepted ones,
// up to ExpiredHorizon back, proximity.unknown otherwise.
func (r *Resolver) Resolve(id proxid.ID) (proxid.Match, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, l := range r.live {
		if m, err := l.Resolve(id); err == nil {
			return m, nil
		} else if vend.CodeOf(err) == "proximity.ambiguous" {
			return proxid.Match{}, err
		}
	}
	for _, olds := range r.old {
		for _, o := range olds {
			if _, err := o.Resolve(id); err == nil {
				return proxid.Match{}, vend.Errorf(ErrProximityExpired, "%s", id)
			}
		}
	}
	return proxid.Match{}, vend.Errorf(ErrProximityUnknown, "%s", id)
}

// Run rolls every resolver at its window boundaries until stop is closed.
// Resolve also rolls lazily; Run keeps the roll off the lookup path.
func (r *Resolver) Run(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.mu.RLock()
			for k, l := range r.live {
				l.Advance()
				for _, o := range r.old[k] {
					o.Advance()
				}
			}
			r.mu.RUnlock()
		}
	}
}
