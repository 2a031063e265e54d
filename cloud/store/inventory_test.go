package store_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

func (e *env) restock(slot string, stock, low uint64) store.SlotStock {
	e.t.Helper()
	_, _, after, err := e.s.Restock(e.ctx, e.opA.ID, store.Restock{Device: "dev-a", Machine: "v1", Slot: slot, Stock: stock, LowAt: low, By: "acct-tech"})
	must(e.t, err)
	return after
}

func (e *env) stock(slot string) (store.SlotStock, bool) {
	e.t.Helper()
	st, ok, err := e.s.GetSlotStock(e.ctx, "dev-a", "v1", slot)
	must(e.t, err)
	return st, ok
}

// closedVend starts a vend on v1/slot that the sweeper releases (the
// machine is free again), returning the report the device would send late for one item.
func (e *env) closedVend(slot, key string) (store.Session, func() (store.Settlement, error)) {
	e.t.Helper()
	ss, err := e.start(e.user.ID, "v1", slot, 1, key)
	must(e.t, err)
	e.clk.Add(10 * time.Minute) // the sweeper releases it: the device's report comes late
	exp, err := e.s.ExpireHolds(e.ctx, 0)
	must(e.t, err)
	if len(exp) != 1 {
		e.t.Fatalf("ExpireHolds released %d sessions, want 1", len(exp))
	}
	u, sig := e.usage(ss, 1, vend.OutcomeCompleted)
	return ss, func() (store.Settlement, error) { return e.s.Settle(e.ctx, u, sig) }
}

func TestRestock(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		if _, ok := e.stock("A1"); ok {
			t.Fatal("A1 tracked before any restock")
		}
		before, tracked, after, err := e.s.Restock(e.ctx, e.opA.ID, store.Restock{Device: "dev-a", Machine: "v1", Slot: "A1", Stock: 12, LowAt: 3, By: "acct-1"})
		must(t, err)
		if tracked || before.Stock != 0 || after.Stock != 12 || after.LowAt != 3 || after.RestockedBy != "acct-1" || after.RestockedAt.IsZero() {
			t.Fatalf("first restock: before %+v (tracked %v), after %+v", before, tracked, after)
		}
		before, tracked, after, err = e.s.Restock(e.ctx, e.opA.ID, store.Restock{Device: "dev-a", Machine: "v1", Slot: "A1", Stock: 0, By: "acct-2"})
		must(t, err)
		if !tracked || before.Stock != 12 || after.Stock != 0 || !after.Empty() || after.RestockedBy != "acct-2" {
			t.Fatalf("second restock: before %+v (tracked %v), after %+v", before, tracked, after)
		}

		other, err := e.s.CreateOperator(e.ctx, "Operator B")
		must(t, err)
		for _, c := range []struct {
			name, op string
			in       store.Restock
			code     string
		}{
			{"another operator's device", other.ID, store.Restock{Device: "dev-a", Machine: "v1", Slot: "A1", Stock: 1, By: "x"}, "device.not_found"},
			{"unknown device", e.opA.ID, store.Restock{Device: "nope", Machine: "v1", Slot: "A1", Stock: 1, By: "x"}, "device.not_found"},
			{"unknown slot", e.opA.ID, store.Restock{Device: "dev-a", Machine: "v1", Slot: "Z9", Stock: 1, By: "x"}, "slot.not_found"},
			{"machine without slots", e.opA.ID, store.Restock{Device: "dev-a", Machine: "w1", Slot: "A1", Stock: 1, By: "x"}, "slot.not_found"},
			{"stock above the bound", e.opA.ID, store.Restock{Device: "dev-a", Machine: "v1", Slot: "A1", Stock: store.MaxStock + 1, By: "x"}, "store.input"},
			{"threshold above the bound", e.opA.ID, store.Restock{Device: "dev-a", Machine: "v1", Slot: "A1", Stock: 1, LowAt: store.MaxStock + 1, By: "x"}, "store.input"},
			{"no account", e.opA.ID, store.Restock{Device: "dev-a", Machine: "v1", Slot: "A1", Stock: 1}, "store.input"},
		} {
			_, _, _, err := e.s.Restock(e.ctx, c.op, c.in)
			if err == nil {
				t.Fatalf("%s: Restock accepted", c.name)
			}
			wantCode(t, err, c.code)
		}
		if st, _ := e.stock("A1"); st.Stock != 0 || st.RestockedBy != "acct-2" {
			t.Fatalf("a refused restock wrote: %+v", st)
		}
		sts, err := e.s.SlotStocks(e.ctx, "dev-a")
		must(t, err)
		if len(sts) != 1 || sts[0].Slot != "A1" {
			t.Fatalf("SlotStocks = %+v, want A1 only", sts)
		}
	})
}

// A settled vend decrements its slot once, whatever the deliveries; a vend
// that failed, a water session and an untracked slot count nothing.
func TestSettleDecrementsStock(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 5000)
		e.restock("A1", 5, 4)

		ss, err := e.start(e.user.ID, "v1", "A1", 2, "v-1")
		must(t, err)
		must(t, e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now()))
		u, sig := e.usage(ss, 2, vend.OutcomeCompleted)
		set, err := e.s.Settle(e.ctx, u, sig)
		must(t, err)
		if set.Stock == nil || set.Stock.After.Stock != 3 || set.Stock.Vended != 2 || set.Stock.Clamped != 0 || !set.Stock.After.Low() {
			t.Fatalf("Settle.Stock = %+v, want 3 left of 5, low", set.Stock)
		}
		set, err = e.s.Settle(e.ctx, u, sig) // the same report again
		must(t, err)
		if !set.Duplicate || set.Stock != nil {
			t.Fatalf("duplicate Settle = %+v", set)
		}
		if st, _ := e.stock("A1"); st.Stock != 3 {
			t.Fatalf("stock %d after a duplicate report, want 3", st.Stock)
		}

		// A jam: nothing left the machine.
		ss, err = e.start(e.user.ID, "v1", "A1", 1, "v-2")
		must(t, err)
		must(t, e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now()))
		u, sig = e.usage(ss, 0, vend.OutcomeVendFailed)
		set, err = e.s.Settle(e.ctx, u, sig)
		must(t, err)
		if set.Stock != nil {
			t.Fatalf("vend_failed changed the stock: %+v", set.Stock)
		}
		// An untracked slot.
		ss, err = e.start(e.user.ID, "v1", "A2", 1, "v-3")
		must(t, err)
		must(t, e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now()))
		u, sig = e.usage(ss, 1, vend.OutcomeCompleted)
		set, err = e.s.Settle(e.ctx, u, sig)
		must(t, err)
		if set.Stock != nil {
			t.Fatalf("untracked slot: Stock = %+v", set.Stock)
		}
		if _, ok := e.stock("A2"); ok {
			t.Fatal("a vend made A2 tracked")
		}
		if st, _ := e.stock("A1"); st.Stock != 3 {
			t.Fatalf("A1 stock %d, want 3", st.Stock)
		}
		e.checkLedger()
	})
}

// Concurrent settlements of different vends, each delivered several
// times, decrement exactly once each; the ones the count did not have are
// clamped at zero and counted short.
func TestConcurrentSettlementsDecrementExactly(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, &store.Opts{AckBound: 10 * time.Second})
		e.topUp(e.user.ID, 50000)
		const n, start = 8, 5
		var settles []func() (store.Settlement, error)
		for i := range n {
			_, settle := e.closedVend("A1", fmt.Sprintf("c-%d", i))
			settles = append(settles, settle)
		}
		e.restock("A1", start, 0)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var fresh int
		var clamped uint64
		for _, settle := range settles {
			for range 3 {
				wg.Go(func() {
					set, err := settle()
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if !set.Duplicate {
						fresh++
						if set.Stock == nil {
							t.Error("a fresh settlement of a tracked slot has no Stock")
							return
						}
						clamped += set.Stock.Clamped
					}
				})
			}
		}
		wg.Wait()
		st, _ := e.stock("A1")
		if fresh != n || st.Stock != 0 || st.Short != n-start || clamped != n-start {
			t.Fatalf("%d fresh settlements, stock %d short %d (clamped %d), want %d, 0, %d", fresh, st.Stock, st.Short, clamped, n, n-start)
		}
		e.checkLedger()
	})
}

// A restock racing a vend's settlement ends in one of the two serial
// orders: the count after the vend (stock−1) or the count alone (stock).
func TestRestockRacingVend(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, &store.Opts{AckBound: 10 * time.Second})
		e.topUp(e.user.ID, 50000)
		for i := range 6 {
			e.restock("A1", 2, 0)
			_, settle := e.closedVend("A1", fmt.Sprintf("r-%d", i))
			var wg sync.WaitGroup
			var set store.Settlement
			var setErr, rsErr error
			wg.Go(func() { set, setErr = settle() })
			wg.Go(func() {
				_, _, _, rsErr = e.s.Restock(e.ctx, e.opA.ID, store.Restock{Device: "dev-a", Machine: "v1", Slot: "A1", Stock: 10, By: "acct-tech"})
			})
			wg.Wait()
			must(t, setErr)
			must(t, rsErr)
			st, _ := e.stock("A1")
			switch {
			case st.Stock == 10: // the vend first (2→1), then the count
				if set.Stock == nil || set.Stock.After.Stock != 1 {
					t.Fatalf("round %d: stock 10 but the vend saw %+v", i, set.Stock)
				}
			case st.Stock == 9: // the count first, then the vend
				if set.Stock == nil || set.Stock.After.Stock != 9 {
					t.Fatalf("round %d: stock 9 but the vend saw %+v", i, set.Stock)
				}
			default:
				t.Fatalf("round %d: stock %d, want 10 or 9", i, st.Stock)
			}
			if st.Short != 0 {
				t.Fatalf("round %d: short %d", i, st.Short)
			}
		}
		e.checkLedger()
	})
}
