package service

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/store"
)

// DefaultChannels returns the development sandbox card with a 500.00
// per-payment limit.
func DefaultChannels() []*payments.Guarded {
	return []*payments.Guarded{payments.Guard(&payments.Sandbox{MaxPayment: 50000}, payments.Limits{Max: 50000}, 0, nil)}
}

// PaymentSources lists the wallet (the default) and every channel.
func (s *Service) PaymentSources() phoneapi.PaymentSourceList {
	out := phoneapi.PaymentSourceList{Sources: []phoneapi.PaymentSource{{ID: "wallet", Kind: phoneapi.SourceWallet, Name: "Wallet", Default: true}}}
	for _, c := range s.router.Channels() {
		out.Sources = append(out.Sources, c.Source())
	}
	return out
}

// Wallet returns the user's available and held balances in the wallet
// currency.
func (s *Service) Wallet(ctx context.Context, user string) (phoneapi.Wallet, error) {
	avail, err := s.st.Wallet(ctx, user, s.opts.Currency)
	if err != nil {
		return phoneapi.Wallet{}, err
	}
	held, err := s.st.Balance(ctx, store.UserHolds, user, s.opts.Currency)
	if err != nil {
		return phoneapi.Wallet{}, err
	}
	return phoneapi.Wallet{Available: avail, Held: held}, nil
}

// PhoneSession converts a stored session to the phone API's, with the last
// progress this instance saw overlaid on a live session.
func (s *Service) PhoneSession(ss store.Session) phoneapi.Session {
	out := phoneapi.Session{
		ID: ss.ID, Device: phoneapi.DeviceID(ss.Device), Machine: phoneapi.MachineID(ss.Machine),
		Slot: phoneapi.MachineID(ss.Slot), State: phoneapi.SessionState(ss.State),
		Unit: ss.Unit, Price: ss.Price, Currency: ss.Currency, Source: "wallet",
		Hold:     vend.Amount{Minor: ss.Hold, Currency: ss.Currency},
		CapUnits: ss.CapUnits, Units: ss.Units,
		Amount:    vend.Amount{Minor: ss.Captured + ss.LateAmount, Currency: ss.Currency}, // a late capture included
		Outcome:   ss.Outcome,
		CreatedAt: ss.Created.UTC(), StartedAt: utc(ss.Started), EndedAt: utc(ss.Ended),
	}
	if ss.Outcome == vend.OutcomeFault {
		out.FaultCode = ss.Fault
	}
	out.Relay = phoneRelay(ss)
	if ss.State.Live() {
		if p := s.Hub.Progress(ss.ID); p != nil {
			out.Units, out.Amount = p.Units, p.Amount
		}
	}
	return out
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// Receipt returns the receipt of one of user's settled or refunded
// sessions. Errors: session.not_found, session.not_settled.
func (s *Service) Receipt(ctx context.Context, user string, id vend.SessionID) (phoneapi.Receipt, error) {
	ss, err := s.st.UserSession(ctx, user, id)
	if err != nil {
		return phoneapi.Receipt{}, err
	}
	if ss.State != store.Settled && ss.State != store.Refunded {
		return phoneapi.Receipt{}, vend.Errorf(ErrNotSettled, "session is %s", ss.State)
	}
	cur := ss.Currency
	refunds, err := s.st.SessionRefunds(ctx, ss.ID)
	if err != nil {
		return phoneapi.Receipt{}, err
	}
	var refunded int64
	var parts []store.Refund
	for _, r := range refunds {
		refunded += r.Wallet
		for _, f := range r.Refunds {
			if f.State != store.RefundFailed {
				refunded += f.Amount.Minor
			}
			parts = append(parts, f)
		}
	}
	rc := phoneapi.Receipt{
		Number: "R-" + ss.ID.String(), Session: ss.ID,
		Device: phoneapi.DeviceID(ss.Device), Machine: phoneapi.MachineID(ss.Machine), Slot: phoneapi.MachineID(ss.Slot),
		Units: ss.Units, Unit: ss.Unit, Price: ss.Price, Currency: cur,
		Held:     vend.Amount{Minor: ss.Hold, Currency: cur},
		Captured: vend.Amount{Minor: ss.Captured, Currency: cur},
		Released: vend.Amount{Minor: ss.Released, Currency: cur},
		Outcome:  ss.Outcome, Source: "wallet",
		StartedAt: utc(ss.Started), EndedAt: ss.Ended.UTC(), SettledAt: ss.Updated.UTC(),
	}
	if refunded > 0 {
		rc.Refunded = vend.Amount{Minor: refunded, Currency: cur}
	}
	if len(parts) > 0 {
		rc.Refunds = s.refundParts(parts)
	}
	return rc, nil
}

// machineStates reads the machines' states from a device's last telemetry.
func machineStates(tel json.RawMessage) map[string]string {
	var t struct {
		Machines []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"machines"`
	}
	_ = json.Unmarshal(tel, &t)
	m := map[string]string{}
	for _, x := range t.Machines {
		m[x.ID] = x.State
	}
	return m
}

// DeviceView returns a device as the phone sees it: a device that is
// disabled or not online is offline, and so are its machines; otherwise
// machines take the state of the last telemetry (idle when unknown).
//
// Machines, prices and states are shown only to a phone at the device:
// proximity is a proximity ID heard from it, which must resolve to id in
// the accepted windows (proximity.unknown, proximity.expired otherwise).
// Without one ("") the answer has only the device's public fields (id,
// name, state) and no machines. Errors: device.not_found, the resolver's.
func (s *Service) DeviceView(ctx context.Context, id, proximity string) (phoneapi.DeviceResponse, error) {
	if proximity != "" {
		pid, err := proxid.ParseID(proximity)
		if err != nil {
			return phoneapi.DeviceResponse{}, err
		}
		m, err := s.Res.Resolve(pid)
		if err != nil {
			return phoneapi.DeviceResponse{}, err
		}
		if m.Device != id {
			return phoneapi.DeviceResponse{}, errf(ErrProximityUnknown, "%s does not belong to device %s", pid, id)
		}
	}
	d, err := s.st.GetDevice(ctx, id)
	if err != nil {
		return phoneapi.DeviceResponse{}, err
	}
	stocks, err := s.slotStocks(ctx, d.ID)
	if err != nil {
		return phoneapi.DeviceResponse{}, err
	}
	v := deviceView(d, stocks)
	if proximity == "" {
		v.Machines = []phoneapi.Machine{}
	}
	return v, nil
}

func deviceView(d store.Device, stocks map[string]store.SlotStock) phoneapi.DeviceResponse {
	offline := !d.Online || d.State == store.DeviceDisabled
	states := machineStates(d.Telemetry)
	out := phoneapi.DeviceResponse{Device: phoneapi.Device{ID: phoneapi.DeviceID(d.ID), Name: d.Name, State: phoneapi.DeviceOffline}, Machines: []phoneapi.Machine{}}
	anyIdle, first := false, phoneapi.DeviceState("")
	for _, m := range d.Machines {
		st := phoneapi.MachineIdle
		if offline {
			st = phoneapi.MachineOffline
		} else if v := phoneapi.MachineState(states[m.ID]); v.Valid() {
			st = v
		}
		if st == phoneapi.MachineIdle {
			anyIdle = true
		}
		if first == "" {
			first = phoneapi.DeviceState(st)
		}
		pm := phoneapi.Machine{ID: phoneapi.MachineID(m.ID), Kind: m.Kind, Name: m.Name, Unit: m.Unit, Currency: m.Currency, Price: m.Price, State: st, Slots: []phoneapi.Slot{}}
		for _, sl := range m.Slots {
			ps := phoneapi.Slot{ID: phoneapi.MachineID(sl.ID), Name: sl.Name, Price: sl.Price, Available: true}
			if st, ok := stocks[m.ID+"/"+sl.ID]; ok { // counted at restock (inventory.go)
				n := st.Stock
				ps.Stock, ps.Empty, ps.Available = &n, st.Empty(), !st.Empty()
			}
			pm.Slots = append(pm.Slots, ps)
		}
		out.Machines = append(out.Machines, pm)
	}
	switch {
	case offline:
	case anyIdle || first == "":
		out.Device.State = phoneapi.DeviceIdle
	default:
		out.Device.State = first
	}
	return out
}

func machineOf(d store.Device, id string) (store.Machine, bool) {
	for _, m := range d.Machines {
		if m.ID == id {
			return m, true
		}
	}
	return store.Machine{}, false
}

// ErrSlotRequired is a start on a machine with slots that names none.
var ErrSlotRequired = vend.E(vend.Invalid, "request.field", "sessions: invalid field: slot")

func errf(e *vend.Error, format string, args ...any) error {
	return vend.Errorf(e, "%s", fmt.Sprintf(format, args...))
}
