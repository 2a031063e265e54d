// Package ble is the core of the project's fork of go-ble
// (github.com/go-ble/ble at commit 8c5522f54333, BSD-style licence in
// LICENSE): the device-independent types (addresses, UUIDs, services,
// characteristics, handlers, options) shared by its Linux packages under
// linux/ — the HCI transport and link layer (linux/hci), the Attribute
// Protocol (linux/att), GATT (linux/gatt) and advertising packets
// (linux/adv).
//
// FORK.md, next to this file, lists every change made to upstream with
// its reason and the test that shows the upstream bug; the changes are
// marked "beaconvend" in the code. Tests drive the stack through
// linux/hci/hcitest, a scripted controller on the HCI transport
// interface, and FuzzATTServer in linux/ feeds arbitrary ATT PDUs to the
// GATT server.
//
// Specifications: Bluetooth Core Specification, Vol 3 Part A (L2CAP),
// Part F (ATT), Part G (GATT), Vol 4 Part E (HCI).
package ble
