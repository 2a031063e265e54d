package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// sessionEvents streams a session's events (see "Session events" in
// openapi.yaml): "retry: 2000", then either the buffered events after
// Last-Event-ID or a state snapshot, then progress/state events from the
// hub, and ended (after which the stream closes). The store is polled every
// PollInterval so that changes handled by another instance are seen too;
// a keepalive comment goes out every KeepAlive.
func (s *Server) sessionEvents(w http.ResponseWriter, r *http.Request) {
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	user := userOf(r).ID
	ss, err := s.st.UserSession(r.Context(), user, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var after uint64
	resume := false
	if h := r.Header.Get("Last-Event-ID"); h != "" {
		n, err := strconv.ParseUint(h, 10, 64)
		if err != nil || len(h) > 20 {
			s.fail(w, r, vend.Errorf(ErrField, "Last-Event-ID: want a decimal event id"))
			return
		}
		after, resume = n, true
	}
	release, err := s.guard.openStream(user)
	if err != nil {
		s.limited(w, r, err, s.opts.KeepAlive)
		return
	}
	defer release()
	// The stream lives as long as the session, past the server's
	// ReadTimeout and WriteTimeout: the read deadline is cleared (the
	// client sends nothing more) and each write gets WriteTimeout of its
	// own, so a client that stops reading is still cut off.
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return
	}
	writeBy := func() bool {
		var by time.Time
		if s.opts.WriteTimeout > 0 {
			by = time.Now().Add(s.opts.WriteTimeout)
		}
		err := rc.SetWriteDeadline(by)
		return err == nil || errors.Is(err, http.ErrNotSupported)
	}
	flusher := rc
	events, unsubscribe := s.svc.Hub.Subscribe(id)
	defer unsubscribe()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if !writeBy() {
		return
	}
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	var last store.State
	lastID := uint64(0)
	send := func(ev service.HubEvent) bool {
		if ev.ID <= lastID {
			return true
		}
		b, err := json.Marshal(ev.Data)
		if err != nil || !writeBy() {
			return false
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, ev.Type, b); err != nil {
			return false
		}
		if flusher.Flush() != nil {
			return false
		}
		lastID = ev.ID
		if ps, ok := ev.Data.(phoneapi.Session); ok {
			last = store.State(ps.State)
		}
		return ev.Type != phoneapi.EventEnded
	}
	snapshot := func(ss store.Session) bool {
		typ := phoneapi.EventState
		if !ss.State.Live() {
			typ = phoneapi.EventEnded
		}
		return send(service.HubEvent{ID: s.svc.Hub.NextID(id), Type: typ, Data: s.svc.PhoneSession(ss)})
	}

	resumed := false
	if resume {
		if evs, ok := s.svc.Hub.Since(id, after); ok {
			resumed = true
			lastID = after
			last = ss.State
			for _, ev := range evs {
				if !send(ev) {
					return
				}
			}
		}
	}
	if !resumed {
		// First a state event with the current session (also when final:
		// then it is the ended event and the stream closes).
		if ss.State.Live() {
			if !snapshot(ss) {
				return
			}
		} else {
			if !send(service.HubEvent{ID: s.svc.Hub.NextID(id), Type: phoneapi.EventState, Data: s.svc.PhoneSession(ss)}) {
				return
			}
			snapshot(ss)
			return
		}
	} else if !ss.State.Live() {
		snapshot(ss)
		return
	}

	keep := time.NewTicker(s.opts.KeepAlive)
	defer keep.Stop()
	poll := time.NewTicker(s.opts.PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-events:
			if !ok {
				return // fell behind: the client reconnects with Last-Event-ID
			}
			if !send(ev) {
				return
			}
		case <-keep.C:
			if !writeBy() {
				return
			}
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || flusher.Flush() != nil {
				return
			}
		case <-poll.C:
			cur, err := s.st.UserSession(r.Context(), user, id)
			if err != nil {
				return
			}
			if cur.State != last {
				if !snapshot(cur) {
					return
				}
			}
		}
	}
}
