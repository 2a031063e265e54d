package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"beaconvend/cloud/store"
)

// The audit log keeps who, what, before and after, and when; it is read
// per operator, newest first, filtered and paged by a cursor, and refuses
// an entry it could not read back (no operator, not JSON).
func TestAuditLog(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		opB, err := e.s.CreateOperator(e.ctx, "Operator B")
		must(t, err)
		write := func(op, email, action, target string, before, after string) store.AuditEntry {
			t.Helper()
			x, err := e.s.AppendAudit(e.ctx, store.AuditEntry{Operator: op, Account: "opa_" + email, Email: email, Role: "owner",
				Action: action, Target: target, Before: json.RawMessage(before), After: json.RawMessage(after), IP: "192.0.2.1"})
			must(t, err)
			e.clk.Add(time.Minute)
			return x
		}
		first := write(e.opA.ID, "ann@example.com", "price.set", "dev-a/w1", `{"price":{"minor":50,"per":1000}}`, `{"price":{"minor":60,"per":1000}}`)
		write(e.opA.ID, "bob@example.com", "account.role", "cat@example.com", `{"role":"viewer"}`, `{"role":"manager"}`)
		write(e.opA.ID, "ann@example.com", "account.disable", "cat@example.com", "", `{"disabled":true}`)
		write(opB.ID, "zed@example.com", "price.set", "dev-b/w1", "", "")
		all, err := e.s.AuditLog(e.ctx, e.opA.ID, store.AuditFilter{})
		must(t, err)
		if len(all) != 3 || all[0].Action != "account.disable" || all[2].ID != first.ID {
			t.Fatalf("AuditLog(A) = %+v, want A's 3 entries newest first", all)
		}
		got := all[2]
		if got.Email != "ann@example.com" || got.Target != "dev-a/w1" || got.IP != "192.0.2.1" || !got.At.Equal(first.At) ||
			string(got.Before) != `{"price":{"minor":50,"per":1000}}` {
			t.Fatalf("entry read back = %+v, want %+v", got, first)
		}
		if string(all[0].Before) != "null" {
			t.Fatalf("empty before read back as %q, want null", all[0].Before)
		}
		for _, c := range []struct {
			f    store.AuditFilter
			want int
		}{
			{store.AuditFilter{Action: "price.set"}, 1},
			{store.AuditFilter{Action: "account."}, 2},
			{store.AuditFilter{Action: "account%"}, 0}, // a wildcard is a character
			{store.AuditFilter{Account: "ANN@example.com"}, 2},
			{store.AuditFilter{Account: "opa_bob@example.com"}, 1},
			{store.AuditFilter{Since: first.At.Add(time.Minute)}, 2},
			{store.AuditFilter{Until: first.At.Add(time.Minute)}, 1},
			{store.AuditFilter{Before: all[0].ID, Limit: 1}, 1},
		} {
			xs, err := e.s.AuditLog(e.ctx, e.opA.ID, c.f)
			must(t, err)
			if len(xs) != c.want {
				t.Errorf("AuditLog(%+v) = %d entries, want %d", c.f, len(xs), c.want)
			}
		}
		// Paging by the cursor visits every entry once.
		var seen []int64
		cur := int64(0)
		for {
			xs, err := e.s.AuditLog(e.ctx, e.opA.ID, store.AuditFilter{Before: cur, Limit: 2})
			must(t, err)
			for _, x := range xs {
				seen = append(seen, x.ID)
			}
			if len(xs) < 2 {
				break
			}
			cur = xs[len(xs)-1].ID
		}
		if fmt.Sprint(seen) != fmt.Sprint([]int64{all[0].ID, all[1].ID, all[2].ID}) {
			t.Fatalf("paged IDs = %v, want %v", seen, []int64{all[0].ID, all[1].ID, all[2].ID})
		}
		for _, bad := range []store.AuditEntry{
			{Action: "x"},
			{Operator: e.opA.ID},
			{Operator: e.opA.ID, Action: "x", Before: json.RawMessage("{not json")},
		} {
			_, err := e.s.AppendAudit(e.ctx, bad)
			wantCode(t, err, "store.input")
		}
		_, err = e.s.AuditLog(e.ctx, e.opA.ID, store.AuditFilter{Limit: store.MaxAuditLimit + 1})
		wantCode(t, err, "store.input")
	})
}

// Accounts have roles; an operator always keeps an enabled owner; an
// account of another operator is not found; disabling revokes sessions
// in the same step.
func TestOperatorAccountRoles(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		owner, err := e.s.CreateOperatorAccount(e.ctx, e.opA.ID, "owner@example.com", "correct horse")
		must(t, err)
		if owner.Role != store.RoleOwner {
			t.Fatalf("CreateOperatorAccount role = %q, want owner", owner.Role)
		}
		tech, err := e.s.CreateOperatorAccountRole(e.ctx, e.opA.ID, "tech@example.com", "correct horse", store.RoleTechnician)
		must(t, err)
		_, err = e.s.CreateOperatorAccountRole(e.ctx, e.opA.ID, "x@example.com", "correct horse", "admin")
		wantCode(t, err, "store.input")

		tok, _, err := e.s.StartConsoleSession(e.ctx, tech.ID, store.ConsoleLimits{TTL: time.Hour, Idle: time.Hour})
		must(t, err)
		cs, err := e.s.ConsoleSessionByToken(e.ctx, tok)
		must(t, err)
		if cs.Account.Role != store.RoleTechnician {
			t.Fatalf("session's account role = %q, want technician", cs.Account.Role)
		}
		before, after, err := e.s.SetOperatorAccountRole(e.ctx, e.opA.ID, tech.ID, store.RoleManager)
		must(t, err)
		if before.Role != store.RoleTechnician || after.Role != store.RoleManager {
			t.Fatalf("SetOperatorAccountRole = %q → %q, want technician → manager", before.Role, after.Role)
		}
		if cs, err = e.s.ConsoleSessionByToken(e.ctx, tok); err != nil || cs.Account.Role != store.RoleManager {
			t.Fatalf("session after role change = %q, %v; want manager at once", cs.Account.Role, err)
		}

		// The last enabled owner can be neither demoted nor disabled.
		_, _, err = e.s.SetOperatorAccountRole(e.ctx, e.opA.ID, owner.ID, store.RoleViewer)
		wantCode(t, err, "account.last_owner")
		_, _, _, err = e.s.SetOperatorAccountDisabledByID(e.ctx, e.opA.ID, owner.ID, true)
		wantCode(t, err, "account.last_owner")
		if a, err := e.s.OperatorAccountByID(e.ctx, e.opA.ID, owner.ID); err != nil || a.Role != store.RoleOwner || a.Disabled {
			t.Fatalf("owner after refused changes = %+v, %v; want unchanged", a, err)
		}

		// Another operator's account is not found.
		opB, err := e.s.CreateOperator(e.ctx, "Operator B")
		must(t, err)
		_, _, err = e.s.SetOperatorAccountRole(e.ctx, opB.ID, tech.ID, store.RoleViewer)
		wantCode(t, err, "operator_account.not_found")
		_, err = e.s.OperatorAccountByID(e.ctx, opB.ID, tech.ID)
		wantCode(t, err, "operator_account.not_found")

		// Disabling revokes at once; enabling does not revive sessions.
		_, after, n, err := e.s.SetOperatorAccountDisabledByID(e.ctx, e.opA.ID, tech.ID, true)
		must(t, err)
		if !after.Disabled || n != 1 {
			t.Fatalf("disable = %+v, revoked %d; want disabled, 1 revoked", after, n)
		}
		_, err = e.s.ConsoleSessionByToken(e.ctx, tok)
		wantCode(t, err, "auth.token")
		_, after, _, err = e.s.SetOperatorAccountDisabledByID(e.ctx, e.opA.ID, tech.ID, false)
		must(t, err)
		if after.Disabled {
			t.Fatal("enable left the account disabled")
		}
		_, err = e.s.ConsoleSessionByToken(e.ctx, tok)
		wantCode(t, err, "auth.token")

		as, err := e.s.OperatorAccounts(e.ctx, e.opA.ID)
		must(t, err)
		if len(as) != 2 || as[0].Email != "owner@example.com" || as[1].Email != "tech@example.com" {
			t.Fatalf("OperatorAccounts = %+v, want owner and tech by email", as)
		}
	})
}

// Accounts made before roles existed become owners (they could do
// everything); the migration's check refuses a role it does not know.
func TestRoleMigrationMakesOwners(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		dsn := b.dsn(t)
		ctx := context.Background()
		db, err := store.OpenAtVersion(ctx, dsn, 10)
		must(t, err)
		_, err = db.ExecContext(ctx, `INSERT INTO operators (id, name, name_key, created_ms) VALUES ('op_1', 'Old', 'old', 1)`)
		must(t, err)
		_, err = db.ExecContext(ctx, `INSERT INTO operator_accounts (id, operator_id, email, pw_hash, created_ms) VALUES ('opa_1', 'op_1', 'old@example.com', 'x', 1)`)
		must(t, err)
		db.Close()
		s := mustOpen(t, dsn, newClock(), nil)
		got, err := s.OperatorAccountByEmail(ctx, "old@example.com")
		must(t, err)
		if got.Role != store.RoleOwner {
			t.Fatalf("role after migration = %q, want owner", got.Role)
		}
		if _, err := store.RawExec(s, ctx, `UPDATE operator_accounts SET role = 'admin' WHERE id = 'opa_1'`); err == nil {
			t.Fatal("the schema took role 'admin'")
		}
	})
}
