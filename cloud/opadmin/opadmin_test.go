package opadmin_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/opadmin"
	"beaconvend/cloud/store"
)

// forEachDB runs fn with a fresh store on SQLite and on PostgreSQL.
func forEachDB(t *testing.T, fn func(t *testing.T, a *opadmin.Admin)) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "c.db")
			if db == "postgres" {
				if os.Getenv("VEND_PG_DSN") == "" {
					svctest.Missing(t, "PostgreSQL (VEND_PG_DSN) for the PostgreSQL half of cloud/opadmin", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
				}
				dsn = svctest.PostgresDSN(t, "vend_opadmin_test")
			}
			st, err := store.Open(context.Background(), dsn, &store.Opts{BcryptCost: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			fn(t, &opadmin.Admin{Store: st})
		})
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if vend.CodeOf(err) != code {
		t.Fatalf("error = %v (code %q), want code %q", err, vend.CodeOf(err), code)
	}
}

func TestReadPassword(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		src     opadmin.PasswordSource
		want    string
		mention string // of the error, when want is ""
	}{
		{opadmin.PasswordSource{File: file("nl", "secret pass\n")}, "secret pass", ""},
		{opadmin.PasswordSource{File: file("crlf", "secret pass\r\n")}, "secret pass", ""},
		{opadmin.PasswordSource{File: file("bare", " leading and trailing blanks kept ")}, " leading and trailing blanks kept ", ""},
		{opadmin.PasswordSource{FromStdin: true, Stdin: strings.NewReader("from stdin 1\n")}, "from stdin 1", ""},
		{opadmin.PasswordSource{}, "", "never taken from the command line"},
		{opadmin.PasswordSource{File: file("x", "secret pass"), FromStdin: true}, "", "not both"},
		{opadmin.PasswordSource{File: filepath.Join(dir, "missing")}, "", "missing"},
		{opadmin.PasswordSource{File: file("empty", "\n")}, "", "empty"},
		{opadmin.PasswordSource{File: file("two", "secret pass\nsecond line\n")}, "", "more than one line"},
		{opadmin.PasswordSource{File: file("short", "short\n")}, "", "5 bytes, want 8-72"},
		{opadmin.PasswordSource{File: file("long", strings.Repeat("p", 73))}, "", "73 bytes"},
		{opadmin.PasswordSource{FromStdin: true, Stdin: strings.NewReader(strings.Repeat("p", 5000))}, "", "longer than 4096"},
	} {
		got, err := opadmin.ReadPassword(c.src)
		if c.want != "" {
			if err != nil || got != c.want {
				t.Errorf("ReadPassword(%+v) = %q, %v; want %q", c.src, got, err, c.want)
			}
			continue
		}
		if err == nil || vend.CodeOf(err) != "opadmin.password" || !strings.Contains(err.Error(), c.mention) || !strings.HasPrefix(err.Error(), "opadmin: ") {
			t.Errorf("ReadPassword(%+v) = %q, %v; want an opadmin.password error mentioning %q", c.src, got, err, c.mention)
		}
	}
}

// Adding an operator a second time under the same name, in any case, is a
// conflict that writes nothing; before names were unique it made a second
// tenant.
func TestAddOperatorTwice(t *testing.T) {
	forEachDB(t, func(t *testing.T, a *opadmin.Admin) {
		ctx := context.Background()
		r, err := a.AddOperator(ctx, "Acme Water", "ops@acme.example", "acme-password")
		if err != nil || !strings.HasPrefix(r.Operator, "op_") || r.Email != "ops@acme.example" || r.State != "enabled" {
			t.Fatalf("AddOperator = %+v, %v", r, err)
		}
		_, err = a.AddOperator(ctx, "ACME water", "boss@acme.example", "acme-password")
		wantCode(t, err, "operator.name_taken")
		if _, err := a.Store.OperatorAccountByEmail(ctx, "boss@acme.example"); err == nil {
			t.Fatal("the refused add wrote its account")
		}
		o, err := a.Operator(ctx, "acme WATER")
		if err != nil || o.ID != r.Operator {
			t.Fatalf("Operator(acme WATER) = %+v, %v; want %s", o, err, r.Operator)
		}
		o, err = a.Operator(ctx, r.Operator)
		if err != nil || o.Name != "Acme Water" {
			t.Fatalf("Operator(%s) = %+v, %v", r.Operator, o, err)
		}
		_, err = a.Operator(ctx, "op_0000000000000000")
		wantCode(t, err, "operator.not_found")
		_, err = a.AddOperator(ctx, "", "x@acme.example", "acme-password")
		wantCode(t, err, "opadmin.usage")
	})
}

// A further account on an existing operator (by name or ID) logs in to
// the same tenant; a password reset ends the account's sessions; a
// disabled account's sessions end and it cannot log in until enabled.
func TestAccounts(t *testing.T) {
	forEachDB(t, func(t *testing.T, a *opadmin.Admin) {
		ctx := context.Background()
		first, err := a.AddOperator(ctx, "Acme", "ops@acme.example", "acme-password")
		if err != nil {
			t.Fatal(err)
		}
		second, err := a.AddAccount(ctx, "acme", "night@acme.example", "night-password")
		if err != nil || second.Operator != first.Operator || second.Account == first.Account {
			t.Fatalf("AddAccount = %+v, %v", second, err)
		}
		_, err = a.AddAccount(ctx, first.Operator, "night@acme.example", "night-password")
		wantCode(t, err, "email.taken")
		_, err = a.AddAccount(ctx, "Nobody Inc", "x@nobody.example", "nobody-password")
		wantCode(t, err, "operator.not_found")

		lim := store.ConsoleLimits{TTL: time.Hour, Idle: time.Hour}
		tok, _, err := a.Store.StartConsoleSession(ctx, second.Account, lim)
		if err != nil {
			t.Fatal(err)
		}
		r, err := a.SetPassword(ctx, "night@acme.example", "changed-password")
		if err != nil || r.RevokedSessions == nil || *r.RevokedSessions != 1 {
			t.Fatalf("SetPassword = %+v, %v", r, err)
		}
		_, err = a.Store.ConsoleSessionByToken(ctx, tok)
		wantCode(t, err, "auth.token")
		if _, err := a.Store.AuthenticateOperator(ctx, "night@acme.example", "changed-password"); err != nil {
			t.Fatalf("log-in with the new password: %v", err)
		}

		tok, _, err = a.Store.StartConsoleSession(ctx, second.Account, lim)
		if err != nil {
			t.Fatal(err)
		}
		r, err = a.SetDisabled(ctx, "night@acme.example", true)
		if err != nil || r.State != "disabled" || *r.RevokedSessions != 1 {
			t.Fatalf("SetDisabled(true) = %+v, %v", r, err)
		}
		_, err = a.Store.ConsoleSessionByToken(ctx, tok)
		wantCode(t, err, "auth.token")
		_, err = a.Store.AuthenticateOperator(ctx, "night@acme.example", "changed-password")
		wantCode(t, err, "auth.account_disabled")
		if _, err := a.Store.AuthenticateOperator(ctx, "ops@acme.example", "acme-password"); err != nil {
			t.Fatalf("the operator's other account: %v", err)
		}
		r, err = a.SetDisabled(ctx, "night@acme.example", false)
		if err != nil || r.State != "enabled" {
			t.Fatalf("SetDisabled(false) = %+v, %v", r, err)
		}
		if _, err := a.Store.AuthenticateOperator(ctx, "night@acme.example", "changed-password"); err != nil {
			t.Fatalf("log-in after enable: %v", err)
		}
		_, err = a.SetDisabled(ctx, "ghost@acme.example", true)
		wantCode(t, err, "operator_account.not_found")
		_, err = a.SetPassword(ctx, "", "changed-password")
		wantCode(t, err, "opadmin.usage")
	})
}

// add-account -role and role: accounts get the role asked for (owner by
// default), an unknown role writes nothing, the last enabled owner keeps
// its role, and each change is in the operator's audit log as the
// command line's.
func TestRoles(t *testing.T) {
	forEachDB(t, func(t *testing.T, a *opadmin.Admin) {
		ctx := context.Background()
		r, err := a.AddOperator(ctx, "Roles", "boss@roles.example", "password-123")
		if err != nil || r.Role != "owner" {
			t.Fatalf("AddOperator = %+v, %v; want an owner", r, err)
		}
		if r, err := a.AddAccount(ctx, "Roles", "second@roles.example", "password-123"); err != nil || r.Role != "owner" {
			t.Fatalf("AddAccount = %+v, %v; want an owner by default", r, err)
		}
		_, err = a.AddAccountRole(ctx, "Roles", "x@roles.example", "password-123", "admin")
		wantCode(t, err, "store.input")
		if _, err := a.Store.OperatorAccountByEmail(ctx, "x@roles.example"); err == nil {
			t.Fatal("an account with an unknown role was written")
		}
		tech, err := a.AddAccountRole(ctx, "Roles", "tech@roles.example", "password-123", "technician")
		if err != nil || tech.Role != "technician" {
			t.Fatalf("AddAccountRole = %+v, %v", tech, err)
		}
		if r, err := a.SetRole(ctx, "tech@roles.example", "manager"); err != nil || r.Role != "manager" {
			t.Fatalf("SetRole = %+v, %v", r, err)
		}
		_, err = a.SetRole(ctx, "tech@roles.example", "")
		wantCode(t, err, "opadmin.usage")
		if _, err := a.SetRole(ctx, "second@roles.example", "viewer"); err != nil {
			t.Fatal(err)
		}
		_, err = a.SetRole(ctx, "boss@roles.example", "viewer")
		wantCode(t, err, "account.last_owner")
		es, err := a.Store.AuditLog(ctx, r.Operator, store.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range es {
			if e.Email != "cli" || e.Account != "" {
				t.Errorf("entry %+v is not the command line's", e)
			}
			got = append(got, e.Action+" "+e.Target)
		}
		want := "account.role second@roles.example|account.role tech@roles.example|account.add tech@roles.example|account.add second@roles.example"
		if strings.Join(got, "|") != want {
			t.Errorf("audit = %q, want %q", strings.Join(got, "|"), want)
		}
	})
}
