// Package vend is the shared vocabulary of beaconvend: the error kinds every
// part reports in, money as integer minor units with a currency, prices,
// metering units, machine kinds and session outcomes.
//
// It imports only the standard library, and every other package of the
// project may import it; it is the centre that the adapters (hw, controller,
// cloud) talk in terms of.
//
// # Errors
//
// Every error that crosses a package boundary carries a [Kind] (what the
// caller can do about it: invalid, not_found, conflict, unauthorized,
// transient, internal) and a stable machine-readable code such as
// "frame.truncated". Codes are what the test vectors name and what the phone
// API returns, so an app written in Kotlin or Swift can branch on them. Error
// strings are lowercase and begin with the package: "beacon: truncated AD
// structure at offset 3". Wrap with %w; [KindOf] and [CodeOf] walk the chain.
//
// # Money
//
// Amounts are int64 minor units (cents, fen) of an ISO 4217 currency; there
// are no floats anywhere money is computed. A [Price] is Minor units of money
// per Per metered units (for example 50 cents per 1000 ml), and
// [Price.Cost] rounds down, so a payer is never charged for a fraction of a
// unit that was not delivered.
package vend
