package opadmin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// ErrPassword is a password that cannot be read or used: no source, two
// sources, an unreadable or empty file, more than one line, a length
// outside 8-72 bytes.
var ErrPassword = vend.E(vend.Invalid, "opadmin.password", "opadmin: password")

// ErrUsage is a command without a flag it needs; the message names it.
var ErrUsage = vend.E(vend.Invalid, "opadmin.usage", "opadmin: usage")

// Password length bounds, in bytes (bcrypt reads at most 72).
const (
	MinPassword = 8
	MaxPassword = 72
)

// PasswordSource says where a password comes from: File, or Stdin when
// FromStdin is set; exactly one of the two.
type PasswordSource struct {
	File      string
	FromStdin bool
	Stdin     io.Reader // os.Stdin when nil
}

// ReadPassword reads the password of src: the whole file (or standard
// input, at most 4 KiB) less one trailing line end ("\n" or "\r\n"). It
// must be one line of MinPassword to MaxPassword bytes. Errors: ErrPassword
// naming the source and what is wrong.
func ReadPassword(src PasswordSource) (string, error) {
	var b []byte
	var err error
	what := src.File
	switch {
	case src.File != "" && src.FromStdin:
		return "", vend.Errorf(ErrPassword, "give -password-file or -password-stdin, not both")
	case src.FromStdin:
		what = "standard input"
		in := src.Stdin
		if in == nil {
			in = os.Stdin
		}
		b, err = io.ReadAll(io.LimitReader(in, 4097))
	case src.File != "":
		var f *os.File
		if f, err = os.Open(src.File); err == nil {
			b, err = io.ReadAll(io.LimitReader(f, 4097))
			f.Close()
		}
	default:
		return "", vend.Errorf(ErrPassword, "give -password-file FILE or -password-stdin (passwords are never taken from the command line)")
	}
	if err != nil {
		return "", vend.Errorf(ErrPassword, "read %s: %v", what, err)
	}
	if len(b) > 4096 {
		return "", vend.Errorf(ErrPassword, "%s: longer than 4096 bytes", what)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) == 0:
		return "", vend.Errorf(ErrPassword, "%s: empty", what)
	case bytes.ContainsAny(b, "\r\n\x00"):
		return "", vend.Errorf(ErrPassword, "%s: more than one line (or a NUL byte)", what)
	case len(b) < MinPassword || len(b) > MaxPassword:
		return "", vend.Errorf(ErrPassword, "%s: %d bytes, want %d-%d", what, len(b), MinPassword, MaxPassword)
	}
	return string(b), nil
}

// Result is what a command prints, as one JSON line.
type Result struct {
	Operator        string `json:"operator"`
	Name            string `json:"name,omitempty"`
	Account         string `json:"account,omitempty"`
	Email           string `json:"email,omitempty"`
	State           string `json:"state,omitempty"`            // account: enabled or disabled
	Role            string `json:"role,omitempty"`             // account: owner, manager, technician or viewer
	RevokedSessions *int   `json:"revoked_sessions,omitempty"` // console sessions this command ended
}

func accountResult(a store.OperatorAccount, revoked *int) Result {
	state := "enabled"
	if a.Disabled {
		state = "disabled"
	}
	return Result{Operator: a.OperatorID, Account: a.ID, Email: a.Email, State: state, Role: a.Role, RevokedSessions: revoked}
}

// Admin administers operators and console accounts in Store.
type Admin struct {
	Store *store.Store
}

// Operator returns the operator that ref names: its ID (op_…) or its name
// (case-insensitive). Errors: store.ErrOperatorNotFound.
func (a *Admin) Operator(ctx context.Context, ref string) (store.Operator, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return store.Operator{}, vend.Errorf(store.ErrOperatorNotFound, "empty operator id or name")
	}
	if strings.HasPrefix(ref, "op_") {
		o, err := a.Store.GetOperator(ctx, ref)
		if !errors.Is(err, store.ErrOperatorNotFound) {
			return o, err
		}
	}
	return a.Store.OperatorByName(ctx, ref)
}

// AddOperator creates an operator and its first console account together
// (both or neither). Errors: store.ErrOperatorExists (the name, in any
// case), store.ErrEmailTaken, store.ErrInput.
func (a *Admin) AddOperator(ctx context.Context, name, email, password string) (Result, error) {
	if strings.TrimSpace(name) == "" || strings.TrimSpace(email) == "" {
		return Result{}, vend.Errorf(ErrUsage, "operator add needs -name and -email")
	}
	o, acc, err := a.Store.CreateOperatorWithAccount(ctx, name, email, password)
	if err != nil {
		return Result{}, err
	}
	r := accountResult(acc, nil)
	r.Name = o.Name
	return r, nil
}

// AddAccount adds an owner's console account to the operator ref names
// (ID or name). Errors: store.ErrOperatorNotFound, store.ErrEmailTaken,
// store.ErrInput.
func (a *Admin) AddAccount(ctx context.Context, ref, email, password string) (Result, error) {
	return a.AddAccountRole(ctx, ref, email, password, store.RoleOwner)
}

// AddAccountRole adds a console account with role (owner, manager,
// technician or viewer) to the operator ref names (ID or name), audited
// as account.add by the command line. Errors: store.ErrOperatorNotFound,
// store.ErrEmailTaken, store.ErrInput (also an unknown role).
func (a *Admin) AddAccountRole(ctx context.Context, ref, email, password, role string) (Result, error) {
	if strings.TrimSpace(email) == "" {
		return Result{}, vend.Errorf(ErrUsage, "operator add-account needs -operator and -email")
	}
	o, err := a.Operator(ctx, ref)
	if err != nil {
		return Result{}, err
	}
	acc, err := a.Store.CreateOperatorAccountRole(ctx, o.ID, email, password, role)
	if err != nil {
		return Result{}, err
	}
	if err := a.audit(ctx, o.ID, "account.add", acc.Email, nil, acc); err != nil {
		return Result{}, err
	}
	r := accountResult(acc, nil)
	r.Name = o.Name
	return r, nil
}

// SetRole gives the account of email role (owner, manager, technician or
// viewer), audited as account.role by the command line. Its sessions
// carry the new role from their next request. Errors:
// store.ErrAccountNotFound, store.ErrInput (an unknown role),
// store.ErrLastOwner (the operator's last enabled owner).
func (a *Admin) SetRole(ctx context.Context, email, role string) (Result, error) {
	if strings.TrimSpace(email) == "" || strings.TrimSpace(role) == "" {
		return Result{}, vend.Errorf(ErrUsage, "operator role needs -email and -role")
	}
	acc, err := a.Store.OperatorAccountByEmail(ctx, email)
	if err != nil {
		return Result{}, err
	}
	before, after, err := a.Store.SetOperatorAccountRole(ctx, acc.OperatorID, acc.ID, role)
	if err != nil {
		return Result{}, err
	}
	if before.Role != after.Role {
		if err := a.audit(ctx, acc.OperatorID, "account.role", after.Email, before, after); err != nil {
			return Result{}, err
		}
	}
	return accountResult(after, nil), nil
}

// auditAccount is what the audit log keeps of an account.
type auditAccount struct {
	Email    string `json:"email"`
	Role     string `json:"role"`
	Disabled bool   `json:"disabled"`
}

// audit writes an audit entry of operator made on the command line
// (account "", email "cli"). An account is recorded as its email, role
// and state.
func (a *Admin) audit(ctx context.Context, operator, action, target string, before, after any) error {
	enc := func(v any) (json.RawMessage, error) {
		switch x := v.(type) {
		case nil:
			return nil, nil
		case store.OperatorAccount:
			v = auditAccount{Email: x.Email, Role: x.Role, Disabled: x.Disabled}
		}
		return json.Marshal(v)
	}
	b, err := enc(before)
	if err != nil {
		return err
	}
	af, err := enc(after)
	if err != nil {
		return err
	}
	_, err = a.Store.AppendAudit(ctx, store.AuditEntry{Operator: operator, Email: "cli", Action: action, Target: target, Before: b, After: af})
	return err
}

// SetPassword sets the password of the account of email and ends every
// console session of it. Errors: store.ErrAccountNotFound, store.ErrInput.
func (a *Admin) SetPassword(ctx context.Context, email, password string) (Result, error) {
	if strings.TrimSpace(email) == "" {
		return Result{}, vend.Errorf(ErrUsage, "operator password needs -email")
	}
	acc, n, err := a.Store.SetOperatorPassword(ctx, email, password)
	if err != nil {
		return Result{}, err
	}
	if err := a.audit(ctx, acc.OperatorID, "account.password", acc.Email, nil, map[string]int{"revoked_sessions": n}); err != nil {
		return Result{}, err
	}
	return accountResult(acc, &n), nil
}

// SetDisabled disables (disabled true) or enables the account of email.
// Disabling ends every console session of it at once; enabling lets it log
// in again (old sessions stay ended). Errors: store.ErrAccountNotFound.
func (a *Admin) SetDisabled(ctx context.Context, email string, disabled bool) (Result, error) {
	if strings.TrimSpace(email) == "" {
		return Result{}, vend.Errorf(ErrUsage, "operator disable and enable need -email")
	}
	before, err := a.Store.OperatorAccountByEmail(ctx, email)
	if err != nil {
		return Result{}, err
	}
	acc, n, err := a.Store.SetOperatorAccountDisabled(ctx, email, disabled)
	if err != nil {
		return Result{}, err
	}
	if before.Disabled != disabled {
		action := "account.enable"
		if disabled {
			action = "account.disable"
		}
		if err := a.audit(ctx, acc.OperatorID, action, acc.Email, before, acc); err != nil {
			return Result{}, err
		}
	}
	return accountResult(acc, &n), nil
}
