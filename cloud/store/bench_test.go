package store_test

import (
	"fmt"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// BenchmarkStartSettle measures one session's money path: StartSession
// (hold) then Settle (capture and release), each its own transaction, on
// one machine, one after another. sqlite-normal runs SQLite with
// synchronous=NORMAL instead of the store's FULL, to show what FULL costs.
func BenchmarkStartSettle(b *testing.B) {
	bs := backends(b)
	normal := backend{name: "sqlite-normal", dsn: func(t testing.TB) string {
		return "sqlite:" + t.TempDir() + "/store.db?_pragma=synchronous(NORMAL)"
	}}
	bs = append([]backend{bs[0], normal}, bs[1:]...)
	for _, be := range bs {
		b.Run(be.name, func(b *testing.B) {
			e := newEnv(b, be, nil)
			_, err := e.s.TopUp(e.ctx, e.user.ID, vend.Amount{Minor: 1 << 50, Currency: "EUR"}, "sandbox_card", "bench")
			must(b, err)
			b.ResetTimer()
			t0 := time.Now()
			for i := 0; b.Loop(); i++ {
				ss, err := e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "w1",
					CapUnits: 10000, IdemKey: fmt.Sprint(i)})
				if err != nil {
					b.Fatal(err)
				}
				u, sig := e.usage(ss, 5000, vend.OutcomeCompleted)
				if _, err := e.s.Settle(e.ctx, u, sig); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "sessions/s")
		})
	}
}
