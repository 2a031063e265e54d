package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// feeSum is what the provider kept on wechatpay by the ledger, minor
// units: fees post fees → channel_clearing, so the fees account holds
// its negation.
func feeSum(t *testing.T, e *env) int64 {
	t.Helper()
	f, err := e.s.Balance(e.ctx, store.Fees, "wechatpay", "EUR")
	must(t, err)
	return -f.Minor
}

func TestPostChannelFeesBatch(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.paidOrder("wechatpay", "p1", 1000)
		clear0, err := e.s.Balance(e.ctx, store.ChannelClearing, "wechatpay", "EUR")
		must(t, err)
		key := func(i int) string { return store.ChannelFeeKey("wechatpay", "2026-03-01", fmt.Sprint(i)) }
		// 1,203 fees (three chunks), every fifth one returned (negative).
		var fees []store.Fee
		var want int64
		for i := 0; i < 1203; i++ {
			m := int64(i%9 + 1)
			if i%5 == 4 {
				m = -m
			}
			fees = append(fees, store.Fee{Key: key(i), Amount: eur(m)})
			want += m
		}
		// A few posted before, one at a time.
		for _, i := range []int{0, 499, 500, 1202} {
			posted, err := e.s.PostChannelFee(e.ctx, "wechatpay", fees[i].Key, fees[i].Amount)
			must(t, err)
			if !posted {
				t.Fatalf("PostChannelFee(%s) posted false, want true", fees[i].Key)
			}
		}
		n, err := e.s.PostChannelFees(e.ctx, "wechatpay", fees)
		must(t, err)
		if n != len(fees)-4 {
			t.Fatalf("PostChannelFees posted %d, want %d (4 of %d posted before)", n, len(fees)-4, len(fees))
		}
		if got := feeSum(t, e); got != want {
			t.Fatalf("fees = %d, want %d", got, want)
		}
		clear1, err := e.s.Balance(e.ctx, store.ChannelClearing, "wechatpay", "EUR")
		must(t, err)
		if clear1.Minor-clear0.Minor != want {
			t.Fatalf("clearing moved %d, want %d", clear1.Minor-clear0.Minor, want)
		}
		e.checkLedger()

		// Again: nothing more, by the batch or one at a time.
		n, err = e.s.PostChannelFees(e.ctx, "wechatpay", fees)
		must(t, err)
		if n != 0 {
			t.Fatalf("second PostChannelFees posted %d, want 0", n)
		}
		posted, err := e.s.PostChannelFee(e.ctx, "wechatpay", fees[7].Key, fees[7].Amount)
		must(t, err)
		if posted {
			t.Fatal("PostChannelFee of a key the batch posted posted again")
		}
		if got := feeSum(t, e); got != want {
			t.Fatalf("fees after re-post = %d, want %d", got, want)
		}

		// The same key, once in a batch, posts once.
		n, err = e.s.PostChannelFees(e.ctx, "wechatpay", []store.Fee{{Key: key(5000), Amount: eur(3)}, {Key: key(5000), Amount: eur(3)}})
		must(t, err)
		if n != 1 {
			t.Fatalf("batch with one key twice posted %d, want 1", n)
		}
		want += 3
		if got := feeSum(t, e); got != want {
			t.Fatalf("fees = %d, want %d", got, want)
		}
		e.checkLedger()
	})
}

func TestPostChannelFeesConflict(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.paidOrder("wechatpay", "p1", 1000)
		k1 := store.ChannelFeeKey("wechatpay", "2026-03-01", "1")
		_, err := e.s.PostChannelFee(e.ctx, "wechatpay", k1, eur(6))
		must(t, err)

		// One at a time: another amount under a posted key is a conflict.
		_, err = e.s.PostChannelFee(e.ctx, "wechatpay", k1, eur(7))
		if !errors.Is(err, store.ErrIdemConflict) {
			t.Fatalf("PostChannelFee(%s, 7) after 6 = %v, want ErrIdemConflict", k1, err)
		}
		_, err = e.s.PostChannelFee(e.ctx, "wechatpay", k1, eur(-6))
		if !errors.Is(err, store.ErrIdemConflict) {
			t.Fatalf("PostChannelFee(%s, -6) after 6 = %v, want ErrIdemConflict", k1, err)
		}

		// In a batch: refused whole, naming the key, nothing written, even
		// for fees in earlier chunks.
		var fees []store.Fee
		for i := 2; i < 1100; i++ {
			fees = append(fees, store.Fee{Key: store.ChannelFeeKey("wechatpay", "2026-03-01", fmt.Sprint(i)), Amount: eur(1)})
		}
		fees = append(fees, store.Fee{Key: k1, Amount: eur(7)})
		n, err := e.s.PostChannelFees(e.ctx, "wechatpay", fees)
		if !errors.Is(err, store.ErrIdemConflict) || !strings.Contains(fmt.Sprint(err), k1) {
			t.Fatalf("PostChannelFees with %s at another amount = %d, %v; want ErrIdemConflict naming the key", k1, n, err)
		}
		if n != 0 {
			t.Fatalf("conflicting batch posted %d, want 0", n)
		}
		// One key twice with two amounts in one batch.
		k9 := store.ChannelFeeKey("wechatpay", "2026-03-02", "9")
		_, err = e.s.PostChannelFees(e.ctx, "wechatpay", []store.Fee{{Key: k9, Amount: eur(1)}, {Key: k9, Amount: eur(2)}})
		if !errors.Is(err, store.ErrIdemConflict) || !strings.Contains(fmt.Sprint(err), k9) {
			t.Fatalf("batch with %s at 1 and 2 = %v, want ErrIdemConflict naming it", k9, err)
		}
		if got := feeSum(t, e); got != 6 {
			t.Fatalf("fees = %d after refused batches, want 6", got)
		}
		e.checkLedger()
	})
}

func TestPostChannelFeesBadInput(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		good := store.Fee{Key: store.ChannelFeeKey("wechatpay", "2026-03-01", "1"), Amount: eur(5)}
		long := strings.Repeat("k", 201)
		for _, tc := range []struct {
			name    string
			channel string
			bad     store.Fee
			kind    error
			names   string
		}{
			{"zero", "wechatpay", store.Fee{Key: "chanfee:wechatpay:2026-03-01:2", Amount: eur(0)}, store.ErrAmount, "chanfee:wechatpay:2026-03-01:2"},
			{"no key", "wechatpay", store.Fee{Amount: eur(3)}, store.ErrInput, "fee 1"},
			{"long key", "wechatpay", store.Fee{Key: long, Amount: eur(3)}, store.ErrInput, "fee 1"},
			{"currency", "wechatpay", store.Fee{Key: "chanfee:wechatpay:2026-03-01:3", Amount: vend.Amount{Minor: 3, Currency: "eur"}}, vend.ErrCurrency, "chanfee:wechatpay:2026-03-01:3"},
			{"no channel", "", store.Fee{Key: "chanfee:x:2026-03-01:4", Amount: eur(3)}, store.ErrInput, "channel"},
		} {
			n, err := e.s.PostChannelFees(e.ctx, tc.channel, []store.Fee{good, tc.bad})
			if !errors.Is(err, tc.kind) || !strings.Contains(fmt.Sprint(err), tc.names) || n != 0 {
				t.Errorf("%s: PostChannelFees = %d, %v; want 0, %v naming %q", tc.name, n, err, tc.kind, tc.names)
			}
		}
		if got := feeSum(t, e); got != 0 {
			t.Fatalf("fees = %d after refused batches, want 0 (nothing written)", got)
		}
		n, err := e.s.PostChannelFees(e.ctx, "wechatpay", nil)
		if err != nil || n != 0 {
			t.Fatalf("PostChannelFees(nil) = %d, %v; want 0, nil", n, err)
		}
		e.checkLedger()
	})
}
