package service_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// The janitor deletes processed-message records and replies past their
// windows, counts them, and stops with its context.
func TestJanitorRun(t *testing.T) {
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{})
		ctx := context.Background()
		for i := range 30 {
			if _, err := r.st.MarkProcessed(ctx, "wd-1", fmt.Sprintf("m-%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		r.handle(t, mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), "cmd-1", nil))
		r.clk.Add(73 * time.Hour)
		if _, err := r.st.MarkProcessed(ctx, "wd-1", "fresh"); err != nil {
			t.Fatal(err)
		}
		j := r.svc.Janitor(service.JanitorOptions{Retention: store.Retention{Batch: 7}, Interval: time.Hour})
		jctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- j.Run(jctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for r.svc.Metrics.Pruned("processed_messages") < 30 || r.svc.Metrics.Pruned("command_replies") < 1 {
			if time.Now().After(deadline) {
				t.Fatalf("janitor pruned %v processed, %v replies within 10 s; want 30 and 1",
					r.svc.Metrics.Pruned("processed_messages"), r.svc.Metrics.Pruned("command_replies"))
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		var n int
		if err := r.st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM processed_messages`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("processed left %d, %v; want the fresh one", n, err)
		}
	})
}
