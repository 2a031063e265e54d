// Package ble puts the beaconvend beacon on the air and listens to it.
//
// The controller board advertises one legacy BLE advertisement (19 bytes of
// advertising data, see app-protocol/beacon) carrying the rotating proximity
// ID of the current time window (app-protocol/proxid) and the machine state;
// the phone app scans for it and relays the ID to the cloud.
//
// # Concepts
//
// [Advertiser] and [Scanner] are the radio, kept tiny so the hardware can
// be swapped: Advertise(ctx, adv, scanResp) replaces what is on air, Stop
// and Close end it; Scan(ctx, fn) reports every advertisement heard as a
// [Report] with the raw advertising data, which [beacon.Decode] (or
// [Report.Frame]) takes apart.
//
// [Beacon] is the driver the controller runs: it owns an Advertiser and a
// [proxid.Rotator] copy, builds the [beacon.Frame] (company ID, TX power,
// state, offline-capable flag, optional scan-response name), and its Run
// keeps that frame on air. [Beacon.SetState] pushes a changed state at once.
// Advertiser errors are returned from SetState, logged and counted by Run
// ([BeaconStats]), never dropped.
//
// # Backends, and choosing one in config
//
// Two backends implement both interfaces; [Config] names one ("air", the
// default, or "hci") and [OpenAdvertiser]/[OpenScanner] open it:
//
//   - [HCI] (Linux only, hci_linux.go): the project's fork of go-ble
//     (hw/ble/goble) on an HCI adapter, for production boards and the
//     qemu/btvirt test VM.
//   - The simulated air ([AirAdvertiser], [AirScanner]): the same
//     advertising bytes over loopback for machines without a radio; the
//     demo, the phone client and tests listen on it.
//
// # Rotation strategy, and why
//
// Run sets a timer for the Rotator's next window start, but never sleeps
// longer than BeaconOpts.Recheck (1 s): on every wake it reads the clock,
// computes the frame for that instant and advertises only if the bytes
// differ from what is on air. A monotonic timer alone would miss a wall
// clock stepped by NTP or the modem's network time, and the cloud resolves
// IDs from wall-clock windows (current ± one), so the beacon follows the
// wall clock within a second whichever way it jumps, at the cost of one AES
// pair per second. An ID that goes on air late or early by up to a window is
// still resolved. A failed Advertise leaves the frame marked off-air; Run
// retries after Recheck, doubling to 30 s while failures continue.
//
// Every change (new window or new state) is made with stop advertising →
// set data → advertise: some controllers, virtual ones among them, keep
// sending the old payload when data is replaced while advertising, and the
// restart costs one advertising interval. With HCIOpts.RandomAddress (the
// default) each restart also takes a fresh non-resolvable private address,
// so the device address never outlives a proximity ID and cannot link two
// windows; phones identify the machine by the resolved ID, never by address.
//
// # Advertising interval and parameters
//
// Without a GATT service the HCI backend advertises ADV_NONCONN_IND (nobody
// can connect), or ADV_SCAN_IND when a scan response (the machine's name)
// is set; with one, ADV_IND while it waits for a central (see the GATT
// host below). All on the three advertising channels, every 100–150 ms
// (HCIOpts). That is what
// phones in low-power background scans still catch within a second or two;
// controllers before Bluetooth 5 refuse less than 100 ms for these PDU
// types. The simulated air sends every 100 ms plus 0–10 ms random delay,
// like the link layer's advDelay.
//
// # The go-ble backend: permissions and the HCI user channel
//
// OpenHCI(n) calls linux.NewDevice(ble.OptDeviceID(n)), which brings hci<n>
// down and binds it as an HCI user channel: the process then has the
// adapter to itself and speaks raw HCI. It needs root or CAP_NET_ADMIN
// (measured in the VM test, hw/ble/VM.md: CAP_NET_ADMIN alone suffices,
// CAP_NET_RAW alone does not; setcap cap_net_admin+ep on the binary, or
// AmbientCapabilities= in the systemd unit), and bluetoothd must not be
// using the adapter: stop bluetooth.service, or run the board without
// BlueZ's daemon. OpenHCI takes an adapter even while BlueZ tools use it
// (they do not notice), so keep them off it. While the program runs,
// hciconfig still lists the adapter as UP but cannot change it; after
// Close it stays down until brought up again.
//
// # The go-ble fork (hw/ble/goble), and why
//
// go-ble as pinned (v0.0.0-20240122180141-8c5522f54333) failed a GATT
// round trip between two virtual controllers: ACL sends hung with one LE
// buffer, a disconnection during a notification stopped its HCI reader for
// good, a hostile central crashed the process from its goroutines, long
// writes ignored their offsets, notifications were cut silently, the
// client's long write was broken and Dial could lose a race. Upstream is
// stale, so the project carries a patched copy of its Linux packages in
// hw/ble/goble, with upstream's licence and a list of every change with
// the test that shows the upstream bug (hw/ble/goble/FORK.md). A fork
// inside the module rather than another stack: the beacon path on the raw
// HCI user channel works and is proven in the VM, the fixes are small and
// readable against upstream, and the fork's tests run the whole stack on a
// scripted controller (hw/ble/goble/linux/hci/hcitest) plus a fuzz target
// for the GATT server. Another backend (BlueZ over D-Bus) can still sit
// beside it behind Advertiser and Scanner.
//
// # go-ble caveats the backend still works around
//
// Keep these in mind before using more of the fork:
//
//   - Its advertising helpers (AdvertiseMfgData, AdvertiseAdv…) ignore
//     SetAdvertisement's error and return nil. The backend calls
//     HCI.SetAdvertisement and HCI.Advertise itself and checks every
//     command status (ErrRadio wraps hci.ErrCommand).
//   - Advertising parameters given as options are sent once at Init with
//     the status ignored; the backend sends LE Set Advertising Parameters
//     itself on every Advertise, while advertising is off as the spec
//     requires.
//   - Its parser misreads Flags, TX power and 32/128-bit service data: the
//     backend reports the raw bytes (hci.Advertisement's Data and
//     ScanResponse; this version has no LEAdvertisingReportRaw) and
//     decoding is beacon.Decode's job.
//   - It calls the scan handler on a new goroutine per report (go-ble
//     #73): reports may arrive out of order and after scanning stopped. The
//     backend serialises them and drops any that arrive after Scan returned.
//   - Data races (go-ble #40): it attaches a scan response to an
//     advertisement another goroutine may be reading. Passive scanning (the
//     default) receives no scan responses and avoids it; HCIOpts.ActiveScan
//     turns it on when scan responses are needed.
//   - Its event accessors do not check bounds (go-ble #75): a malformed
//     report panics inside them. The backend recovers in its handler and
//     counts it (HCI.Malformed); a malformed event from the controller
//     inside the fork's socket loop can still crash the process (input
//     from a central no longer can: see FORK.md).
//   - On a peripheral connection it turns advertising off by itself (and
//     on again after the disconnection) when its own advertising state
//     says on, without updating that state, and its StopAdvertising writes
//     that state unguarded. The backend sends LE Set Advertising Enable
//     itself and never sets go-ble's state, so go-ble never touches
//     advertising and the GATT host alone decides what is on air.
//   - Its Device runs an accept loop that serves every central. OpenHCI
//     runs go-ble's HCI layer without it; the backend's own accept loop
//     (always running, so a connection never blocks go-ble's reader)
//     serves or refuses each central.
//   - It logs through the standard library logger (and logxi), e.g. "can't
//     accept" when the adapter is closed.
//
// # Connectable mode: the GATT host
//
// The phone can also connect to the board (the relay of issue 17: grant
// in, progress notified, receipt out). [GATTHost] serves one GATT service
// (a goble.Service whose handlers are the caller's, e.g. the controller's
// relay service; [TestService] for tests) on a [Peripheral] (the HCI
// backend) next to the [Beacon], which it drives through [Beacon.SetLink]:
//
//   - Waiting for a central: the beacon frame goes out connectable
//     (ADV_IND) with the machine's state.
//   - A central connected: the controller has stopped advertising by
//     itself; the beacon re-advertises the frame non-connectable
//     (ADV_NONCONN_IND, ADV_SCAN_IND with a name) with state busy, so no
//     other phone tries and every phone shows the machine taken. Rotation
//     goes on: the proximity ID still changes at every window boundary. A
//     state set meanwhile (SetState) is kept and announced afterwards.
//   - The central gone: connectable again with the real state.
//
// One central at a time: a second connection (which non-connectable
// advertising should make impossible) is disconnected at once and counted
// ([GATTStats].Refused); the next central is accepted only after the
// beacon is connectable again. An idle timeout ([GATTOpts].IdleTimeout,
// default [DefaultIdleTimeout], 30 s) disconnects a central that has sent
// no ATT PDU for that long. Notifications it receives do not count unless
// [GATTOpts].NotifyKeepsAlive is set, which a service whose phone follows
// a long session by notifications alone (the relay's Progress) needs;
// otherwise that phone must read or write within the timeout. The link is
// bounded either way: the controller's supervision timeout ends a central
// that went out of range.
//
// Links are not encrypted: the fork answers pairing with Pairing Not
// Supported. Nothing served over GATT may rely on the link: security rests
// on the cloud-signed grant and the device-signed usage receipt the
// service carries, which a relaying phone can neither forge nor alter.
//
// The GATT host knows nothing of the machine's outputs: it calls the
// service's handlers and Beacon.SetLink, nothing else, and hw/ble imports
// no output or session code. A connection, a disconnection, a hostile
// central or an idle drop therefore cannot switch a relay; only what the
// controller's handlers do with a verified grant can, through the
// controller's session machine and its fail-safe rules.
//
// The simulated air has no GATT counterpart: serving go-ble's ATT server
// over loopback would need an L2CAP-like connection and a central for the
// phone client, more than this step carries. NewGATTHost on the simulated
// air returns ErrUnsupported.
//
// # The simulated air
//
// An [AirAdvertiser] multicasts a [Datagram] (a versioned 11-byte header —
// magic "BV", version, flags, address, RSSI — then the advertising data and
// the scan response, each length-prefixed) to an IPv4 multicast group on
// the loopback interface, every advertising interval, with the RSSI
// configured per advertiser plus uniform jitter. Each [AirScanner].Scan
// opens its own socket, so any number of advertisers and listeners, in one
// process or many, share one air; malformed datagrams are counted and
// dropped ([AirScannerStats]).
//
// The group is AirOpts.Group, else $BEACONVEND_BLE_AIR, else [DefaultAir]
// (239.255.66.1:47474); advertisers and scanners on different groups or
// ports do not hear each other, which keeps parallel tests and demos apart.
// Why multicast, and how: unicast UDP with SO_REUSEPORT hands each datagram
// to one socket only; multicast reaches every member. Senders set
// IP_MULTICAST_IF to the loopback interface, IP_MULTICAST_LOOP on and TTL 0,
// so nothing leaves the host (Linux delivers this although lo lacks the
// MULTICAST flag). On Linux listeners bind the group address itself, not the
// wildcard (no unicast to the port gets in), join on loopback, share the
// port with SO_REUSEADDR, and turn IP_MULTICAST_ALL off, without which a
// socket also hears other groups joined by other sockets on the same port.
// Elsewhere the standard library's ListenMulticastUDP is used, best effort.
package ble
