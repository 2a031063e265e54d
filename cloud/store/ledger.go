package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"beaconvend/app-protocol/vend"
)

// AccountKind is the kind of a ledger account.
type AccountKind string

// Ledger account kinds. Balances are minor units; positive means the
// platform owes the owner (a wallet, a hold, revenue), negative means the
// platform has received money from outside (a payment channel's clearing
// account) or is owed it (a payer's receivable), or has spent it (a
// channel's fees); these three kinds alone may go negative.
const (
	UserWallet      AccountKind = "user_wallet"      // owner: user ID; spendable funds
	UserHolds       AccountKind = "user_holds"       // owner: user ID; funds held for live sessions
	OperatorRevenue AccountKind = "operator_revenue" // owner: operator ID; captured from sessions
	ChannelClearing AccountKind = "channel_clearing" // owner: channel name ("sandbox_card"); money in from outside
	UserReceivable  AccountKind = "user_receivable"  // owner: user ID; negative by what the payer owes after a late capture the wallet could not cover
)

// TxKind is the kind of a ledger transaction.
type TxKind string

// Ledger transaction kinds.
const (
	TxTopUp   TxKind = "topup"   // channel_clearing → user_wallet
	TxHold    TxKind = "hold"    // user_wallet → user_holds
	TxCapture TxKind = "capture" // user_holds → operator_revenue
	TxRelease TxKind = "release" // user_holds → user_wallet
	TxRefund  TxKind = "refund"  // operator_revenue → user_wallet (a late report owing less than was captured)
	// TxLateCapture is a valid report's charge for a session already
	// closed without it: user_wallet → operator_revenue, and what the
	// wallet cannot cover user_receivable → operator_revenue.
	TxLateCapture TxKind = "late_capture"
)

// Account is one ledger account with its stored balance.
type Account struct {
	ID       int64
	Kind     AccountKind
	Owner    string
	Currency vend.Currency
	Balance  int64 // minor units; the sum of the account's entries
}

// transfer is one ledger transaction of two entries: amount moves from
// one account to another.
type transfer struct {
	kind     TxKind
	idemKey  string  // globally unique: the ledger's own idempotency key
	session  *string // the session it belongs to, or nil
	reqHash  string  // what the request was, to tell a retry from a conflict
	from, to int64   // account IDs
	amount   int64   // minor units, > 0
}

// account returns the ID of the (kind, owner, currency) account, creating it.
func (s *Store) account(ctx context.Context, q queryer, kind AccountKind, owner string, cur vend.Currency) (int64, error) {
	neg := 0
	if kind == ChannelClearing || kind == UserReceivable || kind == Fees {
		neg = 1
	}
	if _, err := q.ExecContext(ctx, `INSERT INTO accounts (kind, owner, currency, may_go_negative, created_ms)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, owner, currency) DO NOTHING`,
		string(kind), owner, string(cur), neg, s.nowMs()); err != nil {
		return 0, err
	}
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM accounts WHERE kind = $1 AND owner = $2 AND currency = $3`,
		string(kind), owner, string(cur)).Scan(&id)
	return id, err
}

// post writes balanced ledger transactions in one database transaction:
// for each transfer a ledger_tx row under its globally unique idemKey, a
// debit of amount from `from` and a credit to `to`. Balances change by the
// net delta per account with conditional UPDATEs applied in account-ID
// order, so concurrent transactions lock accounts in one order and cannot
// deadlock on PostgreSQL; an account that may not go negative and would
// is refused with ErrFunds. It returns the new transaction IDs, or
// ok == false (and writes nothing) when any idemKey already exists.
func (s *Store) post(ctx context.Context, tx *sql.Tx, cur vend.Currency, ts ...transfer) (ids []int64, ok bool, err error) {
	delta := map[int64]int64{}
	for _, t := range ts {
		if t.amount <= 0 {
			return nil, false, vend.Errorf(ErrAmount, "%s of %d", t.kind, t.amount)
		}
		delta[t.from] -= t.amount
		delta[t.to] += t.amount
	}
	now := s.nowMs()
	for _, t := range ts {
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO ledger_tx (kind, idem_key, session_id, req_hash, created_ms)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idem_key) DO NOTHING RETURNING id`,
			string(t.kind), t.idemKey, t.session, t.reqHash, now).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, false, nil // the caller rolls back
		}
		if err != nil {
			return nil, false, err
		}
		ids = append(ids, id)
	}
	accts := make([]int64, 0, len(delta))
	for a := range delta {
		accts = append(accts, a)
	}
	sort.Slice(accts, func(i, j int) bool { return accts[i] < accts[j] })
	for _, a := range accts {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET balance = balance + $1
			WHERE id = $2 AND (may_go_negative = 1 OR balance + $1 >= 0)`, delta[a], a)
		if err != nil {
			return nil, false, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, false, err
		} else if n != 1 {
			return nil, false, vend.Errorf(ErrFunds, "%s needs %s", ts[0].kind, vend.Amount{Minor: -delta[a], Currency: cur})
		}
	}
	for i, t := range ts {
		for _, e := range [2][2]int64{{t.from, -t.amount}, {t.to, t.amount}} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO entries (tx_id, account_id, amount, currency) VALUES ($1, $2, $3, $4)`,
				ids[i], e[0], e[1], string(cur)); err != nil {
				return nil, false, err
			}
		}
	}
	return ids, true, nil
}

// Balance returns the stored balance of the (kind, owner, currency)
// account in minor units; 0 for an account never used.
func (s *Store) Balance(ctx context.Context, kind AccountKind, owner string, cur vend.Currency) (vend.Amount, error) {
	var b int64
	err := s.db.QueryRowContext(ctx, `SELECT balance FROM accounts WHERE kind = $1 AND owner = $2 AND currency = $3`,
		string(kind), owner, string(cur)).Scan(&b)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return vend.Amount{}, fmt.Errorf("store: balance: %w", err)
	}
	return vend.Amount{Minor: b, Currency: cur}, nil
}

// Wallet returns a user's spendable balance in cur.
func (s *Store) Wallet(ctx context.Context, user string, cur vend.Currency) (vend.Amount, error) {
	return s.Balance(ctx, UserWallet, user, cur)
}

// LedgerImbalance returns, per currency, the sum of all entries when it is
// not zero. A correct ledger returns an empty map; the Prometheus gauge
// exports each value and alerts on anything but 0.
func (s *Store) LedgerImbalance(ctx context.Context) (map[vend.Currency]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT currency, SUM(amount) FROM entries GROUP BY currency HAVING SUM(amount) <> 0`)
	if err != nil {
		return nil, fmt.Errorf("store: ledger imbalance: %w", err)
	}
	defer rows.Close()
	out := map[vend.Currency]int64{}
	for rows.Next() {
		var c string
		var sum int64
		if err := rows.Scan(&c, &sum); err != nil {
			return nil, fmt.Errorf("store: ledger imbalance: %w", err)
		}
		out[vend.Currency(c)] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: ledger imbalance: %w", err)
	}
	// Each transaction must balance on its own, too.
	var bad int
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT tx_id FROM entries GROUP BY tx_id, currency HAVING SUM(amount) <> 0) t`).Scan(&bad)
	if err != nil {
		return nil, fmt.Errorf("store: ledger imbalance: %w", err)
	}
	if bad > 0 && len(out) == 0 {
		out["???"] = int64(bad) // unbalanced transactions that happen to cancel out overall
	}
	return out, nil
}

// BalanceMismatch is an account whose stored balance differs from the
// sum of its entries, or that is negative though it may not be.
type BalanceMismatch struct {
	Account Account
	Entries int64 // sum of the account's entries, minor units
}

// CheckBalances returns every account whose stored balance is not the sum
// of its entries or is negative without being allowed to; none on a
// correct ledger.
func (s *Store) CheckBalances(ctx context.Context) ([]BalanceMismatch, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT a.id, a.kind, a.owner, a.currency, a.balance, COALESCE(SUM(e.amount), 0)
		FROM accounts a LEFT JOIN entries e ON e.account_id = a.id
		GROUP BY a.id, a.kind, a.owner, a.currency, a.balance, a.may_go_negative
		HAVING a.balance <> COALESCE(SUM(e.amount), 0) OR (a.may_go_negative = 0 AND a.balance < 0)`)
	if err != nil {
		return nil, fmt.Errorf("store: check balances: %w", err)
	}
	defer rows.Close()
	var out []BalanceMismatch
	for rows.Next() {
		var m BalanceMismatch
		var kind, cur string
		if err := rows.Scan(&m.Account.ID, &kind, &m.Account.Owner, &cur, &m.Account.Balance, &m.Entries); err != nil {
			return nil, fmt.Errorf("store: check balances: %w", err)
		}
		m.Account.Kind, m.Account.Currency = AccountKind(kind), vend.Currency(cur)
		out = append(out, m)
	}
	return out, rows.Err()
}

// TopUpResult is the outcome of TopUp.
type TopUpResult struct {
	TxID      int64       // ledger transaction ID
	Wallet    vend.Amount // the wallet balance after the top-up (the current balance, on a duplicate)
	Duplicate bool        // the key was used before with the same request; no money moved this time
}

// TopUp moves amount from the channel's clearing account into the user's
// wallet, once per (user, key): a retry with the same key and amount
// returns the first transaction with Duplicate set; the same key with a
// different amount, currency or channel is ErrIdemConflict. Errors:
// ErrAmount (amount <= 0), vend.ErrCurrency, ErrInput (empty key or
// channel), ErrUserNotFound, ErrIdemConflict.
func (s *Store) TopUp(ctx context.Context, user string, amount vend.Amount, channel, key string) (TopUpResult, error) {
	if amount.Minor <= 0 {
		return TopUpResult{}, vend.Errorf(ErrAmount, "top-up of %d", amount.Minor)
	}
	if err := amount.Currency.Validate(); err != nil {
		return TopUpResult{}, fmt.Errorf("store: top-up: %w", err)
	}
	if key == "" || len(key) > 200 || channel == "" || len(channel) > 64 {
		return TopUpResult{}, vend.Errorf(ErrInput, "top-up needs an idempotency key (1-200 bytes) and a channel (1-64)")
	}
	idem := "topup:" + user + ":" + key
	reqHash := fmt.Sprintf("%s|%d|%s", channel, amount.Minor, amount.Currency)
	var r TopUpResult
	err := s.tx(ctx, "top-up", func(tx *sql.Tx) error {
		r = TopUpResult{}
		if err := s.userExists(ctx, tx, user); err != nil {
			return err
		}
		var prevHash string
		err := tx.QueryRowContext(ctx, `SELECT id, req_hash FROM ledger_tx WHERE idem_key = $1`, idem).Scan(&r.TxID, &prevHash)
		switch {
		case err == nil:
			if prevHash != reqHash {
				return vend.Errorf(ErrIdemConflict, "top-up key %q", key)
			}
			r.Duplicate = true
		case errors.Is(err, sql.ErrNoRows):
			from, err := s.account(ctx, tx, ChannelClearing, channel, amount.Currency)
			if err != nil {
				return err
			}
			to, err := s.account(ctx, tx, UserWallet, user, amount.Currency)
			if err != nil {
				return err
			}
			ids, ok, err := s.post(ctx, tx, amount.Currency,
				transfer{kind: TxTopUp, idemKey: idem, reqHash: reqHash, from: from, to: to, amount: amount.Minor})
			if err != nil {
				return err
			}
			if !ok {
				return errRetry // a concurrent top-up with this key won; read it next time
			}
			r.TxID = ids[0]
		default:
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT balance FROM accounts WHERE kind = $1 AND owner = $2 AND currency = $3`,
			string(UserWallet), user, string(amount.Currency)).Scan(&r.Wallet.Minor)
	})
	r.Wallet.Currency = amount.Currency
	return r, err
}
