package vend

import "fmt"

// Unit is what a machine meters. The numeric values are part of the
// canonical encodings (app-protocol/signed) and never change.
type Unit uint8

// Metering units.
const (
	UnitML     Unit = 1 // millilitres of water
	UnitSecond Unit = 2 // seconds of running time (dryers)
	UnitCycle  Unit = 3 // whole machine cycles (washers)
	UnitItem   Unit = 4 // vended items
)

var unitNames = map[Unit]string{UnitML: "ml", UnitSecond: "s", UnitCycle: "cycle", UnitItem: "item"}

// String returns the unit's wire name: ml, s, cycle, item.
func (u Unit) String() string {
	if n, ok := unitNames[u]; ok {
		return n
	}
	return fmt.Sprintf("unit(%d)", uint8(u))
}

// Valid reports whether u is a known unit.
func (u Unit) Valid() bool { _, ok := unitNames[u]; return ok }

// MarshalText encodes the wire name.
func (u Unit) MarshalText() ([]byte, error) {
	if !u.Valid() {
		return nil, Errorf(ErrUnit, "%d", uint8(u))
	}
	return []byte(u.String()), nil
}

// UnmarshalText decodes a wire name, or returns ErrUnit.
func (u *Unit) UnmarshalText(b []byte) error {
	for k, n := range unitNames {
		if n == string(b) {
			*u = k
			return nil
		}
	}
	return Errorf(ErrUnit, "%q", string(b))
}

// MachineKind is the kind of machine a controller drives.
type MachineKind string

// Machine kinds.
const (
	KindWater   MachineKind = "water"   // a dispenser: valve or pump, flow meter; metered in ml
	KindWasher  MachineKind = "washer"  // coin-pulse credit, a running input; metered in cycles
	KindDryer   MachineKind = "dryer"   // coin-pulse credit bought as time; metered in seconds
	KindVending MachineKind = "vending" // one motor per slot, a drop sensor; metered in items
)

// Unit returns the unit a machine of this kind is metered in, or 0 for an unknown kind.
func (k MachineKind) Unit() Unit {
	switch k {
	case KindWater:
		return UnitML
	case KindWasher:
		return UnitCycle
	case KindDryer:
		return UnitSecond
	case KindVending:
		return UnitItem
	}
	return 0
}

// Outcome is how a session ended. The numeric values are part of the
// canonical usage encoding and never change.
type Outcome uint8

// Session outcomes.
const (
	OutcomeCompleted   Outcome = 1 // the machine finished what was bought (cycle end, item dropped)
	OutcomeCapReached  Outcome = 2 // metering reached the authorized cap
	OutcomeUserStop    Outcome = 3 // the payer stopped it
	OutcomeNoFlow      Outcome = 4 // water: no pulses within the allowed pause
	OutcomeFault       Outcome = 5 // the board or machine faulted; FaultCode says which
	OutcomeVendFailed  Outcome = 6 // vending: no drop detected (jam); nothing delivered
	OutcomeNotStarted  Outcome = 7 // the grant expired or was cancelled before the machine started
	OutcomeInterrupted Outcome = 8 // power cut or shutdown; finished from the journal
)

var outcomeNames = map[Outcome]string{
	OutcomeCompleted: "completed", OutcomeCapReached: "cap_reached", OutcomeUserStop: "user_stop",
	OutcomeNoFlow: "no_flow", OutcomeFault: "fault", OutcomeVendFailed: "vend_failed",
	OutcomeNotStarted: "not_started", OutcomeInterrupted: "interrupted",
}

// String returns the wire name, e.g. "cap_reached".
func (o Outcome) String() string {
	if n, ok := outcomeNames[o]; ok {
		return n
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Valid reports whether o is a known outcome.
func (o Outcome) Valid() bool { _, ok := outcomeNames[o]; return ok }

// MarshalText encodes the wire name.
func (o Outcome) MarshalText() ([]byte, error) {
	if !o.Valid() {
		return nil, Errorf(ErrOutcome, "%d", uint8(o))
	}
	return []byte(o.String()), nil
}

// UnmarshalText decodes a wire name, or returns ErrOutcome.
func (o *Outcome) UnmarshalText(b []byte) error {
	for k, n := range outcomeNames {
		if n == string(b) {
			*o = k
			return nil
		}
	}
	return Errorf(ErrOutcome, "%q", string(b))
}

// Vocabulary errors.
var (
	ErrUnit    = E(Invalid, "vend.unit", "vend: unknown unit")
	ErrOutcome = E(Invalid, "vend.outcome", "vend: unknown outcome")
)
