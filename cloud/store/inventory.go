package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
)

// MaxStock is the most items one slot's count may say (a restock above it
// is ErrInput): far more than any spiral holds, small enough that a typo
// of several digits is caught.
const MaxStock = 10000

// SlotStock is one vending slot's counted stock. A slot is tracked once a
// restock has counted it; an untracked slot is never sold out.
type SlotStock struct {
	Device      string
	Machine     string
	Slot        string
	Stock       uint64    // items in the slot: the last count less the items settled since, never below zero
	LowAt       uint64    // low-stock threshold: a vend that leaves Stock at or below it raises the alert; 0: none
	Short       uint64    // items settled while Stock was already zero since the last restock (the count was wrong)
	RestockedBy string    // the operator account that counted
	RestockedAt time.Time // when it was counted (the cloud's clock)
	UpdatedAt   time.Time // the last count or decrement
}

// Empty reports whether the slot is sold out.
func (s SlotStock) Empty() bool { return s.Stock == 0 }

// Low reports whether the slot is at or below its low-stock threshold.
func (s SlotStock) Low() bool { return s.LowAt > 0 && s.Stock <= s.LowAt }

// StockChange is what one settled vend did to its slot's count.
type StockChange struct {
	After   SlotStock // the slot after the decrement
	Vended  uint64    // items the report says left the machine
	Clamped uint64    // of Vended, items the count did not have (Stock was already zero): clamped, counted in Short
}

// Restock is one count of a slot at restock.
type Restock struct {
	Device  string
	Machine string
	Slot    string
	Stock   uint64 // items now in the slot, 0..MaxStock
	LowAt   uint64 // low-stock threshold, 0 (none)..MaxStock
	By      string // operator account id that counted, for the record
}

const stockCols = `device_id, machine_id, slot_id, stock, low_at, short, restocked_by, restocked_ms, updated_ms`

func scanStock(sc interface{ Scan(...any) error }) (SlotStock, error) {
	var st SlotStock
	var stock, low, short, restocked, updated int64
	if err := sc.Scan(&st.Device, &st.Machine, &st.Slot, &stock, &low, &short, &st.RestockedBy, &restocked, &updated); err != nil {
		return SlotStock{}, err
	}
	st.Stock, st.LowAt, st.Short = uint64(stock), uint64(low), uint64(short)
	st.RestockedAt, st.UpdatedAt = time.UnixMilli(restocked).UTC(), time.UnixMilli(updated).UTC()
	return st, nil
}

// SlotStocks returns the tracked slots of device, ordered by machine and
// slot. Untracked slots are absent. It does not check the device's owner:
// the phone's view and the start check read it too.
func (s *Store) SlotStocks(ctx context.Context, device string) ([]SlotStock, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+stockCols+` FROM slot_stock WHERE device_id = $1 ORDER BY machine_id, slot_id`, device)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []SlotStock
	for rows.Next() {
		st, err := scanStock(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// GetSlotStock returns one slot's stock; tracked is false (and the
// SlotStock zero but for its names) for a slot no restock has counted.
func (s *Store) GetSlotStock(ctx context.Context, device, machine, slot string) (st SlotStock, tracked bool, err error) {
	st, err = scanStock(s.db.QueryRowContext(ctx, `SELECT `+stockCols+` FROM slot_stock
		WHERE device_id = $1 AND machine_id = $2 AND slot_id = $3`, device, machine, slot))
	if errors.Is(err, sql.ErrNoRows) {
		return SlotStock{Device: device, Machine: machine, Slot: slot}, false, nil
	}
	if err != nil {
		return SlotStock{}, false, err
	}
	return st, true, nil
}

// Restock sets a slot of one of operator's own devices to the counted
// stock and threshold, clearing its Short count, and returns the slot
// before (tracked false: it was not tracked) and after. The count replaces
// whatever the slot said: a vend settling at the same moment is ordered
// before it (and forgotten: the technician counted after it) or after it
// (and decrements the new count). Errors: ErrInput (stock or threshold
// above MaxStock, no account), ErrDeviceNotFound (also for another
// operator's device), ErrSlotNotFound; nothing is written on error.
func (s *Store) Restock(ctx context.Context, operator string, in Restock) (before SlotStock, tracked bool, after SlotStock, err error) {
	if in.Stock > MaxStock || in.LowAt > MaxStock {
		return SlotStock{}, false, SlotStock{}, vend.Errorf(ErrInput, "restock %s/%s/%s: stock %d, threshold %d: want 0-%d",
			clip(in.Device), clip(in.Machine), clip(in.Slot), in.Stock, in.LowAt, MaxStock)
	}
	if in.By == "" {
		return SlotStock{}, false, SlotStock{}, vend.Errorf(ErrInput, "restock: no operator account")
	}
	err = s.tx(ctx, "restock", func(tx *sql.Tx) error {
		if err := ownDevice(ctx, tx, operator, in.Device); err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM machine_slots WHERE device_id = $1 AND machine_id = $2 AND id = $3`,
			in.Device, in.Machine, in.Slot).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrSlotNotFound, "%s/%s/%s", clip(in.Device), clip(in.Machine), clip(in.Slot))
		}
		if err != nil {
			return err
		}
		before, err = scanStock(tx.QueryRowContext(ctx, `SELECT `+stockCols+` FROM slot_stock
			WHERE device_id = $1 AND machine_id = $2 AND slot_id = $3`+s.d.lockRow, in.Device, in.Machine, in.Slot))
		tracked = err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := s.nowMs()
		after, err = scanStock(tx.QueryRowContext(ctx, `INSERT INTO slot_stock (`+stockCols+`)
			VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $7)
			ON CONFLICT (device_id, machine_id, slot_id) DO UPDATE SET stock = excluded.stock, low_at = excluded.low_at,
				short = 0, restocked_by = excluded.restocked_by, restocked_ms = excluded.restocked_ms, updated_ms = excluded.updated_ms
			RETURNING `+stockCols, in.Device, in.Machine, in.Slot, int64(in.Stock), int64(in.LowAt), in.By, now))
		return err
	})
	if err != nil {
		return SlotStock{}, false, SlotStock{}, err
	}
	return before, tracked, after, nil
}

// vendStock decrements a tracked slot by the items a settled report says
// left the machine, inside the settlement's transaction tx (whose usage
// report row makes it once per session). The count never goes below
// zero: items it did not have are clamped and added to Short. It returns
// nil for an untracked slot, a machine without slots or no items.
func (s *Store) vendStock(ctx context.Context, tx *sql.Tx, device, machine, slot string, items uint64) (*StockChange, error) {
	if slot == "" || items == 0 {
		return nil, nil
	}
	if items > 1<<40 {
		return nil, fmt.Errorf("store: vend of %d items from %s/%s/%s", items, device, machine, slot)
	}
	cur, err := scanStock(tx.QueryRowContext(ctx, `SELECT `+stockCols+` FROM slot_stock
		WHERE device_id = $1 AND machine_id = $2 AND slot_id = $3`+s.d.lockRow, device, machine, slot))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	take := min(items, cur.Stock)
	clamped := items - take
	st, err := scanStock(tx.QueryRowContext(ctx, `UPDATE slot_stock SET stock = stock - $1, short = short + $2, updated_ms = $3
		WHERE device_id = $4 AND machine_id = $5 AND slot_id = $6 RETURNING `+stockCols,
		int64(take), int64(clamped), s.nowMs(), device, machine, slot))
	if err != nil {
		return nil, err
	}
	return &StockChange{After: st, Vended: items, Clamped: clamped}, nil
}
