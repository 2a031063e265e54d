package proxid

import (
	"sync"
	"time"

	"beaconvend/app-protocol/vend"
)

// Resolver errors.
var (
	ErrUnknown   = vend.E(vend.NotFound, "proximity.unknown", "proxid: proximity id matches no device in the current window or its neighbours")
	ErrAmbiguous = vend.E(vend.Conflict, "proximity.ambiguous", "proxid: proximity id matches more than one device in one window")
	ErrDevice    = vend.E(vend.Invalid, "proximity.device", "proxid: invalid device")
)

// Match is what a resolved ID names.
type Match struct {
	Device string // device ID
	Window uint32 // start (Unix seconds) of the window the ID belongs to
	K      uint8  // rotation exponent
	Offset int    // Window relative to the resolver's current window: -1, 0 or +1
}

// Resolver maps an observed proximity ID to its device for the current
// window and its two neighbours (current ± 1), so that a phone whose clock,
// or a board whose clock, is off by up to one window still resolves, and an
// ID copied off the air is refused two windows later.
//
// Lookups are O(1): three hash-map probes. Rolling to the next window is
// incremental: the oldest window's map is dropped and only the new window's
// IDs are computed, outside the lock, then swapped in; lookups never wait on
// a rebuild. All methods are safe for concurrent use.
type Resolver struct {
	k   uint8
	now func() time.Time

	mu      sync.RWMutex
	devs    []device       // index → device; removed ones keep a tombstone (id == "")
	byID    map[string]int // device ID → index
	cur     uint32         // current window start
	windows [3]window      // cur-1, cur, cur+1
}

type device struct {
	id  string
	key Key
	// cached temporary key and the 2^16 s epoch it is for
	tkEpoch uint32
	tk      Key
	hasTK   bool
}

type window struct {
	start uint32
	ids   map[ID]int32 // → device index, or ambiguous
}

const ambiguous = -1

// RollStats reports what a call to Advance did.
type RollStats struct {
	Windows  int           // windows (re)computed: 0 when still in the same window, 1 on a normal roll, up to 3 after a jump
	Devices  int           // devices live in the resolver
	Duration time.Duration // time spent computing IDs (outside the lock)
}

// NewResolver returns an empty resolver for rotation exponent k, positioned
// at now() (time.Now when now is nil). It returns ErrK for an invalid k.
func NewResolver(k uint8, now func() time.Time) (*Resolver, error) {
	if err := ValidateK(k); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	r := &Resolver{k: k, now: now, byID: make(map[string]int)}
	r.cur = Window(now(), k)
	for i := range r.windows {
		r.windows[i] = window{start: r.neighbour(i - 1), ids: make(map[ID]int32)}
	}
	return r, nil
}

// K returns the rotation exponent.
func (r *Resolver) K() uint8 { return r.k }

func (r *Resolver) neighbour(off int) uint32 {
	return uint32(int64(r.cur) + int64(off)<<r.k)
}

// Add registers a device (or replaces its key, as on key rotation) and
// computes its IDs for the three live windows. It returns ErrDevice for an
// invalid device ID.
func (r *Resolver) Add(deviceID string, key Key) error {
	if err := vend.ValidateDeviceID(deviceID); err != nil {
		return vend.Errorf(ErrDevice, "%v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(deviceID)
	idx := len(r.devs)
	r.devs = append(r.devs, device{id: deviceID, key: key})
	r.byID[deviceID] = idx
	for i := range r.windows {
		w := &r.windows[i]
		insert(w.ids, r.devs[idx].idAt(w.start, r.k), int32(idx))
	}
	return nil
}

// Remove forgets a device; its IDs stop resolving at once. Removing an
// unknown device does nothing.
func (r *Resolver) Remove(deviceID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(deviceID)
}

func (r *Resolver) removeLocked(deviceID string) {
	idx, ok := r.byID[deviceID]
	if !ok {
		return
	}
	d := &r.devs[idx]
	for i := range r.windows {
		w := &r.windows[i]
		id := d.idAt(w.start, r.k)
		if v, ok := w.ids[id]; ok && v == int32(idx) {
			delete(w.ids, id)
		}
	}
	*d = device{} // tombstone; the slot is not reused so stale map entries cannot point at another device
	delete(r.byID, deviceID)
}

// Len returns the number of live devices.
func (r *Resolver) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byID)
}

// Resolve advances to now() if needed and maps id to its device. It returns
// ErrUnknown when no device had that ID in the current window ± 1 (including
// an ID from an older window), or ErrAmbiguous on a 64-bit collision.
func (r *Resolver) Resolve(id ID) (Match, error) {
	if Window(r.now(), r.k) != r.current() {
		r.Advance()
	}
	return r.Lookup(id)
}

func (r *Resolver) current() uint32 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cur
}

// Lookup maps id to its device among the windows the resolver holds now,
// without advancing. It does not allocate.
func (r *Resolver) Lookup(id ID) (Match, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	// Probe the current window first: it is where almost every phone is.
	for _, i := range [3]int{1, 0, 2} {
		w := &r.windows[i]
		v, ok := w.ids[id]
		if !ok {
			continue
		}
		if v == ambiguous {
			return Match{}, ErrAmbiguous
		}
		d := &r.devs[v]
		if d.id == "" {
			continue // removed
		}
		return Match{Device: d.id, Window: w.start, K: r.k, Offset: i - 1}, nil
	}
	return Match{}, ErrUnknown
}

// Advance moves the resolver to the window that contains now(). On a normal
// roll it computes one window; after a jump of more than one window (a
// stalled process, a clock step) it recomputes what it must. ID computation
// runs outside the lock; devices added meanwhile are filled in at the swap.
func (r *Resolver) Advance() RollStats {
	target := Window(r.now(), r.k)
	r.mu.RLock()
	cur := r.cur
	snapshot := r.devs[:len(r.devs):len(r.devs)]
	live := len(r.byID)
	r.mu.RUnlock()
	if target == cur {
		return RollStats{Devices: live}
	}
	step := int64(1) << r.k
	var keep [3]int // for each new slot, index of the old slot to reuse, or -1
	need := 0
	for i := range keep {
		start := int64(target) + int64(i-1)*step
		keep[i] = -1
		if d := (start - int64(cur)) / step; (start-int64(cur))%step == 0 && d >= -1 && d <= 1 {
			keep[i] = int(d) + 1
		} else {
			need++
		}
	}
	began := time.Now()
	var fresh [3]map[ID]int32
	for i := range keep {
		if keep[i] >= 0 {
			continue
		}
		start := uint32(int64(target) + int64(i-1)*step)
		m := make(map[ID]int32, len(snapshot))
		for j := range snapshot {
			d := snapshot[j] // copy: the temp-key cache is refreshed at the swap
			if d.id == "" {
				continue
			}
			insert(m, d.idAt(start, r.k), int32(j))
		}
		fresh[i] = m
	}
	took := time.Since(began)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != cur { // another Advance won the race; let it stand
		return RollStats{Devices: len(r.byID)}
	}
	var next [3]window
	for i := range keep {
		start := uint32(int64(target) + int64(i-1)*step)
		if keep[i] >= 0 {
			next[i] = r.windows[keep[i]]
			continue
		}
		m := fresh[i]
		// Devices added or removed while computing.
		for j := len(snapshot); j < len(r.devs); j++ {
			if r.devs[j].id != "" {
				insert(m, r.devs[j].idAt(start, r.k), int32(j))
			}
		}
		next[i] = window{start: start, ids: m}
	}
	r.windows = next
	r.cur = target
	return RollStats{Windows: need, Devices: len(r.byID), Duration: took}
}

// Run advances the resolver at every window boundary until stop is closed.
// Resolve also advances lazily, so Run only keeps lookups off the roll's path.
func (r *Resolver) Run(stop <-chan struct{}) {
	for {
		now := r.now()
		next := time.Unix(int64(Window(now, r.k))+int64(1)<<r.k, 0)
		t := time.NewTimer(next.Sub(now))
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
			r.Advance()
		}
	}
}

func insert(m map[ID]int32, id ID, idx int32) {
	if v, ok := m[id]; ok && v != idx {
		m[id] = ambiguous
		return
	}
	m[id] = idx
}

// idAt computes the device's ID for the window starting at start, using (and
// refreshing, on this copy) the cached temporary key.
func (d *device) idAt(start uint32, k uint8) ID {
	epoch := start >> 16
	if !d.hasTK || d.tkEpoch != epoch {
		d.tk, d.tkEpoch, d.hasTK = TempKey(d.key, start), epoch, true
	}
	return computeWithTemp(&d.tk, start, k)
}
