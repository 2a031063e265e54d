package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
)

// MarkProcessed records that the device's message msgID has been handled
// and reports whether this is the first time; consumers skip a message for
// which it returns false. (device, message) is a primary key, so two cloud
// instances receiving one message see exactly one true. Errors: ErrInput.
func (s *Store) MarkProcessed(ctx context.Context, device, msgID string) (bool, error) {
	if device == "" || msgID == "" || len(msgID) > 128 {
		return false, vend.Errorf(ErrInput, "processed message needs a device and a message id of 1-128 bytes")
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO processed_messages (device_id, message_id, at_ms) VALUES ($1, $2, $3)
		ON CONFLICT (device_id, message_id) DO NOTHING`, device, msgID, s.nowMs())
	if err != nil {
		return false, fmt.Errorf("store: mark processed: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: mark processed: %w", err)
	}
	return n == 1, nil
}

// PruneProcessed deletes processed-message records older than before and
// returns how many; run it with a horizon longer than any redelivery.
func (s *Store) PruneProcessed(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM processed_messages WHERE at_ms < $1`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("store: prune processed: %w", err)
	}
	return res.RowsAffected()
}

// CommandReply is a device's answer to a command the cloud sent.
type CommandReply struct {
	CommandID string
	Device    string
	Status    string // "ok", "error", … as the device said
	Body      string // the reply payload (JSON text)
	At        time.Time
}

// SaveCommandReply stores a reply under (device, command ID) and reports
// whether it was the first; a redelivered reply keeps the first one
// stored. A reply another device publishes under the same command ID is
// stored under that device and never answers this one's command.
// Errors: ErrInput.
func (s *Store) SaveCommandReply(ctx context.Context, r CommandReply) (bool, error) {
	if r.CommandID == "" || len(r.CommandID) > 128 || r.Device == "" || len(r.Body) > 64<<10 {
		return false, vend.Errorf(ErrInput, "command reply needs a command id (1-128 bytes), a device and a body under 64 KiB")
	}
	q := `INSERT INTO command_replies (command_id, device_id, status, body, at_ms) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (device_id, command_id) DO NOTHING`
	if s.d.name == "postgres" {
		// Tell every instance in the same statement (ListenReplies): the
		// start waiting for this reply may run on another one.
		q = `WITH ins AS (` + q + ` RETURNING command_id) SELECT pg_notify('` + replyChannel + `', command_id) FROM ins`
	}
	res, err := s.db.ExecContext(ctx, q, r.CommandID, r.Device, r.Status, r.Body, r.At.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("store: command reply: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// GetCommandReply returns device's reply to a command, or
// ErrCommandNotFound (also when only another device replied under that
// command ID).
func (s *Store) GetCommandReply(ctx context.Context, device, commandID string) (CommandReply, error) {
	var r CommandReply
	var at int64
	err := s.db.QueryRowContext(ctx, `SELECT command_id, device_id, status, body, at_ms FROM command_replies
		WHERE device_id = $1 AND command_id = $2`, device, commandID).
		Scan(&r.CommandID, &r.Device, &r.Status, &r.Body, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return CommandReply{}, vend.Errorf(ErrCommandNotFound, "%q from %q", clip(commandID), clip(device))
	}
	if err != nil {
		return CommandReply{}, fmt.Errorf("store: command reply: %w", err)
	}
	r.At = time.UnixMilli(at).UTC()
	return r, nil
}

// IdemResponse is the first response to a money-moving POST, kept under
// its (user, idempotency key).
type IdemResponse struct {
	Status int    // HTTP status
	Body   []byte // response body as sent
}

// LookupIdempotent returns the stored response for (user, key) when the
// request hash matches, ErrIdemNotFound when none is stored, and
// ErrIdemConflict when the key was used for a different request.
func (s *Store) LookupIdempotent(ctx context.Context, user, key string, reqHash []byte) (IdemResponse, error) {
	var r IdemResponse
	var h []byte
	err := s.db.QueryRowContext(ctx, `SELECT req_hash, status, response FROM idempotency WHERE user_id = $1 AND idem_key = $2`, user, key).
		Scan(&h, &r.Status, &r.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return IdemResponse{}, vend.Errorf(ErrIdemNotFound, "%q", clip(key))
	}
	if err != nil {
		return IdemResponse{}, fmt.Errorf("store: idempotency: %w", err)
	}
	if !bytes.Equal(h, reqHash) {
		return IdemResponse{}, vend.Errorf(ErrIdemConflict, "key %q", clip(key))
	}
	return r, nil
}

// SaveIdempotent stores the response to a POST under (user, key) unless
// one is stored already, and returns the response that is stored: this
// one, or the first one for the same request hash (a concurrent retry won).
// Errors: ErrInput, ErrIdemConflict (the key holds a different request).
func (s *Store) SaveIdempotent(ctx context.Context, user, key string, reqHash []byte, r IdemResponse) (IdemResponse, error) {
	if user == "" || key == "" || len(key) > 200 || len(reqHash) == 0 || len(r.Body) > 64<<10 {
		return IdemResponse{}, vend.Errorf(ErrInput, "idempotency needs a user, a key of 1-200 bytes, a request hash and a body under 64 KiB")
	}
	body := r.Body
	if body == nil {
		body = []byte{}
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO idempotency (user_id, idem_key, req_hash, status, response, created_ms)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, idem_key) DO NOTHING`, user, key, reqHash, r.Status, body, s.nowMs())
	if err != nil {
		return IdemResponse{}, fmt.Errorf("store: idempotency: %w", err)
	}
	return s.LookupIdempotent(ctx, user, key, reqHash)
}
