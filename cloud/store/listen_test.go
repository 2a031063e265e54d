package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"beaconvend/cloud/store"
)

// A reply saved through one store handle (one cloud instance) is
// announced to a listener on another; a duplicate reply is not. SQLite
// has no notifications and says so.
func TestListenReplies(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		got := make(chan string, 4)
		done := make(chan error, 1)
		go func() { done <- e.s.ListenReplies(ctx, func(id string) { got <- id }) }()
		if b.name == "sqlite" {
			if err := <-done; !errors.Is(err, store.ErrNoNotify) {
				t.Fatalf("sqlite ListenReplies = %v, want ErrNoNotify", err)
			}
			return
		}
		other := mustOpen(t, e.dsn, e.clk, nil)
		// The listener connects asynchronously: save until it hears one.
		deadline := time.Now().Add(10 * time.Second)
		var heard string
		for i := 0; heard == "" && time.Now().Before(deadline); i++ {
			id := "auth-" + string(rune('a'+i%26)) + time.Now().Format("150405.000000")
			first, err := other.SaveCommandReply(ctx, store.CommandReply{CommandID: id, Device: "dev-a", Status: "ok", Body: "{}", At: time.Now()})
			if err != nil || !first {
				t.Fatalf("SaveCommandReply = %v, %v", first, err)
			}
			select {
			case heard = <-got:
				if heard != id {
					t.Fatalf("heard %q, want %q", heard, id)
				}
			case <-time.After(200 * time.Millisecond):
			}
		}
		if heard == "" {
			t.Fatal("no notification within 10 s")
		}
		first, err := other.SaveCommandReply(ctx, store.CommandReply{CommandID: heard, Device: "dev-a", Status: "ok", Body: "{}", At: time.Now()})
		if err != nil || first {
			t.Fatalf("duplicate SaveCommandReply = %v, %v", first, err)
		}
		select {
		case id := <-got:
			t.Fatalf("a duplicate reply was announced: %q", id)
		case <-time.After(300 * time.Millisecond):
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("ListenReplies returned %v after cancel", err)
		}
	})
}
