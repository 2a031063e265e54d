package service

import (
	"sync"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// HubEvent is one session event as the phone API streams it: Type is
// phoneapi.EventProgress, EventState or EventEnded and Data the JSON value
// (a phoneapi.ProgressEvent or phoneapi.Session). ID increases within a
// session on this instance.
type HubEvent struct {
	ID   uint64
	Type string
	Data any
}

// Progress is the last metered total a device reported for a live session.
type Progress struct {
	Units  uint64
	Amount vend.Amount
	TS     time.Time
}

const (
	hubBuffer   = 64               // events kept per session for Last-Event-ID resumption
	hubSubQueue = 64               // events queued per subscriber before it is dropped
	hubKeep     = 10 * time.Minute // how long a session's events outlive its last activity
)

type hubTopic struct {
	seq      uint64
	buf      []HubEvent
	subs     map[chan HubEvent]struct{}
	progress *Progress
	touched  time.Time
}

// Hub fans session events out to the SSE subscribers of this instance and
// keeps the last few per session so a reconnecting client resumes after its
// Last-Event-ID. Events produced on another instance (its ingest took the
// device's message) do not reach it: the SSE endpoint polls the store and
// sends the state it finds. Safe for concurrent use.
type Hub struct {
	mu     sync.Mutex
	topics map[vend.SessionID]*hubTopic
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{topics: map[vend.SessionID]*hubTopic{}} }

func (h *Hub) topic(id vend.SessionID) *hubTopic {
	t := h.topics[id]
	if t == nil {
		t = &hubTopic{subs: map[chan HubEvent]struct{}{}}
		h.topics[id] = t
	}
	t.touched = time.Now()
	return t
}

// Publish assigns the next id to an event of session id, buffers it and
// sends it to every subscriber. A subscriber whose queue is full is
// dropped (its channel closed): it reconnects with Last-Event-ID.
func (h *Hub) Publish(id vend.SessionID, typ string, data any) HubEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topic(id)
	t.seq++
	ev := HubEvent{ID: t.seq, Type: typ, Data: data}
	if p, ok := data.(phoneapi.ProgressEvent); ok {
		t.progress = &Progress{Units: p.Units, Amount: p.Amount, TS: p.TS}
	}
	t.buf = append(t.buf, ev)
	if len(t.buf) > hubBuffer {
		t.buf = t.buf[len(t.buf)-hubBuffer:]
	}
	for c := range t.subs {
		select {
		case c <- ev:
		default:
			delete(t.subs, c)
			close(c)
		}
	}
	return ev
}

// NextID reserves an event id for a snapshot sent to one subscriber.
func (h *Hub) NextID(id vend.SessionID) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topic(id)
	t.seq++
	return t.seq
}

// Subscribe returns a channel of session id's events from now on and a
// function that ends the subscription. The channel is closed when the
// subscriber falls behind.
func (h *Hub) Subscribe(id vend.SessionID) (<-chan HubEvent, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := make(chan HubEvent, hubSubQueue)
	h.topic(id).subs[c] = struct{}{}
	return c, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if t := h.topics[id]; t != nil {
			if _, ok := t.subs[c]; ok {
				delete(t.subs, c)
				close(c)
			}
		}
	}
}

// Since returns the buffered events of session id after event id after,
// and whether the buffer still covers everything after it (false means
// the caller must send a state snapshot instead).
func (h *Hub) Since(id vend.SessionID, after uint64) ([]HubEvent, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[id]
	if t == nil || after > t.seq {
		return nil, false
	}
	if after == t.seq {
		return nil, true
	}
	if len(t.buf) == 0 || t.buf[0].ID > after+1 {
		return nil, false
	}
	var out []HubEvent
	for _, ev := range t.buf {
		if ev.ID > after {
			out = append(out, ev)
		}
	}
	return out, true
}

// Progress returns the last progress reported for session id on this
// instance, or nil.
func (h *Hub) Progress(id vend.SessionID) *Progress {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.topics[id]; t != nil && t.progress != nil {
		p := *t.progress
		return &p
	}
	return nil
}

// Prune forgets sessions without subscribers and without activity for ten
// minutes.
func (h *Hub) Prune(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, t := range h.topics {
		if len(t.subs) == 0 && now.Sub(t.touched) > hubKeep {
			delete(h.topics, id)
		}
	}
}
