package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"slices"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// choose picks the device, machine and slot: from -device/-pick-nearest,
// -machine and -slot, asking for whatever is missing.
func (m *Main) choose(ctx context.Context, nearby []Nearby) (target, error) {
	var cands []target
	switch {
	case m.Device != "":
		i := slices.IndexFunc(nearby, func(n Nearby) bool { return string(n.Device.ID) == m.Device })
		if i < 0 {
			var ids []string
			for _, n := range nearby {
				ids = append(ids, string(n.Device.ID))
			}
			return target{}, vend.Errorf(ErrNoMachine, "device %s not heard (in range: %s)", m.Device, strings.Join(ids, ", "))
		}
		cands = rows(nearby[i : i+1])
	case m.PickNearest:
		cands = rows(nearby) // strongest first; the machine filter below picks within
	default:
		cands = rows(nearby)
	}
	if m.Machine != "" {
		cands = slices.DeleteFunc(cands, func(t target) bool { return string(t.m.ID) != m.Machine })
		if len(cands) == 0 {
			return target{}, vend.Errorf(ErrNoMachine, "no machine %s in range", m.Machine)
		}
	}
	var t target
	switch {
	case len(cands) == 1:
		t = cands[0]
	case m.PickNearest || m.Device != "" && m.Machine == "" && !m.canAsk():
		// The nearest device's first idle machine (else its first one).
		dev := cands[0].n.Device.ID
		t = cands[0]
		for _, c := range cands {
			if c.n.Device.ID == dev && c.m.State == phoneapi.MachineIdle {
				t = c
				break
			}
		}
	default:
		all := rows(nearby)
		s, err := m.prompt(ctx, fmt.Sprintf("machine [1-%d]: ", len(all)), false)
		if err != nil {
			return target{}, vend.Errorf(ErrChoice, "no machine chosen: give -device or -pick-nearest (and -machine)")
		}
		i, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || i < 1 || i > len(all) {
			return target{}, vend.Errorf(ErrChoice, "%q is not a machine number 1-%d", s, len(all))
		}
		t = all[i-1]
	}
	if len(t.m.Slots) > 0 {
		slot := m.Slot
		if slot == "" {
			s, err := m.prompt(ctx, "slot: ", false)
			if err != nil {
				return target{}, vend.Errorf(ErrChoice, "no slot chosen: give -slot")
			}
			slot = strings.TrimSpace(s)
		}
		i := slices.IndexFunc(t.m.Slots, func(s phoneapi.Slot) bool { return string(s.ID) == slot })
		if i < 0 {
			return target{}, vend.Errorf(ErrChoice, "machine %s has no slot %q", t.m.ID, slot)
		}
		if !t.m.Slots[i].Available {
			return target{}, vend.Errorf(ErrMachineUnavailable, "slot %s of %s is empty or disabled", slot, t.m.ID)
		}
		t.slot = &t.m.Slots[i]
	} else if m.Slot != "" {
		return target{}, vend.Errorf(ErrChoice, "machine %s has no slots (-slot %s)", t.m.ID, m.Slot)
	}
	return t, nil
}

func (m *Main) canAsk() bool { return m.input != nil && m.input.r != nil }

// price is what one unit costs on t: the slot's price for vending.
func (t target) price() phoneapi.Price {
	if t.slot != nil {
		return t.slot.Price
	}
	return t.m.Price
}

// capFor returns the cap: -cap-units, -cap-amount, or asked; a machine
// that sells whole things (a cycle, an item) defaults to one.
func (m *Main) capFor(ctx context.Context, t target) (phoneapi.Cap, error) {
	switch {
	case m.CapUnits > 0:
		return phoneapi.Cap{Units: m.CapUnits}, nil
	case m.CapAmount != "":
		minor, _ := parseAmount(m.CapAmount)
		return phoneapi.Cap{Amount: &vend.Amount{Minor: minor, Currency: t.m.Currency}}, nil
	case t.m.Unit == vend.UnitCycle || t.m.Unit == vend.UnitItem:
		return phoneapi.Cap{Units: 1}, nil
	}
	s, err := m.prompt(ctx, fmt.Sprintf("spend at most (%s, e.g. 2.00): ", t.m.Currency), false)
	if err != nil {
		return phoneapi.Cap{}, vend.Errorf(ErrChoice, "no cap chosen: give -cap-units or -cap-amount")
	}
	minor, err := parseAmount(s)
	if err != nil {
		return phoneapi.Cap{}, vend.Errorf(ErrChoice, "cap: %v", err)
	}
	return phoneapi.Cap{Amount: &vend.Amount{Minor: minor, Currency: t.m.Currency}}, nil
}

// capCost is what the cap holds at most, for messages.
func capCost(c phoneapi.Cap, p phoneapi.Price, cur phoneapi.Currency) vend.Amount {
	if c.Amount != nil {
		return *c.Amount
	}
	n, _ := p.Cost(c.Units)
	return vend.Amount{Minor: n, Currency: cur}
}

// buy runs one session on t: StartSession, follow its events with a
// progress view, stop on request, then GetReceipt.
func (m *Main) buy(ctx context.Context, t target) error {
	c, err := m.capFor(ctx, t)
	if err != nil {
		return err
	}
	if m.WalletBefore, err = m.wallet(ctx); err != nil {
		return err
	}
	shown := t.price()
	req := &phoneapi.StartSessionRequest{
		Device: t.n.Device.ID, Machine: t.m.ID, ProximityID: t.n.ProximityID, Cap: c, Source: m.Source,
		ExpectedPrice: &shown,
		// Relay is offered only to a phone that can carry the grant: it
		// heard the board's offline-capable bit and has a BLE central.
		CanRelay: t.n.OfflineCapable && m.central() != nil,
	}
	if t.slot != nil {
		req.Slot = t.slot.ID
	}
	what := string(req.Device) + "/" + string(req.Machine)
	if req.Slot != "" {
		what += "/" + string(req.Slot)
	}
	fmt.Fprintf(m.out, "starting %s: cap %s (up to %s), paid from %s (wallet %s)\n",
		what, capText(c, t.m.Unit), capCost(c, t.price(), t.m.Currency), m.Source, m.WalletBefore.Available)

	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	s, err := m.start(ctx, req)
	var ae *phoneapi.APIError
	if err != nil && vend.CodeOf(err) == "device.no_reply" && errors.As(err, &ae) && ae.Session != nil {
		// The machine has not answered, but the session exists and money
		// is held: it may still start until its start-by bound passes.
		// Never say "nothing was charged" before the session is final.
		s, err = ae.Session, nil
		if s.Relay != nil {
			return m.buyRelayed(ctx, t, s)
		}
		fmt.Fprintf(m.out, "waiting for the machine: session %s is %s and %s is held; the machine may still start.\n", s.ID, s.State, s.Hold)
		if m.CancelNoReply {
			if cur, cerr := m.cancel(ctx, s.ID); cerr != nil {
				return cerr
			} else {
				s = cur
			}
			fmt.Fprintf(m.out, "cancel sent: waiting for the machine or the start-by bound to confirm it\n")
		} else if m.input.terminal() {
			fmt.Fprintln(m.out, "press Ctrl-C to cancel")
		}
	}
	if err != nil {
		return mapAPIError(fmt.Errorf("phone: start %s: %w", what, err), func() string {
			if vend.CodeOf(err) == "funds.insufficient" {
				return fmt.Sprintf("%s available, the cap holds up to %s", m.WalletBefore.Available, capCost(c, t.price(), t.m.Currency))
			}
			if errors.As(err, &ae) && ae.Price != nil {
				one, _ := ae.Price.Cost(uint64(ae.Price.Per))
				return fmt.Sprintf("now %s per %s (was %s)", vend.Amount{Minor: one, Currency: t.m.Currency},
					formatUnits(uint64(ae.Price.Per), t.m.Unit), vend.Amount{Minor: shown.Minor, Currency: t.m.Currency})
			}
			return ""
		})
	}
	m.Session = s
	fmt.Fprintf(m.out, "session %s %s: holding %s for up to %s\n", s.ID, s.State, s.Hold, formatUnits(s.CapUnits, s.Unit))
	if s.Relay != nil {
		return m.buyRelayed(ctx, t, s)
	}

	final, err := m.follow(ctx, s)
	if err != nil {
		return err
	}
	return m.finish(ctx, final)
}

// buyRelayed runs a session whose grant the phone relays to the board
// over BLE (relay.go), then prints the receipt as finish does.
func (m *Main) buyRelayed(ctx context.Context, t target, s *phoneapi.Session) error {
	m.Session = s
	final, err := m.relay(ctx, t, s)
	if err != nil {
		return err
	}
	return m.finish(ctx, final)
}

// finish reports a session that ended: an error unless it settled or was
// refunded, else the receipt and the wallet.
func (m *Main) finish(ctx context.Context, final *phoneapi.Session) error {
	m.Session = final
	if final.State != phoneapi.StateSettled && final.State != phoneapi.StateRefunded {
		msg := fmt.Sprintf("session %s ended %s", final.ID, final.State)
		if final.Outcome.Valid() {
			msg += " (" + final.Outcome.String() + ")"
		}
		if final.FaultCode != "" {
			msg += " fault " + final.FaultCode
		}
		switch final.State {
		case phoneapi.StateFailed, phoneapi.StateExpired, phoneapi.StateReleased, phoneapi.StateVoided:
			msg += "; the hold was released, nothing was charged"
		default:
			msg += fmt.Sprintf("; charged %s", final.Amount)
		}
		return vend.Errorf(ErrSession, "%s", msg)
	}
	r, err := m.receipt(ctx, final.ID)
	if err != nil {
		return err
	}
	m.Receipt = r
	if m.WalletAfter, err = m.wallet(ctx); err != nil {
		return err
	}
	fmt.Fprint(m.out, formatReceipt(r))
	fmt.Fprintf(m.out, "wallet: %s before, %s after\n", m.WalletBefore.Available, m.WalletAfter.Available)
	if m.JSONReceipt {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, string(b))
	}
	return nil
}

// cancel stops a pending session (StopSession): the cloud sends the board
// a stop, and the board refuses the grant afterwards; the session stays
// pending until then.
func (m *Main) cancel(ctx context.Context, id phoneapi.SessionID) (*phoneapi.Session, error) {
	key := phoneapi.NewIdempotencyKey()
	s, err := retry(ctx, func(ctx context.Context) (*phoneapi.Session, error) { return m.client.StopSession(ctx, key, id) })
	if err != nil {
		return nil, fmt.Errorf("phone: cancel %s: %w", id, err)
	}
	return s, nil
}

func capText(c phoneapi.Cap, u phoneapi.Unit) string {
	if c.Amount != nil {
		return c.Amount.String()
	}
	return formatUnits(c.Units, u)
}

// start calls StartSession with one idempotency key for all retries. A
// proximity ID that expired while the user chose (windows are 2^k s) is
// replaced by a fresh one from a short rescan, with a new key, once.
func (m *Main) start(ctx context.Context, req *phoneapi.StartSessionRequest) (*phoneapi.Session, error) {
	for attempt := 0; ; attempt++ {
		key := phoneapi.NewIdempotencyKey()
		s, err := retry(ctx, steppedUp(m, phoneapi.ScopeSession, func(ctx context.Context) (*phoneapi.Session, error) { return m.client.StartSession(ctx, key, req) }))
		if vend.CodeOf(err) != "proximity.expired" || attempt > 0 {
			return s, err
		}
		tab, lerr := m.listen(ctx)
		if lerr != nil {
			return nil, err
		}
		var newest *heard
		for _, h := range tab {
			r, rerr := m.client.Resolve(ctx, &phoneapi.ResolveRequest{ProximityID: h.id})
			if rerr == nil && r.Device.ID == req.Device && (newest == nil || h.last.After(newest.last)) {
				newest = h
			}
		}
		if newest == nil {
			return nil, vend.Errorf(ErrNoMachine, "%s went out of range", req.Device)
		}
		req.ProximityID = newest.id
	}
}

// follow reads the session's events until it is final, showing progress.
// It stops the session on Enter, Ctrl-C or -stop-after-units, and
// reconnects (with Last-Event-ID) when the stream drops.
func (m *Main) follow(ctx context.Context, s *phoneapi.Session) (*phoneapi.Session, error) {
	m.inSession.Store(true)
	defer m.inSession.Store(false)
	view := m.newView(s)
	defer view.Finish()
	if m.input.terminal() {
		fmt.Fprintln(m.out, "press Enter or Ctrl-C to stop")
	}

	evc := make(chan phoneapi.Event, 16)
	errc := make(chan error, 1)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go m.readEvents(rctx, s.ID, evc, errc)

	lines := make(chan struct{}, 1)
	if m.canAsk() {
		go func() {
			for {
				if _, err := m.input.ReadLine(rctx, false); err != nil {
					return
				}
				select {
				case lines <- struct{}{}:
				default:
				}
			}
		}()
	}

	stopped := false
	stop := func(why string) error {
		if stopped {
			return nil
		}
		stopped = true
		view.Note("stopping (" + why + ")")
		key := phoneapi.NewIdempotencyKey()
		_, err := retry(ctx, func(ctx context.Context) (*phoneapi.Session, error) { return m.client.StopSession(ctx, key, s.ID) })
		if err != nil && vend.KindOf(err) != vend.Conflict {
			return fmt.Errorf("phone: stop %s: %w", s.ID, err)
		}
		return nil
	}
	cur := *s
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("phone: session %s has not ended within %s (last state %s)", s.ID, m.Timeout, cur.State)
			}
			return nil, ctx.Err()
		case err := <-errc:
			return nil, fmt.Errorf("phone: session %s events: %w", s.ID, err)
		case <-m.stopReq:
			if err := stop("Ctrl-C"); err != nil {
				return nil, err
			}
		case <-lines:
			if err := stop("Enter"); err != nil {
				return nil, err
			}
		case ev := <-evc:
			switch ev.Type {
			case phoneapi.EventProgress:
				p := ev.Progress
				cur.Units, cur.Amount, cur.State = p.Units, p.Amount, p.State
			case phoneapi.EventState, phoneapi.EventEnded:
				cur = *ev.Session
			}
			view.Update(cur)
			if m.StopAfterUnits > 0 && cur.Units >= m.StopAfterUnits && !cur.State.Final() && cur.State != phoneapi.StateEnding {
				if err := stop(fmt.Sprintf("%s reached", formatUnits(m.StopAfterUnits, cur.Unit))); err != nil {
					return nil, err
				}
			}
			if ev.Type == phoneapi.EventEnded || cur.State.Final() {
				return &cur, nil
			}
		}
	}
}

// readEvents streams the session's events into evc, reconnecting after
// drops with the last event ID, until ctx ends or the "ended" event.
func (m *Main) readEvents(ctx context.Context, id phoneapi.SessionID, evc chan<- phoneapi.Event, errc chan<- error) {
	last := ""
	failures := 0
	for ctx.Err() == nil {
		st, err := m.client.SessionEvents(ctx, id, last)
		if err != nil {
			failures++
			if vend.KindOf(err) != vend.Transient || failures > 10 {
				errc <- err
				return
			}
			sleep(ctx, time.Second)
			continue
		}
		for {
			ev, err := st.Next()
			if errors.Is(err, phoneapi.ErrResponse) {
				continue // one undecodable event; the stream goes on
			}
			if err != nil { // a drop (the server closes only after "ended")
				last = st.LastEventID()
				retryIn := st.Retry()
				st.Close()
				if retryIn <= 0 {
					retryIn = time.Second
				}
				sleep(ctx, retryIn)
				break
			}
			failures = 0
			select {
			case evc <- ev:
			case <-ctx.Done():
				st.Close()
				return
			}
			if ev.Type == phoneapi.EventEnded {
				st.Close()
				return
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// receipt fetches the receipt, waiting while the cloud settles
// (session.not_settled).
func (m *Main) receipt(ctx context.Context, id phoneapi.SessionID) (*phoneapi.Receipt, error) {
	for {
		r, err := retry(ctx, func(ctx context.Context) (*phoneapi.Receipt, error) { return m.client.GetReceipt(ctx, id) })
		if err == nil {
			return r, nil
		}
		if vend.CodeOf(err) != "session.not_settled" {
			return nil, fmt.Errorf("phone: receipt %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("phone: receipt %s: not settled within %s", id, m.Timeout)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
