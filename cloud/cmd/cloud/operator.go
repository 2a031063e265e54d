package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"beaconvend/cloud/opadmin"
)

// operatorFlags are the flags of the `cloud operator` commands (package
// opadmin has their logic). Passwords come from -password-file or
// -password-stdin only.
type operatorFlags struct {
	Name, Operator, Email string
	Role                  string // add-account, role: owner, manager, technician or viewer
	Password              opadmin.PasswordSource
	Stdin                 io.Reader // -password-stdin reads it; os.Stdin when nil
}

// flags adds the flags of `cloud operator <cmd>`.
func (o *operatorFlags) flags(fs *flag.FlagSet, cmd string) {
	switch cmd {
	case "add":
		fs.StringVar(&o.Name, "name", "", "operator (tenant) name, unique whatever its case")
		fs.StringVar(&o.Email, "email", "", "console login email of its first account")
	case "add-account":
		fs.StringVar(&o.Operator, "operator", "", "the operator: its id (op_…) or its name")
		fs.StringVar(&o.Email, "email", "", "console login email of the new account")
		fs.StringVar(&o.Role, "role", "owner", "the account's role: owner, manager, technician or viewer")
	case "role":
		fs.StringVar(&o.Email, "email", "", "console login email of the account")
		fs.StringVar(&o.Role, "role", "", "the new role: owner, manager, technician or viewer (an operator keeps at least one enabled owner)")
		return
	case "password":
		fs.StringVar(&o.Email, "email", "", "console login email of the account; every session of it ends")
	default: // disable, enable
		fs.StringVar(&o.Email, "email", "", "console login email of the account")
		return
	}
	fs.StringVar(&o.Password.File, "password-file", "", "read the console password (8-72 bytes, one line) from this file")
	fs.BoolVar(&o.Password.FromStdin, "password-stdin", false, "read the console password (8-72 bytes, one line) from standard input")
	fs.Func("password", "not accepted: use -password-file or -password-stdin", func(string) error {
		return fmt.Errorf("passwords are not taken on the command line (ps and shell history show them): use -password-file FILE or -password-stdin")
	})
}

// operatorRun runs `cloud operator <cmd>` and prints its opadmin.Result.
func (m *Main) operatorRun(ctx context.Context, cmd string) error {
	a := &opadmin.Admin{Store: m.Store}
	o := m.op
	o.Password.Stdin = o.Stdin
	var r opadmin.Result
	var err error
	switch cmd {
	case "add", "add-account", "password":
		var pw string
		if pw, err = opadmin.ReadPassword(o.Password); err != nil {
			return err
		}
		switch cmd {
		case "add":
			r, err = a.AddOperator(ctx, o.Name, o.Email, pw)
		case "add-account":
			r, err = a.AddAccountRole(ctx, o.Operator, o.Email, pw, o.Role)
		default:
			r, err = a.SetPassword(ctx, o.Email, pw)
		}
	case "disable", "enable":
		r, err = a.SetDisabled(ctx, o.Email, cmd == "disable")
	case "role":
		r, err = a.SetRole(ctx, o.Email, o.Role)
	default:
		return errUsage
	}
	if err != nil {
		return err
	}
	return m.printJSON(r)
}

// operatorID returns the ID of the operator ref names: its ID (op_…) or
// its name, compared case-insensitively.
func (m *Main) operatorID(ctx context.Context, ref string) (string, error) {
	o, err := (&opadmin.Admin{Store: m.Store}).Operator(ctx, ref)
	return o.ID, err
}
