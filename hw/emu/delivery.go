package emu

import "time"

// MaxDeliveries bounds the delivery log a board keeps; past it the oldest
// entries are dropped (and counted), so a long soak cannot grow it without
// bound.
const MaxDeliveries = 20000

// Delivery is one thing a machine gave, as the emulator saw it: the truth a
// harness bills against, one entry per
//
//   - water: valve opening, from open to close, with the volume that
//     flowed while it was open;
//   - vending: motor run of a slot, with the items it dropped;
//   - washer: coin pulse (a rising and falling edge on the coin output),
//     whether its width was valid, whether the machine swallowed it while a
//     cycle ran, and whether it completed the credit and started a cycle.
//
// Entries are in the order they began; an open one (a valve still open, a
// motor still turning) has a zero End and its amounts so far.
type Delivery struct {
	Seq     uint64    `json:"seq"`     // 1, 2, … per board, in the order deliveries began
	Machine string    `json:"machine"` // machine name in the sim config
	Kind    string    `json:"kind"`    // water, washer or vending
	Slot    string    `json:"slot,omitempty"`
	Start   time.Time `json:"start"`        // valve opened, motor started, coin pulse rose (Opts.Now clock)
	End     time.Time `json:"end,omitzero"` // valve closed, motor stopped, coin pulse fell; zero while open

	DeliveredUL  int64 `json:"delivered_ul,omitempty"`  // water: microlitres that flowed
	Items        int   `json:"items,omitempty"`         // vending: items dropped
	Valid        bool  `json:"valid,omitempty"`         // washer: the pulse width was within pulse_min..pulse_max
	Ignored      bool  `json:"ignored,omitempty"`       // washer: valid but sent while a cycle ran (swallowed)
	CycleStarted bool  `json:"cycle_started,omitempty"` // washer: this pulse completed the credit and started a cycle
}

// deliveryLog is a board's bounded delivery log. Models append to it and
// update their open entry, with the board lock held.
type deliveryLog struct {
	entries []*Delivery
	next    uint64
	dropped uint64
}

func (l *deliveryLog) add(d *Delivery) *Delivery {
	l.next++
	d.Seq = l.next
	if len(l.entries) >= MaxDeliveries {
		n := len(l.entries) - MaxDeliveries + 1
		l.entries = append(l.entries[:0], l.entries[n:]...)
		l.dropped += uint64(n)
	}
	l.entries = append(l.entries, d)
	return d
}

// since copies the entries with Seq > seq.
func (l *deliveryLog) since(seq uint64) []Delivery {
	out := []Delivery{}
	for _, d := range l.entries {
		if d.Seq > seq {
			out = append(out, *d)
		}
	}
	return out
}

// Deliveries returns the delivery log's entries after seq (0 for all),
// brought up to now, and how many of the oldest entries were dropped from
// the log (see MaxDeliveries).
func (b *Board) Deliveries(since uint64) ([]Delivery, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.update(b.o.Now())
	return b.dlog.since(since), b.dlog.dropped
}
