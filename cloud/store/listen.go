package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// replyChannel is the PostgreSQL notification channel SaveCommandReply
// notifies on, with the command id as payload.
const replyChannel = "beaconvend_reply"

// ErrNoNotify is ListenReplies on a store that cannot notify (SQLite,
// which serves one instance: its replies wake their waiters in process).
var ErrNoNotify = errors.New("store: this database has no notifications")

// ListenReplies calls fn with the command id of every command reply any
// instance saves from now on, until ctx is done; it then returns nil. On
// PostgreSQL it holds one connection in LISTEN and reconnects (backing off
// up to 5 s) when it breaks; a reply saved while it was reconnecting is
// not announced, so callers keep polling as well. Other databases return
// ErrNoNotify at once.
func (s *Store) ListenReplies(ctx context.Context, fn func(commandID string)) error {
	return s.listen(ctx, replyChannel, "reply", fn)
}

// listen holds a LISTEN on channel and calls fn with each payload until
// ctx is done, reconnecting as ListenReplies says; what names it in logs.
func (s *Store) listen(ctx context.Context, channel, what string, fn func(string)) error {
	if s.d.name != "postgres" {
		return ErrNoNotify
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, channel, fn)
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("store: "+what+" listener lost its connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

func (s *Store) listenOnce(ctx context.Context, channel string, fn func(string)) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("store: listen: driver connection is %T", dc)
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+channel); err != nil {
			return err
		}
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				// The connection may be mid-wait: do not return it to the pool.
				_ = pc.Close(context.Background())
				return err
			}
			fn(n.Payload)
		}
	})
}
