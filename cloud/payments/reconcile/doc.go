// Package reconcile checks, once a day per payment channel, the cloud's
// books against what the provider actually moved: it downloads the
// channel's statement of a day (payments.Channel.Statement, already
// verified and normalized by the channel), compares every row with our
// payment and refund records (channel_payments, channel_refunds) and with
// the ledger's postings for them, posts the statement's fees, and stores
// one outcome per row, a run with its totals, a CSV export and Prometheus
// gauges.
//
// # Outcomes
//
// Every statement row gets exactly one outcome, and so does every record
// of ours that the day owns and no row names:
//
//	kind               when                                                         action
//	matched            same order/refund, amount, currency, state; ledger booked it  —
//	missing_in_ours    the provider paid an order we do not know, did not mark      query_and_credit (payments): query the order,
//	                   paid, or did not credit in the ledger; or refunded money we  credit it or refund it (Hooks.MissingInOurs);
//	                   have no refund record (or no ledger debit) of                review (refunds)
//	missing_in_theirs  we credited an order (booked a refund) the statement does    freeze (payments): alert and freeze the amount
//	                   not list, nor the neighbouring day's (see below)             (Hooks.MissingInTheirs); review (refunds)
//	amount_mismatch    both sides have it, amounts differ (or the ledger moved      review
//	                   another amount than the record)
//	status_mismatch    the provider closed what we credited; our refund is pending  review, query_refund
//	                   or failed while the provider returned the money; the
//	                   provider's transaction/refund ID or order differs
//	currency_mismatch  both sides have it in different currencies                    review
//	duplicate          a second row for the same order or refund                    review
//	deferred           a record near a day boundary is absent and the neighbouring  wait: the run is provisional
//	                   day's statement is not out yet
//
// A row is matched to a record by our order number (payments) and our
// refund number, else the provider's refund ID (refunds), whatever day
// the record carries. The checks run in the order of the table; the first
// that fails decides the kind. Match is the pure comparison (no I/O);
// a property test checks that no row or record is lost or counted twice.
//
// # Days, time zone and the grace window
//
// A day is a calendar day in the provider's time zone: China Standard
// Time (UTC+8) for WeChat Pay and Alipay, whose statements list a trade
// by its payment time there. Our records belong to a day by their own
// times: a payment by paid_ms (the provider's payment time from the
// notification or query), a refund by done_ms. An order paid at 23:59:59
// whose notification arrives after midnight is therefore still of the
// day it was paid. The grace window (Opts.Grace, 1 h by default) covers
// what remains:
//
//   - a day is reconciled no earlier than its end plus the grace window
//     (ErrTooEarly), so late notifications and the query sweep have
//     landed; the scheduled job starts at T+1 anyway, when statements
//     are published;
//   - a record of ours within the grace window of a day boundary that is
//     absent from the day's statement is looked up in the neighbouring
//     day's statement (the provider's clock, or a record stamped with the
//     notification's arrival, may put it there): listed there, it belongs
//     to that day and is reported by that day's run (its row matches the
//     record by number); not listed, it is missing_in_theirs; when that
//     statement is not available yet, it is deferred and the run
//     provisional, and the job runs the day again later.
//
// # Totals
//
// Validate refuses a statement (ErrStatement; nothing is stored, the
// day's previous results stay) of another channel or day, with a
// malformed row, or whose summary (payments, refunds, fees) is not the
// sum of its rows. A run then checks two totals: the statement's net
// (payments − refunds) against the clearing account's movement under the
// ledger keys of the records the day's outcomes name (chan:<channel>:<order>
// in, chanrefund:<channel>:<refund_no> out), and the statement's fees
// against the fees account's postings under chanfee:<channel>:<day>:<row>.
// A run is balanced when every outcome is matched and both totals agree,
// provisional while a row is deferred, and has discrepancies otherwise.
//
// # Fees
//
// Each row's fee is posted through a FeePoster (the store's
// PostChannelFee) under chanfee:<channel>:<day>:<row>, where <row> is
// p-<provider transaction ID> or r-<provider refund ID> (FeeRowIDs), so a
// re-run or a statement downloaded again posts nothing twice. A poster
// that is also a FeeBatchPoster (the store is: PostChannelFees) gets a
// run's new fees in one call and writes them in transactions of 500 fees
// rather than one transaction each.
//
// # Storage, re-runs, export, metrics
//
// A run is stored per (channel, day) with its outcomes
// (store.SaveReconRun); running a day again replaces both in one
// transaction, keeping an operator's resolution of an outcome that is
// reported again. WriteCSV exports a run (amounts as exact decimals,
// payments.FormatMinor). Metrics exports, per channel, the latest run's
// outcomes by kind, whether its totals agreed, when it ran, and the open
// discrepancies over every day.
//
// # Running it
//
// Command is `cloud reconcile -channel C -day YYYY-MM-DD [-csv FILE]`;
// Job.Run is the scheduled job, which reconciles each enabled channel's
// days from T+1 (the last Lookback days), tries a day whose statement is
// not out yet again after Retry, and runs provisional days again.
package reconcile
