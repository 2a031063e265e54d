// Package janitor keeps the controller's journal from growing without
// bound. A [Janitor] sweeps the journal at start and then every
// Opts.Every (default 1 h):
//
//   - settled sessions (reported, and the report acknowledged by the
//     cloud) whose record was last written more than Opts.Retention ago
//     (default 7 days) are deleted (journal.Prune). Live, reported-but-
//     unacknowledged and recently settled sessions are never touched, so
//     nothing the cloud has not stored is lost and a field engineer can
//     still read a recent week with `bbolt get`.
//   - seen entries (the replay set: one per accepted or cancelled session
//     ID) are deleted once their bound has passed by more than
//     Opts.SeenMargin (default 24 h) and the session has no record any
//     more (journal.PruneSeen). The bound is the grant's expiry for an
//     accepted session and the keep-until time of a cancellation. A grant
//     past its expiry is refused as grant.expired anyway; the margin covers
//     clocks that are wrong by far more than the ±10 minutes a board may
//     be off.
//   - relay nonces (journal.PruneNonces: one per grant a phone relayed over
//     GATT) are deleted once their ticket's expiry has passed by more than
//     Opts.SeenMargin; the grant is refused as grant.expired by then.
//
// Why: Open decodes every session record to rebuild the live set, so an
// unpruned journal opens more slowly with every session ever sold (about
// linearly; see controller/BENCHMARKS.md), and the file and every commit's
// tree depth grow with it. With the janitor, the journal holds at most a
// retention period of sessions and its open time stays flat however long
// the board has been selling.
package janitor
