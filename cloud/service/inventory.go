package service

import (
	"context"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Inventory of vending slots. A technician counts a slot at restock
// (Restock); each settled vend decrements it in the settlement's own
// transaction (store.Settle), never below zero; a start on a slot counted
// at zero is refused with slot.empty (StartSession, checkouts) and the
// phone sees the slot as empty. A count at or below its threshold raises
// a low-stock alert (code stock.low), at zero stock.empty, and a vend the
// count did not have (the count was wrong: clamped at zero) stock.short —
// through the alert engine (RaiseAlert), which keeps one open alert per
// slot and code; a restock resolves those its count no longer calls for.
// A slot no restock has counted is not tracked and never sold out.

// ErrSlotEmpty answers a start on a sold-out slot.
var ErrSlotEmpty = vend.E(vend.Conflict, "slot.empty", "sessions: the slot is sold out")

// Inventory alerts: all of kind stock.low (AlertLowStock) in the alert
// engine, one open per slot and reason (the Ref of the dedup key), with
// these codes.
const (
	StockCodeLow   = "stock.low"   // Ref "": at or below the slot's threshold
	StockCodeEmpty = "stock.empty" // Ref "empty": sold out (critical)
	StockCodeShort = "stock.short" // Ref "short": a vend settled on a slot counted at zero: the count was wrong
)

// stockAlerts returns the alerts a slot's count calls for (raise) and the
// ones it clears (resolve), all with the slot's operator's dedup keys.
func stockAlerts(operator string, st store.SlotStock, clamped uint64) (raise, resolve []AlertInput) {
	at := fmt.Sprintf("%s/%s/%s", st.Device, st.Machine, st.Slot)
	base := AlertInput{Operator: operator, Kind: AlertLowStock, Device: st.Device, Machine: st.Machine, Slot: st.Slot}
	low, empty, short := base, base, base
	low.Code, low.Summary = StockCodeLow, fmt.Sprintf("slot %s has %d left (alert at %d)", at, st.Stock, st.LowAt)
	empty.Ref, empty.Code, empty.Severity, empty.Summary = "empty", StockCodeEmpty, "critical", fmt.Sprintf("slot %s is sold out", at)
	short.Ref, short.Code = "short", StockCodeShort
	short.Summary = fmt.Sprintf("slot %s sold %d more than counted (%d since the last restock): recount it", at, clamped, st.Short)
	switch {
	case st.Empty():
		raise = append(raise, empty)
	case st.Low():
		raise = append(raise, low)
		resolve = append(resolve, empty)
	default:
		resolve = append(resolve, low, empty)
	}
	if clamped > 0 {
		raise = append(raise, short)
	} else if st.Short == 0 {
		resolve = append(resolve, short)
	}
	return raise, resolve
}

// stockSettled raises the alerts a settled vend's stock change calls for.
// A failure is logged, not returned: the money has settled, and the
// inventory page shows the count.
func (s *Service) stockSettled(ctx context.Context, ch *store.StockChange) {
	if ch == nil {
		return
	}
	d, err := s.st.GetDevice(ctx, ch.After.Device)
	if err != nil {
		s.log.Error("service: inventory alert: device", "device", ch.After.Device, "err", err)
		return
	}
	raise, _ := stockAlerts(d.OperatorID, ch.After, ch.Clamped)
	for _, a := range raise {
		s.log.Warn("service: inventory alert", "code", a.Code, "device", a.Device, "machine", a.Machine, "slot", a.Slot, "stock", ch.After.Stock)
		if err := s.RaiseAlert(ctx, a); err != nil {
			s.log.Error("service: inventory alert not raised", "code", a.Code, "device", a.Device, "slot", a.Slot, "err", err)
		}
	}
}

// SlotInventory is one vending slot with its count.
type SlotInventory struct {
	Device      string        `json:"device"`
	DeviceName  string        `json:"device_name"`
	Machine     string        `json:"machine"`
	MachineName string        `json:"machine_name"`
	Slot        string        `json:"slot"`
	SlotName    string        `json:"slot_name"`
	Price       vend.Price    `json:"price"`
	Currency    vend.Currency `json:"currency"`
	Tracked     bool          `json:"tracked"` // counted by a restock; untracked slots are never sold out
	Stock       uint64        `json:"stock"`
	LowAt       uint64        `json:"low_at"`
	Short       uint64        `json:"short"` // items settled beyond the count since the last restock
	Empty       bool          `json:"empty"`
	Low         bool          `json:"low"`
	RestockedBy string        `json:"restocked_by,omitempty"`
	RestockedAt time.Time     `json:"restocked_at,omitzero"`
}

// Inventory lists every vending slot of the actor's operator's devices
// (PermView), or of one device when device is not empty, with its count.
// Errors: auth.forbidden, device.not_found.
func (s *Service) Inventory(ctx context.Context, device string) ([]SlotInventory, error) {
	a, err := s.operatorOf(ctx, PermView)
	if err != nil {
		return nil, err
	}
	ds, err := s.st.OperatorDevices(ctx, a.Operator)
	if err != nil {
		return nil, err
	}
	out := []SlotInventory{}
	found := false
	for _, d := range ds {
		if device != "" && d.ID != device {
			continue
		}
		found = true
		stocks, err := s.slotStocks(ctx, d.ID)
		if err != nil {
			return nil, err
		}
		for _, m := range d.Machines {
			for _, sl := range m.Slots {
				si := SlotInventory{Device: d.ID, DeviceName: d.Name, Machine: m.ID, MachineName: m.Name, Slot: sl.ID, SlotName: sl.Name,
					Price: sl.Price, Currency: m.Currency}
				if st, ok := stocks[m.ID+"/"+sl.ID]; ok {
					si.Tracked, si.Stock, si.LowAt, si.Short, si.Empty, si.Low = true, st.Stock, st.LowAt, st.Short, st.Empty(), st.Low()
					si.RestockedBy, si.RestockedAt = st.RestockedBy, st.RestockedAt
				}
				out = append(out, si)
			}
		}
	}
	if device != "" && !found {
		return nil, errf(store.ErrDeviceNotFound, "%q", device)
	}
	return out, nil
}

// Restock sets a slot's count and low-stock threshold on one of the
// actor's operator's devices (PermOperate: technician and above) and
// writes the audit log (inventory.restock, the count before and after).
// Errors: auth.forbidden, device.not_found, slot.not_found, store.input
// (above store.MaxStock).
func (s *Service) Restock(ctx context.Context, device, machine, slot string, stock, lowAt uint64) (store.SlotStock, error) {
	a, err := s.operatorOf(ctx, PermOperate)
	if err != nil {
		return store.SlotStock{}, err
	}
	before, tracked, after, err := s.st.Restock(ctx, a.Operator, store.Restock{Device: device, Machine: machine, Slot: slot,
		Stock: stock, LowAt: lowAt, By: a.Account})
	if err != nil {
		return store.SlotStock{}, err
	}
	var b any
	if tracked {
		b = map[string]uint64{"stock": before.Stock, "low_at": before.LowAt, "short": before.Short}
	}
	// The count is the technician's now: alerts it no longer calls for
	// are resolved (an empty or low count still raises its own).
	raise, resolve := stockAlerts(a.Operator, after, 0)
	for _, al := range resolve {
		if err := s.ResolveAlert(ctx, al); err != nil {
			s.log.Error("service: inventory alert not resolved", "code", al.Code, "device", device, "slot", slot, "err", err)
		}
	}
	for _, al := range raise {
		if err := s.RaiseAlert(ctx, al); err != nil {
			s.log.Error("service: inventory alert not raised", "code", al.Code, "device", device, "slot", slot, "err", err)
		}
	}
	s.audited(ctx, a.Operator, "inventory.restock", device+"/"+machine+"/"+slot, b, map[string]uint64{"stock": after.Stock, "low_at": after.LowAt})
	return after, nil
}

// slotStocks returns a device's tracked slots by "machine/slot".
func (s *Service) slotStocks(ctx context.Context, device string) (map[string]store.SlotStock, error) {
	sts, err := s.st.SlotStocks(ctx, device)
	if err != nil {
		return nil, err
	}
	out := make(map[string]store.SlotStock, len(sts))
	for _, st := range sts {
		out[st.Machine+"/"+st.Slot] = st
	}
	return out, nil
}

// checkStock refuses a start on a tracked slot counted at zero.
func (s *Service) checkStock(ctx context.Context, device, machine, slot string) error {
	if slot == "" {
		return nil
	}
	st, tracked, err := s.st.GetSlotStock(ctx, device, machine, slot)
	if err != nil {
		return err
	}
	if tracked && st.Empty() {
		return errf(ErrSlotEmpty, "slot %s of machine %s", slot, machine)
	}
	return nil
}
