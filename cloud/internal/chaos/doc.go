// Package chaos is the chaos soak: a bounded run, on loopback only, of the
// whole system under random faults, followed by an audit of every session
// against what the machines really gave.
//
// # The deployment
//
// A real `cloud serve` process on Mosquitto (persistence on, a fixed
// port, so a restarted broker keeps persistent sessions and queued
// messages) with SQLite (default) or PostgreSQL; real controller
// processes (controller/cmd/controller), each on a board emulated in this
// process (hw/emu) on a kernel pty: water (6 L/min), a washer that needs
// two coin pulses per cycle, and a two-slot vending machine, in turn.
// Each controller reaches the broker through its own loopback TCP proxy,
// its "cellular link". Devices are provisioned with `cloud device add`
// (controller.yaml from the bundle by simdev.WriteController), phones (funded wallet users) through simdev.ProvisionPhones.
//
// # Phones
//
// Each phone picks a machine no other phone is at, reads its price
// (GET /v1/devices/{id}), and starts a session with a units or money cap
// and the proximity ID the beacon would broadcast. The start carries
// the price the phone showed (expected_price); a 503 device.no_reply that carries a pending session is
// followed until the machine takes it or it ends (and cancelled
// sometimes). A share of sessions is stopped at a random moment: during
// the water run, in the washer's coin-pulse window, in the vending
// motor's window. A share of starts races an operator price change on
// the same machine.
//
// # Faults
//
// Per minute, at the configured rates (Rates): a controller's link cut
// for 2-45 s (connections closed, new ones refused), the broker killed
// or stopped and started again, a controller SIGKILLed and restarted on
// its journal, the cloud SIGKILLed and restarted. Each kind with a rate
// fires at least once. Device clocks are skewed by up to ±10 min through
// the controller's test-only -clock-skew flag (Config.Skew).
//
// # The audit
//
// After the run every link is restored and every process started; the
// soak waits (bounded) until no session is live, starts a small probe
// session on every machine, and then checks, reading the database
// directly:
//
//   - every session is final (not_terminal) and was closed within
//     Config.SessionBound of its creation, by the cloud's clock (updated_ms,
//     not the device's signed end time) (late_end);
//   - captured = min(delivered × price, hold), delivered being the
//     emulator's truth (hw/emu delivery log: each valve opening's volume,
//     each washer cycle started, each item dropped) within the session's
//     window on its machine, from its creation to the next session's, with
//     one meter pulse of slack per water delivery (undercharged,
//     overcharged); sessions in unreported or disputed follow their
//     policy (unreported: nothing captured) instead;
//   - captured + released = hold once final (hold_stranded);
//   - no hold above what the payer agreed to: the money cap, or the unit
//     cap at the price the phone was shown (hold_above_cap);
//   - a start the phone was told failed, without a session, never ran or
//     charged (ran_after_failed_start); the final state the phone saw is
//     the store's (phone_told_other_end);
//   - the ledger balances: entries sum to zero per currency and per
//     transaction, every account's balance is its entries' sum and not
//     negative, the user_holds accounts hold the sessions' open holds, each
//     session's capture entries equal its captured column, and no session
//     has two captures or releases;
//   - every machine is free again: outputs OFF, no washer credit left
//     banked, nothing delivered outside a session, and the probe start
//     succeeds (machine_not_free).
//
// Run returns a Report; Print writes its table (starts, sessions by
// state and outcome, faults by kind, violations by kind and the first
// few of each). cloud/cmd/chaossoak is the program (scripts/chaos-soak.sh
// runs it), TestChaosSoakShort the CI form.
package chaos
