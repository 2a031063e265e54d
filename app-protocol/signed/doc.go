// Package signed holds the two messages that carry money — the grant (cloud
// → device: "run this machine up to this cap at this price, once") and the
// usage report (device → cloud: "this is what was delivered") — in a
// canonical binary encoding, signed with Ed25519.
//
// # Why a canonical binary encoding
//
// Signatures are over bytes, not over JSON text: JSON has many spellings of
// one value (key order, whitespace, number forms, escapes), and any
// re-encoding by a broker, a phone relay or a library would break or, worse,
// let two parties disagree about what was signed. Each message has exactly
// one encoding: fixed field order, big-endian integers, strings as one
// length byte then restricted ASCII, times as Unix milliseconds, and strict
// decoders that refuse short input, trailing bytes, unknown versions and
// any field out of range. The first two bytes are a type tag ('G', 'U') and
// a layout version, so a signature over a grant can never be presented as a
// usage report. The layouts are written out on [Grant.MarshalBinary] and
// [Usage.MarshalBinary]; app-protocol/testdata/vectors.json has bytes and
// signatures to check an implementation against.
//
// On the wire (MQTT JSON, the phone API) a signed message is the body
// followed by its 64-byte signature, carried as standard base64.
//
// # What a captured message cannot do
//
// A grant names its device, machine, slot, price, caps, expiry and a fresh
// session ID, and is signed by the cloud; [VerifyGrant] refuses it for
// another device or machine, after expiry, or for a session the device has
// seen before, and any edit breaks the signature. A usage report is signed
// by the device, bound to its grant by [CheckAgainstGrant] (units and amount
// within the caps, same price), and [UsageGuard] states the cloud's rule
// that settles each session once: a replayed report is a Duplicate that is
// acknowledged and charges nothing.
//
// # Ed25519 rather than HMAC-SHA256 for usage reports
//
// HMAC-SHA256 with full 32-byte tags is cheaper (a few microseconds on any
// board) and its keys are shorter, but it is symmetric: the cloud must hold
// every device's secret, so whoever reads the cloud's key table can forge
// any device's usage, an operator disputing a charge cannot be shown proof
// that only the device could have made, and a phone relaying a report
// offline cannot check it. Ed25519 keeps the device's private key on the
// device alone; the cloud, auditors and phones verify with the public key.
// Its cost is small where it matters: one signature per session (about
// 19 µs on x86-64 here, on a Cortex-A7 board an order of magnitude more, not measured here), 64 bytes per
// report. The device's identity key for the rotating proximity ID is a
// separate, symmetric AES key (package proxid), because the resolver must
// compute IDs.
//
// # Benchmarks
//
// go test -bench . -benchmem ./app-protocol/signed/ on the 2-core x86-64
// development machine (Go 1.26):
//
//	BenchmarkSignGrant-2     18.5 µs/op   336 B/op   2 allocs/op
//	BenchmarkVerifyGrant-2   41.7 µs/op    64 B/op   6 allocs/op
//	BenchmarkSignUsage-2     18.2 µs/op   384 B/op   2 allocs/op
//	BenchmarkOpenUsage-2     42.2 µs/op    64 B/op   6 allocs/op
package signed
