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

// BenchmarkOperatorDeviceLookup compares finding one device of an
// operator with 1,000 devices (identity keys encrypted) by OperatorDevice
// with what the operator API did before: list the fleet (OperatorDevices)
// and pick one.
func BenchmarkOperatorDeviceLookup(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			e := newEnv(b, be, &store.Opts{KeyEncKey: make([]byte, 32)})
			for i := range 999 {
				d := e.devA
				d.ID, d.Machines = fmt.Sprintf("dev-%04d", i), testMachines()[:1]
				must(b, e.s.CreateDevice(e.ctx, d))
			}
			b.Run("one", func(b *testing.B) {
				for b.Loop() {
					if _, err := e.s.OperatorDevice(e.ctx, e.opA.ID, "dev-0500"); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("fleet", func(b *testing.B) {
				for b.Loop() {
					ds, err := e.s.OperatorDevices(e.ctx, e.opA.ID)
					if err != nil || len(ds) != 1000 {
						b.Fatal(len(ds), err)
					}
				}
			})
		})
	}
}

// BenchmarkConsoleSessionByToken measures the check every operator API
// request makes (one read by primary key; the last use is recorded at
// most once a minute per session, so not here).
func BenchmarkConsoleSessionByToken(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			e := newEnv(b, be, nil)
			a, err := e.s.CreateOperatorAccount(e.ctx, e.opA.ID, "ops@example.com", "operator pass")
			must(b, err)
			tok, _, err := e.s.StartConsoleSession(e.ctx, a.ID, store.ConsoleLimits{TTL: time.Hour, Idle: time.Hour})
			must(b, err)
			for b.Loop() {
				if _, err := e.s.ConsoleSessionByToken(e.ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
