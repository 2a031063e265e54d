package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"beaconvend/app-protocol/vend"
)

// User is a phone user: the payer.
type User struct {
	ID      string // "usr_" + 16 hex digits
	Email   string // lower-cased
	Created time.Time
}

func normEmail(e string) (string, error) {
	e = strings.ToLower(strings.TrimSpace(e))
	if len(e) > 254 {
		return "", vend.Errorf(ErrInput, "email longer than 254 bytes")
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e {
		return "", vend.Errorf(ErrInput, "email %q", clip(e))
	}
	return e, nil
}

func (s *Store) hash(pw string) (string, error) {
	if len(pw) < 8 || len(pw) > 72 {
		return "", vend.Errorf(ErrInput, "password must be 8-72 bytes")
	}
	cost := s.cost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("store: hash password: %w", err)
	}
	return string(h), nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// CreateUser registers a phone user with a bcrypt hash of password (8-72
// bytes). Errors: ErrInput, ErrEmailTaken.
func (s *Store) CreateUser(ctx context.Context, email, password string) (User, error) {
	e, err := normEmail(email)
	if err != nil {
		return User{}, err
	}
	h, err := s.hash(password)
	if err != nil {
		return User{}, err
	}
	u := User{ID: newID("usr"), Email: e, Created: time.UnixMilli(s.nowMs()).UTC()}
	_, err = s.db.ExecContext(ctx, `INSERT INTO users (id, email, pw_hash, created_ms) VALUES ($1, $2, $3, $4)`,
		u.ID, u.Email, h, u.Created.UnixMilli())
	if s.d.unique(err) {
		return User{}, vend.Errorf(ErrEmailTaken, "%s", e)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: create user: %w", err)
	}
	return u, nil
}

// AuthenticateUser returns the user whose email and password match, or
// ErrCredentials (the same error for an unknown email and a wrong password).
func (s *Store) AuthenticateUser(ctx context.Context, email, password string) (User, error) {
	e, _ := normEmail(email)
	var u User
	var h string
	var ms int64
	err := s.db.QueryRowContext(ctx, `SELECT id, email, pw_hash, created_ms FROM users WHERE email = $1`, e).Scan(&u.ID, &u.Email, &h, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password)) // same time as a wrong password
		return User{}, ErrCredentials
	}
	if err != nil {
		return User{}, fmt.Errorf("store: authenticate: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte(password)) != nil {
		return User{}, ErrCredentials
	}
	u.Created = time.UnixMilli(ms).UTC()
	return u, nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("dummy password"), bcrypt.MinCost)

// GetUser returns a user by ID, or ErrUserNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (User, error) {
	var u User
	var ms int64
	err := s.db.QueryRowContext(ctx, `SELECT id, email, created_ms FROM users WHERE id = $1`, id).Scan(&u.ID, &u.Email, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, vend.Errorf(ErrUserNotFound, "%q", clip(id))
	}
	if err != nil {
		return User{}, fmt.Errorf("store: get user: %w", err)
	}
	u.Created = time.UnixMilli(ms).UTC()
	return u, nil
}

func (s *Store) userExists(ctx context.Context, q queryer, id string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return vend.Errorf(ErrUserNotFound, "%q", clip(id))
	}
	return err
}

func tokenHash(token string) []byte { h := sha256.Sum256([]byte(token)); return h[:] }

// IssueToken returns a new random bearer token for user, valid for ttl.
// Only its SHA-256 is stored. Errors: ErrUserNotFound, ErrInput (ttl <= 0).
func (s *Store) IssueToken(ctx context.Context, user string, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", vend.Errorf(ErrInput, "token ttl %s", ttl)
	}
	if err := s.userExists(ctx, s.db, user); err != nil {
		return "", err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: token: %w", err)
	}
	tok := "vt_" + base64.RawURLEncoding.EncodeToString(b[:])
	now := s.nowMs()
	_, err := s.db.ExecContext(ctx, `INSERT INTO tokens (hash, user_id, expires_ms, created_ms) VALUES ($1, $2, $3, $4)`,
		tokenHash(tok), user, now+ttl.Milliseconds(), now)
	if err != nil {
		return "", fmt.Errorf("store: issue token: %w", err)
	}
	return tok, nil
}

// UserByToken returns the user a live bearer token belongs to, or ErrToken.
func (s *Store) UserByToken(ctx context.Context, token string) (User, error) {
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT user_id FROM tokens WHERE hash = $1 AND revoked = 0 AND expires_ms > $2`,
		tokenHash(token), s.nowMs()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrToken
	}
	if err != nil {
		return User{}, fmt.Errorf("store: token: %w", err)
	}
	return s.GetUser(ctx, id)
}

// RevokeToken revokes a bearer token; revoking an unknown or revoked token is not an error.
func (s *Store) RevokeToken(ctx context.Context, token string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE hash = $1`, tokenHash(token))
	if err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	}
	return nil
}
