package service

import (
	"context"
	"fmt"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Inventory of vending slots. A technician counts a slot at restock
// (Restock); each settled vend decrements it in the settlement's own
// transaction (store.Settle), never below zero; a start on a slot counted
// at zero is refused with slot.empty (StartSession, checkouts) and the
// phone sees the slot as empty. A vend that leaves a slot at or below its
// threshold raises stock.low, at zero stock.empty, and one that the count
// did not have (the count was wrong: clamped at zero) stock.short —
// through the alert engine (UseStockAlerts), which keeps one open alert
// per kind and slot. A slot no restock has counted is not tracked and
// never sold out.

// ErrSlotEmpty answers a start on a sold-out slot.
var ErrSlotEmpty = vend.E(vend.Conflict, "slot.empty", "sessions: the slot is sold out")

// Stock alert kinds (StockAlert.Kind).
const (
	AlertStockLow   = "stock.low"   // at or below the slot's threshold
	AlertStockEmpty = "stock.empty" // sold out
	AlertStockShort = "stock.short" // a vend settled on a slot counted at zero: the count was wrong
)

// StockAlert is one inventory alert for the alert engine.
type StockAlert struct {
	Kind    string // AlertStockLow, AlertStockEmpty or AlertStockShort
	Device  string
	Machine string
	Slot    string
	Stock   uint64 // the slot's count now
	LowAt   uint64 // its threshold
	Short   uint64 // items settled beyond the count since the last restock
	Message string // one line for a person
}

// StockAlerter raises an inventory alert; idempotent while one of the
// same kind and slot is open (the alert engine's dedup key).
type StockAlerter interface {
	RaiseStockAlert(ctx context.Context, a StockAlert) error
}

// StockAlerterFunc adapts a function to StockAlerter.
type StockAlerterFunc func(ctx context.Context, a StockAlert) error

// RaiseStockAlert calls f.
func (f StockAlerterFunc) RaiseStockAlert(ctx context.Context, a StockAlert) error { return f(ctx, a) }

// UseStockAlerts sends inventory alerts to a; until it is called they are
// only logged.
func (s *Service) UseStockAlerts(a StockAlerter) {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	s.ops.alerts = a
}

// stockSettled raises the alerts a settled vend's stock change calls for.
// A failure is logged, not returned: the money has settled, and the next
// vend or the inventory page shows the count again.
func (s *Service) stockSettled(ctx context.Context, ch *store.StockChange) {
	if ch == nil {
		return
	}
	st := ch.After
	var as []StockAlert
	at := fmt.Sprintf("%s/%s/%s", st.Device, st.Machine, st.Slot)
	if ch.Clamped > 0 {
		as = append(as, StockAlert{Kind: AlertStockShort, Message: fmt.Sprintf("slot %s sold %d more than counted (%d since the last restock): recount it", at, ch.Clamped, st.Short)})
	}
	switch {
	case st.Empty():
		as = append(as, StockAlert{Kind: AlertStockEmpty, Message: fmt.Sprintf("slot %s is sold out", at)})
	case st.Low():
		as = append(as, StockAlert{Kind: AlertStockLow, Message: fmt.Sprintf("slot %s has %d left (threshold %d)", at, st.Stock, st.LowAt)})
	}
	s.ops.mu.Lock()
	al := s.ops.alerts
	s.ops.mu.Unlock()
	for _, a := range as {
		a.Device, a.Machine, a.Slot, a.Stock, a.LowAt, a.Short = st.Device, st.Machine, st.Slot, st.Stock, st.LowAt, st.Short
		s.log.Warn("service: inventory alert", "kind", a.Kind, "device", a.Device, "machine", a.Machine, "slot", a.Slot, "stock", a.Stock)
		if al == nil {
			continue
		}
		if err := al.RaiseStockAlert(ctx, a); err != nil {
			s.log.Error("service: inventory alert not raised", "kind", a.Kind, "device", a.Device, "slot", a.Slot, "err", err)
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
	RestockedAt string        `json:"restocked_at,omitempty"` // RFC 3339
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
					si.RestockedBy, si.RestockedAt = st.RestockedBy, st.RestockedAt.Format("2006-01-02T15:04:05Z07:00")
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
