package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// Errors the client ends with; each has its own exit status (exitCode).
var (
	// ErrNoMachine: nothing resolvable in range, or not the device asked for.
	ErrNoMachine = vend.E(vend.NotFound, "phone.no_machine", "phone: no machine in range")
	// ErrMachineBusy: the cloud answered machine.busy (another session runs).
	ErrMachineBusy = vend.E(vend.Conflict, "machine.busy", "phone: the machine is busy")
	// ErrMachineUnavailable: machine.offline, machine.fault, device.refused, device.no_reply.
	ErrMachineUnavailable = vend.E(vend.Conflict, "machine.unavailable", "phone: the machine cannot sell now")
	// ErrFunds: funds.insufficient (or a payment channel's limit).
	ErrFunds = vend.E(vend.Conflict, "funds.insufficient", "phone: not enough money")
	// ErrChoice: a machine, slot or cap was not chosen and cannot be asked.
	ErrChoice = vend.E(vend.Invalid, "phone.choice", "phone: nothing chosen")
	// ErrSession: the session ended without a receipt (failed or expired).
	ErrSession = vend.E(vend.Conflict, "phone.session", "phone: session did not run")
)

// apiHint is what the user reads for an API error code, and the sentinel it
// becomes.
var apiHint = map[string]struct {
	err  *vend.Error
	hint string
}{
	"machine.busy":       {ErrMachineBusy, "another session is running on it; try another machine or wait"},
	"machine.offline":    {ErrMachineUnavailable, "it is offline (the cloud has not heard from it)"},
	"machine.fault":      {ErrMachineUnavailable, "it reports a fault"},
	"device.refused":     {ErrMachineUnavailable, "it refused the grant"},
	"device.no_reply":    {ErrMachineUnavailable, "it has not answered yet; money may be held until the session ends: check it before assuming nothing was charged"},
	"slot.jammed":        {ErrMachineUnavailable, "that slot is jammed; pick another"},
	"slot.empty":         {ErrMachineUnavailable, "that slot is sold out; pick another"},
	"price.changed":      {ErrChoice, "the price changed; look at the new price and start again"},
	"device.disabled":    {ErrMachineUnavailable, "it is disabled by its operator"},
	"funds.insufficient": {ErrFunds, "top up the wallet (-topup) or lower the cap"},
	"source.limit":       {ErrFunds, "the payment source's limit is reached"},
	"cap.too_small":      {ErrChoice, "the cap does not buy one unit"},
	"machine.not_found":  {ErrChoice, "no such machine or slot on that device"},
	"proximity.expired":  {ErrNoMachine, "the beacon ID expired; scan again"},
	"proximity.unknown":  {ErrNoMachine, "the cloud does not know that beacon"},
}

// mapAPIError turns an API error with a known code into the client's own
// error (for its exit status) with a hint; detail, when set, is added
// (such as the wallet balance). Other errors are returned unchanged.
func mapAPIError(err error, detail func() string) error {
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) {
		return err
	}
	h, ok := apiHint[ae.Code]
	if !ok {
		return err
	}
	msg := h.hint
	if detail != nil {
		if d := detail(); d != "" {
			msg = d + "; " + msg
		}
	}
	return fmt.Errorf("%w: %s (%s)", h.err, msg, ae.Code)
}

// exitCode is the process exit status for Run's error.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrNoMachine):
		return ExitNoMachine
	case errors.Is(err, ErrMachineBusy), errors.Is(err, ErrMachineUnavailable), errors.Is(err, ErrNoCentral), errors.Is(err, ErrRelay):
		return ExitMachine
	case errors.Is(err, ErrFunds), errors.Is(err, ErrLimit):
		return ExitFunds
	case errors.Is(err, ErrPayment), errors.Is(err, ErrWithdrawal):
		return ExitPayment
	}
	return ExitError
}

// oneLine makes err one line, starting with "phone:".
func oneLine(err error) string {
	s := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
	if !strings.HasPrefix(s, "phone:") {
		s = "phone: " + s
	}
	return s
}
