package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// tokenCache is the file that keeps bearer tokens between runs, one per
// API and account, mode 0600.
type tokenCache struct {
	Tokens []cachedToken `json:"tokens"`
}

type cachedToken struct {
	API       string    `json:"api"`
	Email     string    `json:"email"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// tokenPath returns the cache file, or "" for none.
func (m *Main) tokenPath() string {
	switch m.TokenFile {
	case "-":
		return ""
	case "":
		dir, err := os.UserConfigDir()
		if err != nil {
			return ""
		}
		return filepath.Join(dir, "beaconvend", "phone-token.json")
	}
	return m.TokenFile
}

func readTokenCache(path string) tokenCache {
	var c tokenCache
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &c) // a broken cache is an empty one
	}
	return c
}

// find returns the unexpired token for api and email; with email "" the
// most recently stored one for api.
func (c tokenCache) find(api, email string, now time.Time) (cachedToken, bool) {
	for i := len(c.Tokens) - 1; i >= 0; i-- {
		t := c.Tokens[i]
		if t.API == api && (email == "" || t.Email == email) && now.Before(t.ExpiresAt) {
			return t, true
		}
	}
	return cachedToken{}, false
}

// put replaces the entry for t's API and email and appends t.
func (c *tokenCache) put(t cachedToken) {
	keep := c.Tokens[:0]
	for _, x := range c.Tokens {
		if x.API != t.API || x.Email != t.Email {
			keep = append(keep, x)
		}
	}
	c.Tokens = append(keep, t)
}

// writeTokenCache writes atomically (temporary file, fsync, rename), 0600.
func writeTokenCache(path string, c tokenCache) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".phone-token-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err = tmp.Chmod(0o600); err == nil {
		if _, err = tmp.Write(append(b, '\n')); err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// authenticate gets the client a bearer token: -token as given; else a
// cached one that the API still accepts (checked with GetWallet); else
// SignUp (with -signup; an existing account logs in instead) or LogIn,
// prompting for what is missing, and caches the new token.
func (m *Main) authenticate(ctx context.Context) error {
	if m.Token != "" {
		m.client.SetToken(m.Token)
		return nil
	}
	path := m.tokenPath()
	cache := tokenCache{}
	if path != "" {
		cache = readTokenCache(path)
		if t, ok := cache.find(m.API, m.Email, time.Now()); ok {
			m.client.SetToken(t.Token)
			_, err := m.client.GetWallet(ctx)
			if err == nil {
				m.Email = t.Email
				return nil
			}
			if vend.KindOf(err) != vend.Unauthorized {
				return fmt.Errorf("phone: %w", err)
			}
			m.client.SetToken("")
		}
	}
	var err error
	if m.Email == "" {
		if m.Email, err = m.prompt(ctx, "email: ", false); err != nil {
			return fmt.Errorf("phone: log-in needs -email (or a cached token): %w", err)
		}
	}
	if m.Password == "" {
		if m.Password, err = m.prompt(ctx, "password: ", true); err != nil {
			return fmt.Errorf("phone: log-in needs -password: %w", err)
		}
	}
	var tok *phoneapi.AuthToken
	if m.SignUp {
		tok, err = m.client.SignUp(ctx, &phoneapi.SignUpRequest{Email: m.Email, Password: m.Password})
		switch {
		case err == nil:
			fmt.Fprintf(m.out, "signed up as %s\n", tok.User.Email)
		case vend.CodeOf(err) == "auth.email_taken": // log in below
		default:
			return fmt.Errorf("phone: sign-up: %w", err)
		}
	}
	if tok == nil {
		tok, err = m.client.LogIn(ctx, &phoneapi.LogInRequest{Email: m.Email, Password: m.Password})
		if err == nil {
			fmt.Fprintf(m.out, "logged in as %s\n", tok.User.Email)
		}
	}
	if err != nil {
		if vend.CodeOf(err) == "auth.credentials" {
			return fmt.Errorf("phone: log-in: wrong email or password")
		}
		return fmt.Errorf("phone: log-in: %w", err)
	}
	if path != "" {
		cache.put(cachedToken{API: m.API, Email: m.Email, Token: tok.Token, ExpiresAt: tok.ExpiresAt})
		if err := writeTokenCache(path, cache); err != nil {
			fmt.Fprintf(m.Stderr, "phone: token not cached: %v\n", err)
		}
	}
	return nil
}

// prompt asks on the human output and reads one line.
func (m *Main) prompt(ctx context.Context, q string, password bool) (string, error) {
	if m.input.r == nil {
		return "", errNoInput
	}
	fmt.Fprint(m.out, q)
	s, err := m.input.ReadLine(ctx, password)
	if password && m.input.terminal() {
		fmt.Fprintln(m.out)
	}
	return s, err
}
