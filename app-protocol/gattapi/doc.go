// Package gattapi is the contract of the board's BLE GATT service, over
// which a phone relays a session when the machine has no cloud link and
// claims a new board in the field. The written spec is
// app-protocol/GATT.md; its language-neutral vectors are
// app-protocol/testdata/gatt_vectors.json, checked by TestVectors.
//
// One primary service (ServiceUUID) with six characteristics:
//
//	GrantUUID      write, chunked   RelayGrant: signed grant + signed relay ticket (nonce)
//	ProgressUUID   read, notify     Progress: state, refusal reason, units, amount (19 bytes)
//	ReceiptUUID    read             Receipt: the device-signed usage report
//	AckUUID        write            Ack: the receipt's hash (phone), or the cloud's signed ack
//	ClaimInfoUUID  read             ClaimInfo: claimed or not, the board's public keys
//	BundleUUID     write, chunked   a provisioning bundle sealed to the board (provision.Seal)
//
// Every value is at most 512 bytes (MaxValue); a message longer than one
// value is split by Chunk into chunks of index, count and data and put
// back together by a Reassembler. CheckRelay is the check a board makes
// of a relayed grant, as a pure function so the board and the tests share
// it. Decoders are strict (one encoding per value), bounded, and return
// *vend.Error values with stable codes; they never panic (FuzzDecode,
// FuzzReassemble, FuzzCheckRelay).
//
// Security rests on signatures and sealing, not on the link: go-ble has no
// pairing, so the link is unencrypted and any phone may connect. A grant
// is signed by the cloud and bound by its ticket to one board and one
// nonce; a usage report is signed by the device; a bundle opens only with
// the board's private key.
package gattapi
