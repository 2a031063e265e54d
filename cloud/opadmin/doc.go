// Package opadmin is the logic of the `cloud operator` commands: operators
// (tenants) and the accounts people log in to the operator console and
// the operator API with, administered next to the cloud's database.
//
//	cloud operator add         -name N -email E (-password-file F | -password-stdin)
//	cloud operator add-account -operator OP -email E [-role R] (-password-file F | -password-stdin)
//	cloud operator role        -email E -role R
//	cloud operator password    -email E (-password-file F | -password-stdin)
//	cloud operator disable     -email E
//	cloud operator enable      -email E
//
// Passwords are read from a file or from standard input (ReadPassword),
// never from the command line, where ps and shell histories would show
// them. Operator names are unique, compared case-insensitively; adding a
// taken name is store.ErrOperatorExists and writes nothing. Setting a
// password or disabling an account ends every console session of the
// account at once (store.SetOperatorPassword,
// store.SetOperatorAccountDisabled): the operator API checks sessions on
// every request.
//
// Errors begin with "opadmin:" or come from the store ("store:").
package opadmin
