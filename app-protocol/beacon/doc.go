// Package beacon encodes and decodes the beaconvend BLE advertisement: a
// legacy advertising PDU (at most 31 bytes, so every phone and scanner
// hears it) that carries the controller's rotating proximity ID (package
// proxid), its machine state and its calibrated TX power.
//
// # Layout, version 1 (19 bytes)
//
//	02 01 06                  Flags AD: LE General Discoverable, BR/EDR not supported
//	0F FF <company LE, 2>     Manufacturer Specific Data AD, 15 bytes follow
//	   BC                     magic: a beaconvend frame
//	   01                     frame version
//	   <state>                bits 0-1: 0 idle, 1 busy, 2 fault, 3 offline;
//	                          bit 2: offline-capable (accepts phone-relayed grants); bits 3-7: zero
//	   <tx power>             int8 dBm measured at 0 m (as Eddystone), for distance estimates
//	   <proximity ID, 8>      the current window's rotating ID
//
// The company ID defaults to 0xFFFF, which the Bluetooth SIG reserves for
// tests; an operator with its own SIG company identifier configures it. The
// magic byte keeps other test devices on 0xFFFF from being misread.
// Decoders refuse unknown versions, reserved bits and wrong lengths with
// typed errors (codes "frame.*"), so a later layout gets a new version
// number rather than a silent misreading. An optional scan response carries
// a short human name as the Complete Local Name.
//
// How each platform hands the frame over: raw advertising data
// (Linux HCI, go-ble's Advertisement.LEAdvertisingReportRaw) goes to
// [Decode]; iOS's kCBAdvDataManufacturerData (company ID first) goes to
// [DecodeManufacturerData]; Android's
// ScanRecord.getManufacturerSpecificData(companyID) omits the company ID,
// so prepend it (little-endian) first.
//
// go-ble's own linux/adv parser reads these frames correctly (see the
// cross-check test); its Flags() and TxPower() accessors are known to
// misreport, which is one reason the TX power travels inside our payload.
//
// # Benchmarks
//
// go test -run XXX -bench . -benchmem ./app-protocol/beacon/ (2-core x86-64, Go 1.26):
//
//	BenchmarkEncode-2   35.5 ns/op   40 B/op   2 allocs/op
//	BenchmarkDecode-2   51.3 ns/op   64 B/op   1 allocs/op
package beacon
