package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
)

// passwordFile writes pw to a 0600 file for -password-file and returns
// its path.
func passwordFile(t testing.TB, pw string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(pw + "\n"); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// cliTry runs one cloud command in process with stdin and returns what it
// printed (decoded) or its error.
func cliTry(t *testing.T, stdin string, args ...string) (map[string]any, error) {
	t.Helper()
	var out bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, io.Discard
	m.StoreOpts.BcryptCost = 4
	m.op.Stdin = strings.NewReader(stdin)
	err := m.ParseFlags(args)
	if err == nil {
		err = m.Run(context.Background())
	}
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("cloud %s printed %q", strings.Join(args, " "), out.String())
	}
	return res, nil
}

func cliOK(t *testing.T, stdin string, args ...string) map[string]any {
	t.Helper()
	res, err := cliTry(t, stdin, args...)
	if err != nil {
		t.Fatalf("cloud %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// The operator commands end to end, on SQLite and PostgreSQL: passwords
// only from a file or standard input; a second `operator add` of one name
// (any case) is a conflict, not a second tenant; a further account joins
// the same tenant; `password` and `disable` end the account's sessions on
// the running cloud at its next request, and a disabled account cannot log
// in until `enable`.
func TestOperatorCommands(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			data := t.TempDir()
			dsn := "sqlite:" + filepath.Join(data, "cloud.db")
			if db == "postgres" {
				if os.Getenv("VEND_PG_DSN") == "" {
					svctest.Missing(t, "PostgreSQL (VEND_PG_DSN) for the PostgreSQL half of the operator commands", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
				}
				dsn = svctest.PostgresDSN(t, "vend_cloudcmd_test")
			}
			common := []string{"-data", data, "-db", dsn}
			cmd := func(args ...string) []string { return append(args, common...) }

			_, err := cliTry(t, "", cmd("operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password", "acme-password-1")...)
			if err == nil || !strings.Contains(err.Error(), "-password-file") {
				t.Fatalf("add with -password on the command line = %v, want a refusal naming -password-file", err)
			}
			_, err = cliTry(t, "", cmd("operator", "add", "-name", "Acme", "-email", "ops@acme.example")...)
			if vend.CodeOf(err) != "opadmin.password" {
				t.Fatalf("add without a password = %v, want opadmin.password", err)
			}
			first := cliOK(t, "", cmd("operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))...)
			_, err = cliTry(t, "", cmd("operator", "add", "-name", "ACME", "-email", "boss@acme.example", "-password-file", passwordFile(t, "acme-password-2"))...)
			if vend.CodeOf(err) != "operator.name_taken" {
				t.Fatalf("second add of ACME = %v, want operator.name_taken", err)
			}
			night := cliOK(t, "night-password-1\n", cmd("operator", "add-account", "-operator", "acme", "-email", "night@acme.example", "-password-stdin")...)
			if night["operator"] != first["operator"] || night["account"] == first["account"] {
				t.Fatalf("add-account = %v, want a new account of %v", night, first["operator"])
			}

			m := serveInProcessWith(t, nil, common...)
			login := func(email, pw string) (int, string) {
				resp, err := http.Post(m.HTTPURL+"/v1/operator/auth/login", "application/json", strings.NewReader(fmt.Sprintf(`{"email":%q,"password":%q}`, email, pw)))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var b struct {
					Token string
					Error struct{ Code string }
				}
				json.NewDecoder(resp.Body).Decode(&b)
				return resp.StatusCode, b.Token + b.Error.Code
			}
			devices := func(tok string) int {
				req, _ := http.NewRequest("GET", m.HTTPURL+"/v1/operator/devices", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			_, ops := login("ops@acme.example", "acme-password-1")
			_, nightTok := login("night@acme.example", "night-password-1")
			if devices(ops) != 200 || devices(nightTok) != 200 {
				t.Fatal("fresh log-ins do not reach the operator API")
			}

			r := cliOK(t, "", cmd("operator", "disable", "-email", "night@acme.example")...)
			if r["state"] != "disabled" || r["revoked_sessions"] != 1.0 {
				t.Fatalf("disable printed %v", r)
			}
			if code := devices(nightTok); code != 401 {
				t.Fatalf("disabled account's token: %d, want 401", code)
			}
			if code, ec := login("night@acme.example", "night-password-1"); code != 401 || ec != "auth.account_disabled" {
				t.Fatalf("disabled account's log-in: %d %s", code, ec)
			}
			if devices(ops) != 200 {
				t.Fatal("the other account's session ended too")
			}
			cliOK(t, "", cmd("operator", "enable", "-email", "night@acme.example")...)
			if code, _ := login("night@acme.example", "night-password-1"); code != 200 {
				t.Fatalf("enabled account's log-in: %d", code)
			}

			r = cliOK(t, "reset-password-1", cmd("operator", "password", "-email", "ops@acme.example", "-password-stdin")...)
			if r["revoked_sessions"] != 1.0 {
				t.Fatalf("password printed %v", r)
			}
			if code := devices(ops); code != 401 {
				t.Fatalf("token after a password reset: %d, want 401", code)
			}
			if code, _ := login("ops@acme.example", "reset-password-1"); code != 200 {
				t.Fatalf("log-in with the reset password: %d", code)
			}
			_, err = cliTry(t, "", cmd("operator", "disable", "-email", "ghost@acme.example")...)
			if vend.CodeOf(err) != "operator_account.not_found" {
				t.Fatalf("disable of an unknown account = %v", err)
			}
		})
	}
}
