package store_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Operator names are unique, compared case-insensitively and without
// surrounding blanks: a second operator of the same name is a conflict,
// not a second tenant.
func TestOperatorNameUnique(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil) // has "Operator A"
		for _, name := range []string{"Operator A", "operator a", "  OPERATOR A "} {
			_, err := e.s.CreateOperator(e.ctx, name)
			wantCode(t, err, "operator.name_taken")
		}
		if _, err := e.s.CreateOperator(e.ctx, "Operator B"); err != nil {
			t.Fatalf("CreateOperator(Operator B) = %v", err)
		}
	})
}

// The operator's device views read no identity key: a device whose key
// does not decrypt (here: the store runs without the key-encryption key it
// was sealed with) is still listed and found, alone.
func TestOperatorDevicesReadNoKeys(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		kek := make([]byte, 32)
		kek[0] = 7
		e := newEnv(t, b, &store.Opts{KeyEncKey: kek})
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		must(t, e.s.CreateDevice(e.ctx, store.Device{ID: "dev-b", OperatorID: e.opA.ID, Name: "hall", K: 5, SignKey: pub, MQTTHash: "x",
			IdentityKey: [16]byte{9}, Machines: testMachines()[:1]}))
		plain := mustOpen(t, e.dsn, e.clk, nil) // no KeyEncKey: identity keys do not open
		if _, err := plain.GetDevice(e.ctx, "dev-b"); err == nil {
			t.Fatal("GetDevice without the key-encryption key: no error; the test needs a key that does not decrypt")
		}
		ds, err := plain.OperatorDevices(e.ctx, e.opA.ID)
		if err != nil || len(ds) != 2 || ds[0].ID != "dev-a" || ds[1].ID != "dev-b" || len(ds[0].Machines) != 3 || len(ds[1].Machines) != 1 {
			t.Fatalf("OperatorDevices = %+v, %v; want dev-a (3 machines) and dev-b (1)", ds, err)
		}
	})
}

// OperatorDevice finds one device of the operator's; another operator's
// device, or none, is device.not_found.
func TestOperatorDevice(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		d, err := e.s.OperatorDevice(e.ctx, e.opA.ID, "dev-a")
		if err != nil || d.ID != "dev-a" || d.Name != "lobby" || d.State != store.DeviceActive || len(d.Machines) != 3 || len(d.Machines[0].Slots) != 2 {
			t.Fatalf("OperatorDevice = %+v, %v", d, err)
		}
		opB, err := e.s.CreateOperator(e.ctx, "Operator B")
		must(t, err)
		_, err = e.s.OperatorDevice(e.ctx, opB.ID, "dev-a")
		wantCode(t, err, "device.not_found")
		_, err = e.s.OperatorDevice(e.ctx, e.opA.ID, "dev-zz")
		wantCode(t, err, "device.not_found")
	})
}

// A database that already holds operators of one name (made before names
// were unique) migrates: the oldest keeps the name, each later one is
// renamed after its id, and no row is lost.
func TestOperatorNameMigration(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		dsn := b.dsn(t)
		ctx := context.Background()
		db, err := store.OpenAtVersion(ctx, dsn, 3)
		must(t, err)
		for i, name := range []string{"Acme", "ACME", "Other", "acme "} {
			_, err := db.ExecContext(ctx, `INSERT INTO operators (id, name, created_ms) VALUES ($1, $2, $3)`, fmt.Sprintf("op_%d", i), name, 1000+i)
			must(t, err)
		}
		db.Close()
		s := mustOpen(t, dsn, newClock(), nil)
		want := map[string]string{"op_0": "Acme", "op_1": "ACME (op_1)", "op_2": "Other", "op_3": "acme (op_3)"}
		for id, name := range want {
			o, err := s.GetOperator(ctx, id)
			if err != nil || o.Name != name {
				t.Errorf("GetOperator(%s) = %+v, %v; want name %q", id, o, err, name)
			}
		}
		o, err := s.OperatorByName(ctx, "acme")
		if err != nil || o.ID != "op_0" {
			t.Errorf("OperatorByName(acme) = %+v, %v; want op_0", o, err)
		}
		_, err = s.CreateOperator(ctx, "other")
		wantCode(t, err, "operator.name_taken")
	})
}

// CreateOperatorWithAccount writes both or neither.
func TestCreateOperatorWithAccount(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		o, a, err := e.s.CreateOperatorWithAccount(e.ctx, "Acme", "Ops@Acme.example", "acme-password")
		must(t, err)
		if a.OperatorID != o.ID || a.Email != "ops@acme.example" {
			t.Fatalf("account %+v of operator %+v", a, o)
		}
		// Taken name, taken email, bad password: nothing written.
		for _, c := range []struct{ name, email, pw, code string }{
			{"ACME", "new@acme.example", "acme-password", "operator.name_taken"},
			{"Beta", "ops@acme.example", "beta-password", "email.taken"},
			{"Gamma", "ops@gamma.example", "short", "store.input"},
		} {
			_, _, err := e.s.CreateOperatorWithAccount(e.ctx, c.name, c.email, c.pw)
			wantCode(t, err, c.code)
			if _, err := e.s.OperatorByName(e.ctx, c.name); c.name != "ACME" && err == nil {
				t.Errorf("%s: operator written although its account failed", c.name)
			}
		}
		if _, err := e.s.OperatorAccountByEmail(e.ctx, "new@acme.example"); err == nil {
			t.Error("account written although its operator's name was taken")
		}
	})
}

// consoleEnv is an operator account with a password, ready to log in.
func consoleEnv(t *testing.T, b backend) (*env, store.OperatorAccount) {
	e := newEnv(t, b, nil)
	a, err := e.s.CreateOperatorAccount(e.ctx, e.opA.ID, "ops@example.com", "operator pass")
	must(t, err)
	return e, a
}

var lim = store.ConsoleLimits{TTL: 12 * time.Hour, Idle: time.Hour}

func (e *env) console(account string) string {
	e.t.Helper()
	tok, _, err := e.s.StartConsoleSession(e.ctx, account, lim)
	must(e.t, err)
	return tok
}

func (e *env) wantLive(tok string) store.ConsoleSession {
	e.t.Helper()
	cs, err := e.s.ConsoleSessionByToken(e.ctx, tok)
	if err != nil {
		e.t.Fatalf("ConsoleSessionByToken = %v, want a live session", err)
	}
	return cs
}

func (e *env) wantRefused(tok, mention string) {
	e.t.Helper()
	_, err := e.s.ConsoleSessionByToken(e.ctx, tok)
	wantCode(e.t, err, "auth.token")
	if !strings.Contains(err.Error(), mention) {
		e.t.Fatalf("error %q does not mention %q", err, mention)
	}
}

func TestConsoleSessionLifecycle(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e, a := consoleEnv(t, b)
		tok, cs, err := e.s.StartConsoleSession(e.ctx, a.ID, lim)
		must(t, err)
		if !strings.HasPrefix(tok, store.ConsoleTokenPrefix) || len(tok) < len(store.ConsoleTokenPrefix)+43 || !cs.Expires.Equal(e.clk.Now().Add(12*time.Hour)) {
			t.Fatalf("token %q, session %+v", tok, cs)
		}
		if got := e.wantLive(tok); got.Account.ID != a.ID || got.Account.OperatorID != e.opA.ID {
			t.Fatalf("session of %+v, want %+v", got.Account, a)
		}
		other := e.console(a.ID)
		must(t, e.s.EndConsoleSession(e.ctx, tok))
		e.wantRefused(tok, "logout")
		e.wantLive(other) // log-out ends that session only
		must(t, e.s.EndConsoleSession(e.ctx, tok))
		must(t, e.s.EndConsoleSession(e.ctx, "bvc_nonsense"))

		// Idle: each use within the bound keeps it; a gap of the bound ends it.
		for range 5 {
			e.clk.Add(50 * time.Minute)
			e.wantLive(other)
		}
		e.clk.Add(time.Hour)
		e.wantRefused(other, "idle")

		// Absolute: however busy, a session ends at its expiry.
		busy := e.console(a.ID)
		for range 23 {
			e.clk.Add(30 * time.Minute)
			e.wantLive(busy)
		}
		e.clk.Add(30 * time.Minute)
		e.wantRefused(busy, "expired")
		// The janitor deletes sessions an hour after their expiry.
		e.clk.Add(time.Hour + time.Second)
		got, err := e.s.Prune(e.ctx, store.Retention{})
		must(t, err)
		if got["console_sessions"] != 3 || consoleRows(t, e) != "" {
			t.Fatalf("Prune deleted %d console sessions, left %q; want all 3", got["console_sessions"], consoleRows(t, e))
		}

		_, _, err = e.s.StartConsoleSession(e.ctx, a.ID, store.ConsoleLimits{TTL: time.Hour})
		wantCode(t, err, "store.input")
		_, _, err = e.s.StartConsoleSession(e.ctx, "opa_nobody", lim)
		wantCode(t, err, "operator_account.not_found")
	})
}

// Changing the password with the current one revokes every other session
// of the account and keeps the one that made the change; an
// administrator's reset revokes them all.
func TestConsolePasswordChange(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e, a := consoleEnv(t, b)
		mine, phone, laptop := e.console(a.ID), e.console(a.ID), e.console(a.ID)
		_, err := e.s.ChangeOperatorPassword(e.ctx, mine, "wrong pass", "new password 1")
		wantCode(t, err, "auth.current_password")
		_, err = e.s.ChangeOperatorPassword(e.ctx, mine, "operator pass", "short")
		wantCode(t, err, "store.input")
		e.wantLive(phone) // failed changes revoke nothing
		n, err := e.s.ChangeOperatorPassword(e.ctx, mine, "operator pass", "new password 1")
		must(t, err)
		if n != 2 {
			t.Errorf("revoked %d sessions, want 2", n)
		}
		e.wantLive(mine)
		e.wantRefused(phone, "password")
		e.wantRefused(laptop, "password")
		_, err = e.s.AuthenticateOperator(e.ctx, "ops@example.com", "operator pass")
		wantCode(t, err, "auth.credentials")
		_, err = e.s.AuthenticateOperator(e.ctx, "ops@example.com", "new password 1")
		must(t, err)
		_, err = e.s.ChangeOperatorPassword(e.ctx, phone, "new password 1", "new password 2")
		wantCode(t, err, "auth.token")

		_, n, err = e.s.SetOperatorPassword(e.ctx, "OPS@example.com", "reset password")
		must(t, err)
		if n != 1 {
			t.Errorf("reset revoked %d sessions, want 1", n)
		}
		e.wantRefused(mine, "password")
		_, err = e.s.AuthenticateOperator(e.ctx, "ops@example.com", "reset password")
		must(t, err)
		_, _, err = e.s.SetOperatorPassword(e.ctx, "nobody@example.com", "reset password")
		wantCode(t, err, "operator_account.not_found")
	})
}

// A disabled account's sessions are refused at the next check, it cannot
// log in (wrong password: auth.credentials as ever; right password:
// auth.account_disabled), and enabling it does not bring its sessions
// back.
func TestConsoleAccountDisabled(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e, a := consoleEnv(t, b)
		tok := e.console(a.ID)
		e.wantLive(tok)
		got, n, err := e.s.SetOperatorAccountDisabled(e.ctx, "ops@example.com", true)
		must(t, err)
		if !got.Disabled || n != 1 {
			t.Fatalf("disable = %+v, %d revoked", got, n)
		}
		e.wantRefused(tok, "disabled")
		_, err = e.s.AuthenticateOperator(e.ctx, "ops@example.com", "operator pass")
		wantCode(t, err, "auth.account_disabled")
		_, err = e.s.AuthenticateOperator(e.ctx, "ops@example.com", "wrong pass")
		wantCode(t, err, "auth.credentials")
		_, _, err = e.s.StartConsoleSession(e.ctx, a.ID, lim)
		wantCode(t, err, "auth.account_disabled")
		_, _, err = e.s.SetOperatorAccountDisabled(e.ctx, "ops@example.com", true) // idempotent
		must(t, err)

		got, _, err = e.s.SetOperatorAccountDisabled(e.ctx, "ops@example.com", false)
		must(t, err)
		if got.Disabled {
			t.Fatal("enable: still disabled")
		}
		e.wantRefused(tok, "disabled")
		_, err = e.s.AuthenticateOperator(e.ctx, "ops@example.com", "operator pass")
		must(t, err)
		e.wantLive(e.console(a.ID))
		_, _, err = e.s.SetOperatorAccountDisabled(e.ctx, "nobody@example.com", true)
		wantCode(t, err, "operator_account.not_found")
	})
}

// consoleRows is every column of every console session, and on PostgreSQL
// each row version (xmin), so that any write shows.
func consoleRows(t *testing.T, e *env) string {
	t.Helper()
	ver := "''"
	if e.s.Dialect == "postgres" {
		ver = "xmin::text"
	}
	rows, err := e.s.DB().QueryContext(e.ctx, `SELECT hash, account_id, created_ms, last_used_ms, idle_ms, expires_ms, revoked_ms, revoke_reason, `+ver+`
		FROM console_sessions ORDER BY hash`)
	must(t, err)
	defer rows.Close()
	var sb strings.Builder
	for rows.Next() {
		var h []byte
		var acc, why, v string
		var c, u, i, x, r int64
		must(t, rows.Scan(&h, &acc, &c, &u, &i, &x, &r, &why, &v))
		fmt.Fprintf(&sb, "%x %s %d %d %d %d %d %s %s\n", h, acc, c, u, i, x, r, why, v)
	}
	must(t, rows.Err())
	return sb.String()
}

// Forged, truncated and altered tokens are refused and write nothing;
// tokens that are not even shaped like one are refused without the
// database (a closed store answers auth.token, not an internal error).
func TestConsoleTokenForged(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e, a := consoleEnv(t, b)
		tok := e.console(a.ID)
		e.clk.Add(30 * time.Minute) // a real check now would record the use
		before := consoleRows(t, e)
		flip := []byte(tok)
		flip[len(flip)-2] ^= 1
		forged := store.ConsoleTokenPrefix + strings.Repeat("A", 43)
		malformed := []string{"", tok[:len(tok)-1], tok + "A", "vt_" + tok[4:], tok[:10], strings.ToUpper(tok), tok[:len(tok)-1] + "=", tok[:len(tok)-1] + "!"}
		for _, bad := range append([]string{string(flip), forged}, malformed...) {
			e.wantRefused(bad, "")
			if err := e.s.EndConsoleSession(e.ctx, bad); err != nil {
				t.Fatalf("EndConsoleSession(%q) = %v", bad, err)
			}
		}
		if after := consoleRows(t, e); after != before {
			t.Fatalf("refused tokens wrote to console_sessions:\nbefore %s\nafter  %s", before, after)
		}
		e.wantLive(tok)
		if consoleRows(t, e) == before {
			t.Fatal("a live check after 30 min recorded no use: the comparison above proves nothing")
		}
		e.s.Close()
		for _, bad := range malformed {
			if _, err := e.s.ConsoleSessionByToken(context.Background(), bad); vend.CodeOf(err) != "auth.token" {
				t.Errorf("closed store, token %q: %v, want auth.token without the database", bad, err)
			}
		}
	})
}
