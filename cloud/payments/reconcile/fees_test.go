package reconcile_test

import (
	"context"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments/reconcile"
	"beaconvend/cloud/store"
)

// singlePoster posts fees one at a time only (not a FeeBatchPoster) and
// counts the calls.
type singlePoster struct {
	s     *store.Store
	calls int
}

func (p *singlePoster) PostChannelFee(ctx context.Context, channel, key string, amount vend.Amount) (bool, error) {
	p.calls++
	return p.s.PostChannelFee(ctx, channel, key, amount)
}

// batchPoster is a FeeBatchPoster over the store that counts the calls of
// each method.
type batchPoster struct {
	singlePoster
	batches, fees int
}

func (p *batchPoster) PostChannelFees(ctx context.Context, channel string, fees []store.Fee) (int, error) {
	p.batches++
	p.fees += len(fees)
	return p.s.PostChannelFees(ctx, channel, fees)
}

var (
	_ reconcile.FeePoster      = (*singlePoster)(nil)
	_ reconcile.FeeBatchPoster = (*batchPoster)(nil)
)

// TestFeesPostedOneByOne reconciles a clean day with a poster of single
// fees only: each of the statement's four fees posts once (0.19 kept:
// 0.06 + 0.15 - 0.03 + 0.01).
func TestFeesPostedOneByOne(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		st := cleanDay(f)
		one := &singlePoster{s: f.s}
		rep, err := reconcile.New(f.s, &reconcile.Opts{Fees: one, Now: f.clk.Now}).Reconcile(f.ctx, ch, newSource(st), day1)
		f.must(err)
		if one.calls != 4 || rep.Run.Status != store.ReconBalanced || rep.Run.FeesPosted != 19 {
			t.Fatalf("single poster: %d calls, run %s fees posted %d; want 4 calls, balanced, 19", one.calls, rep.Run.Status, rep.Run.FeesPosted)
		}
	})
}

// TestFeesPostedInOneBatch reconciles a clean day with a batch poster:
// the statement's fees post in one call, once; a re-run posts nothing.
func TestFeesPostedInOneBatch(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		st := cleanDay(f)
		bp := &batchPoster{singlePoster: singlePoster{s: f.s}}
		r := reconcile.New(f.s, &reconcile.Opts{Fees: bp, Now: f.clk.Now})
		for run := 0; run < 2; run++ {
			rep, err := r.Reconcile(f.ctx, ch, newSource(st), day1)
			f.must(err)
			if bp.calls != 0 || bp.batches != 1 || bp.fees != 4 || rep.Run.Status != store.ReconBalanced || rep.Run.FeesPosted != 19 {
				t.Fatalf("batch poster run %d: %d single calls, %d batches of %d fees in all, run %s fees posted %d; want 0, 1 of 4, balanced, 19",
					run, bp.calls, bp.batches, bp.fees, rep.Run.Status, rep.Run.FeesPosted)
			}
		}
		f.checkLedger()
		fees, err := f.s.Balance(f.ctx, store.Fees, ch, "CNY")
		f.must(err)
		if fees.Minor != -19 {
			t.Fatalf("fees account = %d, want -19", fees.Minor)
		}
	})
}
