// Package clusterfault is the cluster fault test (cloud/cmd/clusterfault,
// scripts/cluster-fault.sh): the fleet deployment past one machine on
// loopback -- three NATS nodes as processes with two auth-callout
// responders (or one Mosquitto), a pg_auto_failover formation, two `cloud
// serve` processes, simulated devices (cloud/internal/simdev), real
// controllers on emulated boards and phones starting sessions -- with one
// NATS node, the PostgreSQL primary and a cloud instance SIGKILLed in turn
// mid-traffic (Run). The report gives, per kill, how long session starts
// stopped.
//
// # The audit
//
// After the traffic the deployment settles (every killed part back, every
// device online and connected, every uplink acknowledged, every session
// final, within Config.Settle); then the real controllers are stopped and
// one function, audit, judges an auditInput: the store's sessions, ledger
// checks and online flags (read through the store package, so on SQLite
// as on PostgreSQL) and what each device saw -- a simulated device's
// session records and MQTT client, a controller's bbolt journal (its
// settled sessions are the reports the cloud acknowledged; their units
// come from the signed report) and its log's last connection line. Each
// violation begins with its kind:
//
//	lost                        a report a device saw acknowledged is not settled (settled, refunded or settled late) with its units
//	not_acked                   a report a device made was never acknowledged
//	unknown_session             a device holds a grant the store does not have
//	doubled_capture_or_release  a session has two capture (or two release) ledger transactions
//	doubled_session_per_key     two sessions for one (user, idempotency key)
//	ledger_imbalance            entries of a currency, or of one transaction, do not sum to zero
//	balance_mismatch            a stored balance is not the sum of its entries (or is negative when it may not be)
//	live_after_settle           a session still pending, authorized, running or ending
//	not_online                  the store has a device offline at the end
//	not_connected               the store has it online but the device's own client is not connected
//	unknown_device              the store has no such device
//	bad_report                  a controller's stored report does not open with its key
//
// Besides the audit's: fault_not_injected (a kill that did not do what it
// claims: no failover after the primary's SIGKILL within 2 minutes, a
// node or cloud that did not start again), so a run cannot pass on a
// fault it never made.
//
// The audit's tests (audit_test.go) plant each of these into a real store
// and journal and check it is named; Config.Plant (the command's hidden
// -plant flag) plants a defect into the run's own database after it
// settles, and the command must then exit 1 naming it (a planted defect
// the audit misses is an audit_blind violation).
package clusterfault
