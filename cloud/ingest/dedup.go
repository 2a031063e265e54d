package ingest

import (
	"container/list"
	"sync"
)

// Deduper remembers the message ids that were handled, per device. The
// cloud store implements it durably (a unique key on device and id, in the
// same database as what the Handler writes); [MemoryDedup] is the bounded
// in-memory version for tests and a single instance.
type Deduper interface {
	// Seen records (device, msgID) and reports whether it was already
	// recorded: true means a duplicate, which is not handled again. It
	// must be atomic, so that two instances receiving the same id (a
	// redelivery to another shared subscriber) handle it once.
	Seen(device, msgID string) (bool, error)
	// Forget removes the record after the Handler failed, so that the
	// device's retransmission of the id is handled.
	Forget(device, msgID string) error
}

// MemoryDedup is a [Deduper] that keeps the most recent Capacity ids in an
// LRU. It is safe for concurrent use. An id evicted from it is handled
// again if it comes back, so size it above what devices retransmit (their
// outbox holds unacked messages only).
type MemoryDedup struct {
	mu    sync.Mutex
	cap   int
	order *list.List // of string keys, most recent at front
	index map[string]*list.Element
}

var _ Deduper = (*MemoryDedup)(nil)

// DefaultDedupCapacity is the MemoryDedup capacity when none is given.
const DefaultDedupCapacity = 100_000

// NewMemoryDedup returns an LRU of capacity ids (DefaultDedupCapacity when
// capacity <= 0).
func NewMemoryDedup(capacity int) *MemoryDedup {
	if capacity <= 0 {
		capacity = DefaultDedupCapacity
	}
	return &MemoryDedup{cap: capacity, order: list.New(), index: map[string]*list.Element{}}
}

func dedupKey(device, msgID string) string { return device + "\x00" + msgID }

// Seen implements Deduper; it never returns an error.
func (d *MemoryDedup) Seen(device, msgID string) (bool, error) {
	k := dedupKey(device, msgID)
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.index[k]; ok {
		d.order.MoveToFront(e)
		return true, nil
	}
	d.index[k] = d.order.PushFront(k)
	for d.order.Len() > d.cap {
		e := d.order.Back()
		d.order.Remove(e)
		delete(d.index, e.Value.(string))
	}
	return false, nil
}

// Forget implements Deduper; it never returns an error.
func (d *MemoryDedup) Forget(device, msgID string) error {
	k := dedupKey(device, msgID)
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.index[k]; ok {
		d.order.Remove(e)
		delete(d.index, k)
	}
	return nil
}

// Len returns how many ids are remembered.
func (d *MemoryDedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.order.Len()
}
