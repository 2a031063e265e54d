// Package journal is the controller's durable state: one bbolt file
// (go.etcd.io/bbolt) on the board's flash holding every session, the
// outbox of uplink messages, counters and the set of session IDs ever
// accepted. It serves Invariants 2-4 of /work/shared/ARCHITECTURE.md:
// nothing metered is lost across a power cut, flash is spared, reports wait
// in the outbox and leave in order, and every session is reported exactly
// once with a usage sequence number that is never reused.
//
// The file is opened with fsync on every commit (bbolt NoSync false), an
// open timeout on bbolt's flock (a second controller gets ErrLocked, not a
// hang), and NoFreelistSync (the free list is rebuilt by a scan at open
// rather than written at every commit: one page less per commit). All
// access is inside bbolt transactions and every value is copied (decoded)
// before its transaction ends. Every write transaction is counted: see
// [Journal.Stats].
//
// # Buckets and records
//
//	bucket          key                       value
//	sessions        session ID, 16 bytes      session record (JSON, "v":1)
//	outbox/items    seq, u64 big-endian       outbox item record (JSON, "v":1)
//	outbox/ids      message ID (ASCII)        seq, u64 big-endian: the Ack index
//	meta            "format"                  u64 BE: file layout, [FormatVersion]
//	                "usage_seq"               u64 BE: last usage sequence number handed out
//	                "config_gen"              u64 BE: generation of the applied configuration
//	seen            session ID, 16 bytes      accepted: version u8 (1) | accepted Unix ms i64 BE | grant expires Unix ms i64 BE
//	                                          cancelled: version u8 (2) | cancelled Unix ms i64 BE | keep until Unix ms i64 BE | flags u8 (1)
//	nonces          relay nonce, 16 bytes     relay ticket expires Unix ms i64 BE | session ID [16]
//
// Outbox keys are big-endian, so a bbolt cursor walks them in queue order;
// they come from the items bucket's own sequence (NextSequence), which is
// stored in the same transaction and therefore never reused.
//
// Session and outbox records are JSON objects whose first member is the
// record version "v" (now 1; a reader refuses any other with ErrCorrupt):
//
//	{"v":1,"id":"<uuid>","device":"dev-1","machine":"m1","unit":"ml","cap_units":5000,
//	 "grant":"<base64 signed grant>","state":"running","units":420,"meter_start":1000,
//	 "meter_last":1420,"meter_counter":"","accepted_at":"…","started_at":"…","ended_at":"…",
//	 "outcome":"user_stop","fault_code":0,"coin_pulses":0,"usage_seq":7,"usage":"<base64 signed usage>",
//	 "usage_msg_id":"…","updated_at":"…","steps":[{"state":"authorized","at":"…"},…]}
//
//	{"v":1,"seq":12,"leaf":"usage","id":"<msg id>","payload":"<base64>","session":"<uuid>",
//	 "enqueued":"…","attempts":2,"last_attempt":"…"}
//
// Why JSON: these records are small (about 1 KB) and are written at most
// once a second per running machine, so encoding cost is irrelevant, while
// a field-service engineer can read them with `bbolt get` and add a member
// without a migration. bbolt writes whole 4 KiB pages per commit whatever
// the record size, so a tighter binary form would not save flash. What
// must be byte-exact (the grant and the usage report, which are signed) is
// stored as the canonical signed bytes, opaque to JSON. The seen entries,
// of which there is one per session until the janitor prunes it, use a
// fixed 17-byte binary form (18 bytes for a cancellation, see Cancel).
// Decoders check the version, the key against the record and the fields
// the journal relies on; a record that fails gives ErrCorrupt naming
// the bucket and key ("journal: malformed record: bucket sessions key
// <uuid>: …"), never a panic. Session records are decoded at Open (to
// rebuild the live set), so a malformed one stops Open: the controller
// keeps outputs off and reports a fault rather than lose a session
// silently.
//
// # Session states
//
//	from         allowed to                    by
//	authorized   running, credited, expired,   Transition
//	             failed
//	credited     running, ending, failed       Transition
//	running      ending, failed, refunded      Transition
//	ending       reported                      EndSession
//	expired      reported                      EndSession
//	failed       reported                      EndSession
//	refunded     reported                      EndSession
//	reported     settled                       Ack of the usage message (or Transition)
//	settled      –                             Prune may delete the record; the seen entry stays
//
// Credited is "credit given": a coin-operated machine (washer, dryer) is
// about to receive its coin pulses, and the controller commits this state
// before the first pulse is driven, because from then on the credit may
// be in the machine whatever happens next. A credited session is billable:
// it goes to running when the machine is seen running, to ending with
// outcome not_started (nothing billed) only when the machine's start
// timeout passes with the controller watching, and after a power cut
// recovery completes it or bills it (ending, outcome interrupted, the
// credit's units), never as not_started.
//
// A credited record counts its coin pulses (coin_pulses, omitted while
// zero): the credited transition records pulse 1 and CoinPulse records
// each further pulse n, in its own commit, before it is driven, so the
// count never falls below the pulses driven: pulses 1 to n-1 were given,
// pulse n may have been. That is one commit per coin pulse (a machine
// set to 4 coins a wash costs 3 commits more per session than one
// counted by state alone), the price of knowing, after a crash, how much
// of a credit the machine has. The controller drives the rest (and the
// pulse in doubt at most once more) when the board answers at recovery,
// and bills the credit without completing it otherwise (controller/daemon
// documents the policy). Records written before the count existed have
// zero, read as "unknown".
//
// Cancel records a session the cloud cancelled before this device started
// it (a Stop for a session not seen yet): a seen entry of version 2 marked
// cancelled, kept until the given bound (PruneSeen deletes it after). Its
// grant is then refused like a replay, and SeenState tells the caller it
// was a cancellation (the controller answers grant.cancelled). A session
// already accepted is not touched.
//
// Accept creates a session in authorized, with its seen entry, in one
// commit; it refuses a seen session ID (signed.ErrReplayed, code
// grant.replayed) and a machine that has a live session (ErrBusy, code
// machine.busy). AcceptRelay does the same for a grant a phone relayed
// over GATT (app-protocol/GATT.md, Relay) and records its ticket's nonce
// in the nonces bucket in that same commit, refusing a nonce already there
// (gattapi.ErrNonceReused, code relay.nonce_reused); NonceSeen answers the
// relay check, LastRelayed names the last relayed session (for the GATT
// service after a restart), and PruneNonces forgets nonces whose ticket
// has expired.
// A session is live, holding its machine, until it is
// reported. Transition refuses any move not in the table with
// ErrTransition and writes nothing. Entering an ended state (ending,
// expired, failed, refunded) fixes the outcome (expired: not_started,
// failed: fault, refunded: vend_failed by default; ending must be given
// one) and EndedAt. EndSession then, in one commit, allocates the next
// usage sequence number (meta usage_seq), builds and signs the usage report
// (billed units capped at the grant's cap), stores it in the record and
// queues its mqttapi.Usage message. If that commit fails, nothing of it
// exists, so a sequence number is never used twice nor signed without
// being stored.
//
// # Flash-wear policy and the commit bound
//
// Invariant 3 asks that metered units reach the file at least every second
// while a machine runs and at every state change, and no more often.
// Meter keeps the latest reading in memory and commits it only when the
// session's last commit is at least Opts.MeterInterval (1 s) old; FlushDue
// (called by Run every MeterInterval/10) commits readings that are due when
// no further Meter call comes, batching all due sessions into one commit.
// Every Transition and EndSession commits the latest reading in the same
// transaction as the state change, and Close commits what is pending. The
// bound is therefore: at most one meter commit per running session per
// MeterInterval, plus one commit per transition, plus one per outbox
// change (Enqueue, Ack with something to remove, an attempt mark per Drain
// batch of 32). Calls that change nothing (an Ack of unknown IDs, an
// unchanged config generation, a Flush with nothing pending) do not commit.
// TestMeterCommitBound checks the bound with a fake clock and that the
// committed reading is never a full interval old.
//
// A bbolt commit rewrites the changed leaf page, its branch pages up to
// the root and a meta page, each 4 KiB, then fsyncs. Measured on the
// development machine (ext4 on a virtual disk, amd64):
//
//	go test -run '^$' -bench . -benchtime 3s ./controller/journal/
//	BenchmarkSession     65 commits/session   1.17 MB written/session   ~1500 commits/s
//	BenchmarkMeterCommit 8192 B written/commit                           ~2500 commits/s
//
// BenchmarkSession is a 60 s session metered every 100 ms: 60 meter
// commits plus 5 for accept, start, end, report and ack. Bytes per commit
// grow with the depth of the sessions tree (records accumulate in the
// benchmark), which is why settled sessions are pruned (Prune) after a
// retention period; the seen set is kept for replay refusal and pruned once
// grants have expired (PruneSeen). The controller's janitor
// (controller/janitor) does both hourly; Open decodes every session record,
// so without it the open time grows with every session ever sold (figures
// in controller/BENCHMARKS.md).
//
// # Recovery at start
//
// After a power cut the controller must, in this order: switch every output
// OFF (the journal cannot do that; Invariant 1 is the controller's), Open
// the journal, and call Live. Live returns every session not yet reported
// with its last committed reading (Units, MeterLast, at most one interval
// old) and state. The controller finishes each: authorized ones expire (or
// fail), credited ones are completed (their remaining coin pulses driven,
// the cycle metered) or go to ending with outcome interrupted and the
// credit's units (billed), running ones go to ending with outcome
// interrupted (a water session with what the board's flow counter counted
// since MeterStart when the board answers and its counter is consistent,
// a vending session likewise with what its drop counter counted when
// MeterCounter names it: the update raises Units and MeterLast; a washer
// or dryer with at least its credit's units), ended ones are reported, each
// with EndSession, which signs and queues the report. The
// outbox then drains when the link is up. TestCrashSafety kills a writing
// subprocess with SIGKILL 30 times at random points and checks, after each
// kill, that the file opens, every session and reading whose call returned
// nil is there, no usage sequence number is used twice, the outbox keeps
// its order and acked messages stay gone.
//
// # Outbox
//
// Uplinks that matter (evt and usage) are written to the outbox first, in
// the same commit as the state change that caused them where there is one
// (the emit arguments of Accept, Transition and EndSession), and only then
// published. A message leaves the outbox only when the cloud names its ID
// in an application-level Ack (mqttapi.Ack), sent after the cloud has
// stored it; Ack is idempotent and ignores unknown IDs, and acking a usage
// report settles its session in the same commit. Drain publishes queued
// messages in order at a bounded rate (token bucket, DefaultRate 20/s),
// stops at the first send error and resumes from that message at the next
// call; RewindDrain, called at every reconnect, makes the next Drain resend
// everything not yet acked.
//
// Why MQTT's own guarantees are not enough: a PUBACK says only that the
// broker has the message. A broker restart without persistence, a
// failover in a cluster, a cloud instance that took the message from a
// shared subscription and died before storing it, or a broker session that
// expired while the device was offline for days all lose a PUBACKed
// message. paho's store keeps in-flight QoS 1 messages until PUBACK only,
// in memory by default (a power cut loses them); its FileStore (v1.5.0
// filestore.go) writes a temp file and renames it without fsync, panics
// on I/O errors, is keyed by the 16-bit packet ID rather than our message
// ID, and has no relation to the state change that produced the message,
// so a report could exist with no session record or the reverse. Only the cloud's Ack after its store commit, matched against
// an outbox that is committed with the state change, makes "signed usage
// reaches the ledger exactly once" hold across power cuts, reconnects and
// duplicate deliveries (the cloud is idempotent on message ID and settles
// once per session inside the signed report).
package journal
