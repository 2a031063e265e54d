// Command phone is the reference beaconvend phone client: what a phone app
// does, step by step, against the phone API (app-protocol/openapi.yaml,
// Go client app-protocol/phoneapi). App teams porting it to Kotlin or Swift
// can follow the steps below; each names the API calls it makes and the
// error codes it branches on.
//
//	phone [-api URL] [-email E -password P [-signup]]
//	      [-topup 20.00 [-topup-source wechatpay|alipay|card_sandbox] [-pay-timeout 3m]]
//	      [-device ID | -pick-nearest] [-machine M] [-slot S]
//	      [-cap-units N | -cap-amount 2.00] [-stop-after-units U] [-json-receipt]
//	      [-cancel-if-no-reply]
//	phone -list             list the machines in range and exit
//	phone -wallet           print the wallet and exit
//	phone -withdraw 5.00    return wallet money to the channels it came from ("all": everything available)
//	phone -payments         list the top-ups as receipts and exit
//	phone -claim -email OP -password P -claim-id ID [-claim-kind water] [-claim-tag T | -board-addr A] -ble hci
//	                        claim a board in registration mode (operator)
//
// Without -device or -pick-nearest it lists the machines in range and asks
// for one (and for a slot and a cap when missing); with the flags it runs
// without a question, for scripts, tests and scripts/demo.sh.
//
// # 1. Sign in (SignUp, LogIn)
//
// A bearer token is needed for everything but Health. -token uses one as
// given. Otherwise the client looks in its token cache (a 0600 JSON file,
// beaconvend/phone-token.json under os.UserConfigDir, or -token-file; "-"
// for none) for an unexpired token of this API and email and checks it with
// GetWallet; a 401 (auth.token) drops it. Else it calls SignUp (with
// -signup; auth.email_taken falls through to LogIn) or LogIn
// (auth.credentials: wrong email or password) and caches the token.
//
// # 2. Top up (GetWallet, TopUp, GetPayment)
//
// -topup moves money from a payment source (-topup-source: wechatpay,
// alipay, auto for the operator's priority, or the development sandbox
// card card_sandbox, the default; ListPaymentSources lists them) into the
// wallet, in the wallet's currency. Sessions are always held on the wallet. TopUp moves money, so
// it carries an Idempotency-Key: one (NewIdempotencyKey) per user action,
// reused for every retry of it, so a timeout never opens two orders.
//
// TopUp answers with the payment, an order the cloud numbered itself
// before it asked the provider: pending with what the payer acts on (a
// QR channel's code_url, until expires_at), or paid at once (the sandbox
// card). For a code_url the client draws the QR code in the terminal with
// half-block characters (github.com/mdp/qrterminal/v3, dark on white on a
// terminal, four modules of quiet zone) and prints the URL as text for
// copy and paste:
//
//	order bv5f0c…: 20.00 CNY through wechatpay, pay before 2026-12-07 10:35:00 CST
//	scan this code with the WeChat app:
//	    █▀▀▀▀▀█ ▄▀ ▄█▄ █▀  █▄ █▀▀▀▀▀█
//	    …
//	or open: weixin://wxpay/bizpayurl?pr=…
//	order bv5f0c… pending 12s, expires in 4m48s
//
// It then follows the order with GetPayment every 2 s (the cloud asks the
// provider itself about a pending order older than a few seconds, so a
// lost notification does not leave it pending) until it is paid, closed
// or failed, or -pay-timeout (3 min) passes; transient errors are asked
// again. Paid prints the payment's receipt: our order number, the
// channel, the provider's transaction ID, what has been refunded of it,
// and the wallet. Not paid ends with exit status 6 and says why:
//
//	closed   "order … expired at … unpaid and is closed; nothing was charged"
//	failed   "wechatpay refused the payment of order …; nothing was charged"
//	pending  "order … still pending after 3m0s: it can still be paid until …,
//	         and the wallet is credited then (phone -payments shows it)"
//
// Ctrl-C stops waiting and leaves the order as it is (the cloud closes it
// unpaid at expires_at). Refusals of TopUp: source.limit (the amount
// breaks the source's limits; the client names the sources the cloud
// says would take it, "try -topup-source alipay", exit status 5),
// source.not_found (the client lists the sources, ListPaymentSources),
// channel.refused (the provider would not open the order, exit status 6).
// channel.unavailable and channel.unhealthy are transient: retried with
// the same key.
//
// # Withdraw and payments (Withdraw, ListPayments)
//
// -withdraw AMOUNT (or all: everything available) asks the cloud to
// return wallet money to the channels it came from, with an
// Idempotency-Key: the cloud refunds the payer's paid orders, oldest
// refundable first, each against its own order at its own provider. The
// client prints one row per refund: our refund number, the order, the
// channel, the amount, its state and the provider's refund ID. A
// withdrawal that comes back partial or failed says how much is on its
// way and that the rest stays in the wallet (exit status 6);
// funds.insufficient names the balance. -payments lists the payments
// newest first (up to 100, following the pages) as receipts.
//
// # 3. Listen for beacons (hw/ble)
//
// The phone scans for -scan (2 s) and decodes every advertisement with
// beacon.Decode for the company ID (-company, 0xFFFF by default): the frame
// carries the rotating 8-byte proximity ID, the machine state and TX power.
// -ble air (the default) listens to the simulated air, the same advertising
// bytes multicast on loopback (group -air, else $BEACONVEND_BLE_AIR, else
// 239.255.66.1:47474); -ble hci -hci N listens with go-ble on a Linux HCI
// adapter (root or CAP_NET_ADMIN+CAP_NET_RAW, bluetoothd stopped). A real
// app uses CoreBluetooth or Android's BluetoothLeScanner and hands the
// manufacturer data to the same decoding (see app-protocol/beacon's doc).
// Reports are grouped by proximity ID; RSSI is averaged.
//
// # 4. Resolve (Resolve)
//
// Each heard ID goes to Resolve with its RSSI and company ID. The cloud
// answers with the device, the machines with their prices, states and
// vending slots, and the rotation window the ID matched. proximity.unknown
// (another operator's beacon) and proximity.expired (an old window) are
// skipped. A scan across a window boundary hears two IDs of one device;
// they are merged, keeping the newest ID. Devices are listed strongest
// signal first, one numbered row per machine, with name, state and price:
//
//	#  SIGNAL   DEVICE                        MACHINE    NAME       STATE      PRICE
//	1  -48 dBm  demo-water (Water dispenser)  tap1       Water 1    idle       0.50 EUR per 1000 ml
//	2  -61 dBm  demo-laundry (Laundromat)     washer1    washer 1   idle       3.50 EUR per cycle
//	3  -70 dBm  demo-vending (Snack machine)  vm1        Vending    idle       10 slots
//	                                            slot A1  Cola       available  1.50 EUR
//
// Nothing resolvable heard is "phone: no machine in range" (exit status 3).
//
// # 5. Choose, and set a cap
//
// -device picks a device in range (it must have been heard: the session
// needs its proximity ID), -pick-nearest the strongest; -machine and -slot
// pick within it (without -machine, the first idle machine). The cap is
// the most the session may deliver: -cap-units (ml, s, cycles, items) or
// -cap-amount in money ("2.00", or minor units "200"). Washers and vending
// default to one cycle or item.
//
// # 6. Start (StartSession)
//
// StartSession sends device, machine, slot, the heard proximity ID (the
// grant is bound to its window, so an ID copied off the air is useless
// later), the cap, the source and the price shown (expected_price: a
// changed price is price.changed, nothing held), with an Idempotency-Key reused for every
// retry (transient errors, idempotency.in_flight, a Retry-After are
// retried up to five times). The cloud holds the cap on the wallet and
// authorizes the board over MQTT before answering. The error codes a user
// sees, and the exit status:
//
//	machine.busy                                     "the machine is busy" (4)
//	machine.offline, machine.fault, device.refused   "the machine cannot sell now" (4)
//	funds.insufficient, source.limit                 "not enough money", with balance and hold (5)
//	proximity.expired                                rescan and retry once with a fresh ID and key
//	slot.jammed, slot.empty                          "the machine cannot sell now" (4)
//	price.changed                                    "the price changed", with the new price (1)
//	device.no_reply (with the pending session)       "waiting for the machine", then step 7
//
// device.no_reply is not an end: money is held and the machine may still
// start until the grant's start-by bound has passed. The client says
// "waiting for the machine", follows the session (step 7) until it is
// authorized or running (and goes on as usual) or final, and cancels it
// on Ctrl-C or at once with -cancel-if-no-reply (StopSession on a pending
// session: the board refuses the grant with grant.cancelled). Only a
// session that ends failed, expired, released or voided is reported as
// "nothing was charged".
//
// # 6b. Relay over BLE (UploadUsage; app-protocol/GATT.md)
//
// A phone with a BLE central (-ble hci: the scanning adapter connects as
// well; tests give Main.Dial) that heard the board's offline-capable bit
// starts with can_relay. When the cloud cannot reach the board (offline,
// no reply in time) or relays its sessions always, the session (or the
// device.no_reply error's session) carries relay: the signed grant and the
// relay ticket. The client then, with no question asked:
//
//  1. connects to the address the beacon came from (hw/ble HCI.DialGATT:
//     MTU 247, service discovery; -board-public for a public address),
//     subscribes to Progress and writes the RelayGrant to Grant in chunks
//     (hw/ble Board.WriteGrant); the board's verdict answers the last
//     chunk;
//  2. shows Progress (notifications, and a read every 2 s) as the SSE path
//     does until the board says ended; the board takes no stop over BLE;
//  3. reads the Receipt whole, uploads the signed report (UploadUsage,
//     one Idempotency-Key for every retry: the cloud settles it once
//     however often it arrives, by phone or MQTT), and writes Ack: kind
//     02 with the cloud's signed usage ack when the answer has one (the
//     board drops the report from its outbox), else kind 01 with the
//     report's hash;
//  4. prints the receipt (GetReceipt) as step 8.
//
// A refusal is an ATT application error (0x80–0x9F) named by its gattapi
// code and said in words (refusalHints), with what happens to the money:
//
//	grant.replayed       the board already took this grant (relayed, or over MQTT); it never runs twice
//	relay.nonce_reused   the board already used this relay ticket
//	grant.expired        the grant expired before the board took it
//	grant.device         the phone is connected to another board than the one paid for
//	sig.unknown_key      the board does not trust the key that signed the grant
//
// "session … stays pending and … stays held until the cloud releases it
// (the grant was not run, so nothing is captured)" (exit 4). A link lost
// mid-session says the board keeps the receipt and reports it over its
// cloud link, and the session is charged only what that signed report
// says. Without a central the start does not say can_relay, and an
// offline machine is machine.offline (exit 4), nothing held.
//
// # Claim (-claim; POST /v1/operator/claims)
//
// An installer signed in as an operator (-email, -password: the operator
// log-in, POST /v1/operator/auth/login) claims a board in registration
// mode: the client listens for unclaimed frames (beacon version 2,
// beacon.DecodeUnclaimed: a claim tag where the proximity ID is), takes
// the strongest (or -claim-tag's, or -board-addr without a scan),
// connects, reads ClaimInfo, checks that the tag heard is the tag of the
// sealing key read (else another board answered), posts the key with the
// device to make of it (-claim-id, -claim-kind, -claim-machines,
// -claim-currency, -claim-k), writes the sealed bundle the cloud answers
// with to Bundle in chunks, and reads ClaimInfo again: "claimed: board
// <tag> is device <id>". A board claimed already is refused before the
// cloud is asked; the board's claim.open and claim.not_registration are
// said in words.
//
// # 7. Follow (SessionEvents, StopSession)
//
// SessionEvents is a Server-Sent Events stream: a "state" snapshot first,
// then "progress" (running totals of units and money) and "state"
// events, and "ended" with the final session. Progress is drawn as a bar
// of units against the cap with the money against the hold: redrawn in
// place on a terminal by github.com/schollz/progressbar/v3, or as lines
// (at most two a second, one per state change) in logs and pipes
// (-progress bar|lines|auto). A dropped stream is reopened with the
// Last-Event-ID after the server's retry delay; totals make that lossless.
// Enter, Ctrl-C, or -stop-after-units calls StopSession (its own
// Idempotency-Key); the board closes the valve, reports its signed usage,
// and the stream goes on to "ended". A second Ctrl-C leaves the client
// (the session still ends and settles on the cloud). -timeout bounds the
// whole session.
//
// # 8. Receipt (GetReceipt, GetWallet)
//
// Once the session is settled (or refunded: nothing delivered, e.g. a
// jammed vending slot, outcome vend_failed) GetReceipt returns it;
// session.not_settled means the usage report is still on its way, so the
// client polls. The receipt states units, price, held, captured
// (units × price, rounded down, never above the hold) and released (held −
// captured), which the client prints with the wallet before and after.
// -json-receipt prints the receipt as one JSON line on stdout and all the
// rest on stderr. A session that ends failed or expired has no receipt:
// "session … ended failed; the hold was released, nothing was charged" (exit 1).
//
// # Dependencies of the payment steps
//
// The QR code is drawn by github.com/mdp/qrterminal/v3 v3.2.1 (MIT,
// released March 2025, the terminal QR library Go command-line tools
// commonly use), which encodes with rsc.io/qr v0.2.0 (BSD, the Go
// authors' encoder: small, complete, no dependencies). It was chosen over
// github.com/skip2/go-qrcode (no release since 2020) and
// github.com/yeqown/go-qrcode/v2 (an image toolkit, more than a terminal
// needs). qr.go notes the two things it does around the library (encode
// first for the error; make the last half line light). The tests decode
// what is printed with github.com/makiuchi-d/gozxing v0.1.1 (MIT, a Go
// port of ZXing that shares no code with the encoder), test-only.
//
// # Step-up PIN (SetPIN, SetStepUpThresholds, StepUp)
//
// -set-pin sets or changes the PIN (the new one from -new-pin-file or
// typed); -step-up-session, -step-up-topup and -step-up-withdrawal set the
// thresholds (AMOUNT, 0: always, off: never; the others are kept). Either
// prints the settings and, with nothing else asked, ends there. When the
// cloud answers a start, top-up, withdrawal or settings change with 403
// step_up.required, the client says why, takes the PIN from -pin-file or
// asks for it (no echo on a terminal), gets a token (StepUp) and makes the
// same call once more with X-Step-Up-Token and the same idempotency key; a
// wrong PIN or a lock ends the run (exit 1) without guessing again.
//
// # Program structure
//
// main only wires signals to Main (ParseFlags, Run, Close); tests run Main
// in process against real cloud, controller and hwsim processes over ptys
// and the simulated air (e2e_test.go), and scripts/demo.sh in full. The
// steps above are small functions: authenticate, topUp (showAction,
// followPayment), withdraw, listPayments, scan (listen, Resolve,
// mergeNearby), choose, capFor, buy (start, follow or relay, receipt), claim, with the
// formatting (formatNearby, formatProgress, formatReceipt, formatPayment,
// formatWithdrawal, writeQR) kept pure for unit tests; pay_test.go runs
// the payment steps against a hand-written server of the payment
// endpoints; relay_e2e_test.go runs the relay and the claim against a
// real `cloud serve` with a stand-in for the board's radio
// (standin_test.go: the board's side built from gattapi.CheckRelay,
// signed.SignUsage, gattapi.CheckAck and provision.Open); and
// TestPayChannelsEndToEnd against the cloud and the
// providers' loopback peers (cloud/payments/wechatpay/wechattest and
// cloud/payments/alipay/alipaytest, started by the test; it needs Node).
package main
