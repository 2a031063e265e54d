package service

import (
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Errors of the operator's money.
var (
	// ErrNoOperator refuses an operator's money request made without a
	// signed-in operator account in the context.
	ErrNoOperator = vend.E(vend.Unauthorized, "auth.forbidden", "service: an operator account is needed")
	// ErrMoneyInput is a malformed amount, range or grouping.
	ErrMoneyInput = vend.E(vend.Invalid, "request.field", "service: invalid field")
)

// opActor checks that the actor in ctx may do p and returns it; a context
// without an operator account is ErrNoOperator: an operator's money is
// always looked at by someone.
func (s *Service) opActor(ctx context.Context, p Perm) (Actor, error) {
	a, ok := ActorFrom(ctx)
	if !ok || a.Operator == "" {
		return Actor{}, vend.Errorf(ErrNoOperator, "%s", p)
	}
	if err := s.Authorize(ctx, p); err != nil {
		return Actor{}, err
	}
	return a, nil
}

// SearchSessions returns one page of the actor's operator's sessions
// matching q (store.SearchSessions: device, machine, time range, state,
// outcome, payer reference; cursor paging, no cap). Needs PermView.
func (s *Service) SearchSessions(ctx context.Context, q store.SessionQuery) (store.SessionPage, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return store.SessionPage{}, err
	}
	return s.st.SearchSessions(ctx, a.Operator, q)
}

// SessionEvent is one step of a session's life as the session page lists it.
type SessionEvent struct {
	At     time.Time
	What   string // created, started, ended, unreported, report, hold, capture, release, refund…
	Detail string
}

// SessionDetail is everything the operator's session page shows.
type SessionDetail struct {
	Session store.Session
	// Grant is the signed grant the device was sent, decoded after its
	// signature was checked with the cloud's key; GrantErr says why not.
	Grant    *signed.Grant
	GrantErr string
	// Report is the device's signed usage report, decoded after its
	// signature was checked with the device's keys (ReportErr otherwise).
	Report    *signed.Usage
	ReportRaw store.UsageReport
	ReportErr string
	Events    []SessionEvent
	Ledger    []store.LedgerTx
	// Receipt is the payer's receipt (settled or refunded sessions).
	Receipt *phoneapi.Receipt
	// Checkout is the web checkout that paid the session through a
	// channel; nil for a wallet session.
	Checkout   *store.Checkout
	Refunds    []store.RefundRequest
	Approvals  []store.RefundApproval
	Refundable vend.Amount // what is left to refund
}

// SessionDetail returns one of the actor's operator's sessions with its
// grant, usage report, events, ledger, receipt, checkout, refunds and
// refund approvals. Needs PermView. Errors: session.not_found (another
// operator's too).
func (s *Service) SessionDetail(ctx context.Context, id vend.SessionID) (SessionDetail, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return SessionDetail{}, err
	}
	ss, err := s.st.OperatorSession(ctx, a.Operator, id)
	if err != nil {
		return SessionDetail{}, err
	}
	d := SessionDetail{Session: ss}
	if len(ss.Grant) > 0 {
		keys, _ := signed.NewKeys(s.opts.CloudKey.Public().(ed25519.PublicKey))
		if g, err := signed.OpenGrant(ss.Grant, keys); err != nil {
			d.GrantErr = err.Error()
		} else {
			d.Grant = &g
		}
	}
	d.Session.Grant = nil
	rep, ok, err := s.st.SessionUsageReport(ctx, id)
	if err != nil {
		return SessionDetail{}, err
	}
	if ok {
		d.ReportRaw = rep
		uk, err := s.st.UsageKeys(ctx, rep.Device, id)
		var u signed.Usage
		if err == nil {
			var keys signed.Keys
			if keys, err = signed.NewKeys(uk.All()...); err == nil {
				u, err = signed.OpenUsage(rep.Signed, keys)
			}
		}
		if err != nil {
			d.ReportErr = err.Error()
		} else {
			d.Report = &u
		}
	}
	if d.Ledger, err = s.st.SessionLedger(ctx, id); err != nil {
		return SessionDetail{}, err
	}
	if d.Refunds, err = s.st.SessionRefunds(ctx, id); err != nil {
		return SessionDetail{}, err
	}
	if d.Approvals, err = s.st.RefundApprovals(ctx, a.Operator, id, false); err != nil {
		return SessionDetail{}, err
	}
	if c, err := s.st.CheckoutBySession(ctx, id); err == nil {
		d.Checkout = &c
	} else if vend.KindOf(err) != vend.NotFound {
		return SessionDetail{}, err
	}
	if ss.State == store.Settled || ss.State == store.Refunded {
		if rc, err := s.Receipt(ctx, ss.User, id); err == nil {
			d.Receipt = &rc
		}
	}
	d.Refundable = vend.Amount{Currency: ss.Currency}
	if p, err := s.st.PlanSessionRefund(ctx, a.Operator, id, vend.Amount{Minor: 1, Currency: ss.Currency}); err == nil || vend.CodeOf(err) == store.ErrRefundable.Code {
		d.Refundable = p.Refundable
	}
	d.Events = sessionEvents(d)
	return d, nil
}

// sessionEvents builds a session's timeline from its times, its report
// and its ledger, oldest first.
func sessionEvents(d SessionDetail) []SessionEvent {
	ss := d.Session
	ev := []SessionEvent{{At: ss.Created, What: "created", Detail: fmt.Sprintf("cap %d units, hold %s", ss.CapUnits, vend.Amount{Minor: ss.Hold, Currency: ss.Currency})}}
	if !ss.Started.IsZero() {
		ev = append(ev, SessionEvent{At: ss.Started, What: "started"})
	}
	if !ss.Unreported.IsZero() {
		ev = append(ev, SessionEvent{At: ss.Unreported, What: "unreported", Detail: "no report within the longest run and the offline allowance"})
	}
	if !ss.Ended.IsZero() {
		ev = append(ev, SessionEvent{At: ss.Ended, What: "ended", Detail: fmt.Sprintf("%s, %d units", ss.Outcome, ss.Units)})
	}
	if d.Report != nil {
		ev = append(ev, SessionEvent{At: d.ReportRaw.Received, What: "report", Detail: fmt.Sprintf("signed report #%d: %d units, %s", d.Report.Seq, d.Report.Units, vend.Amount{Minor: d.Report.Amount, Currency: d.Report.Currency})})
	}
	for _, t := range d.Ledger {
		ev = append(ev, SessionEvent{At: t.At, What: string(t.Kind), Detail: fmt.Sprintf("%s from %s to %s", t.Amount, t.From, t.To)})
	}
	if ss.Reason != "" {
		ev = append(ev, SessionEvent{At: ss.Updated, What: "reason", Detail: ss.Reason})
	}
	for i := 1; i < len(ev); i++ { // stable insertion sort by time
		for j := i; j > 0 && ev[j].At.Before(ev[j-1].At); j-- {
			ev[j], ev[j-1] = ev[j-1], ev[j]
		}
	}
	return ev
}

// SettleUnreported settles one of the actor's operator's unreported
// sessions by hand: amount captured (≤ the hold), the rest released, with
// a reason (OperatorSettle, which authorizes PermSettle and audits
// session.settle).
func (s *Service) SettleUnreported(ctx context.Context, id vend.SessionID, amount vend.Amount, reason string) (store.Session, error) {
	a, err := s.opActor(ctx, PermSettle)
	if err != nil {
		return store.Session{}, err
	}
	return s.OperatorSettle(ctx, a.Operator, id, amount, reason)
}

// VoidUnreported releases one of the actor's operator's unreported
// sessions in full, with a reason (OperatorVoid, which authorizes
// PermSettle and audits session.void).
func (s *Service) VoidUnreported(ctx context.Context, id vend.SessionID, reason string) (store.Session, error) {
	a, err := s.opActor(ctx, PermSettle)
	if err != nil {
		return store.Session{}, err
	}
	return s.OperatorVoid(ctx, a.Operator, id, reason)
}

// UnreportedSessions lists the actor's operator's unreported sessions,
// those whose settlement window ends first first. Needs PermView.
func (s *Service) UnreportedSessions(ctx context.Context, limit int) ([]store.Session, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return nil, err
	}
	return s.st.UnreportedSessions(ctx, a.Operator, limit)
}

// RefundReview is what a refund will do, shown before it is confirmed.
type RefundReview struct {
	Plan store.RefundPlan
	// NeedsApproval is set when the amount is above the operator's
	// threshold: confirming asks an owner instead of refunding.
	NeedsApproval bool
	Threshold     *vend.Amount
}

// ReviewRefund computes where a refund of amount of one of the actor's
// operator's sessions would go (channels oldest first, then the wallet)
// and whether it needs an owner's approval, without moving money. Needs
// PermRefund. Errors: the store's PlanSessionRefund's.
func (s *Service) ReviewRefund(ctx context.Context, id vend.SessionID, amount vend.Amount) (RefundReview, error) {
	a, err := s.opActor(ctx, PermRefund)
	if err != nil {
		return RefundReview{}, err
	}
	p, err := s.st.PlanSessionRefund(ctx, a.Operator, id, amount)
	if err != nil {
		return RefundReview{}, err
	}
	r := RefundReview{Plan: p}
	if th, ok, err := s.st.RefundThreshold(ctx, a.Operator); err != nil {
		return RefundReview{}, err
	} else if ok {
		r.Threshold = &th
		r.NeedsApproval = th.Currency != amount.Currency || amount.Minor > th.Minor
	}
	return r, nil
}

// RefundOutcome is the answer to a confirmed refund: the refund made, or
// the approval it now waits for.
type RefundOutcome struct {
	Refund   *SessionRefund        `json:"refund,omitempty"`
	Approval *store.RefundApproval `json:"-"`
}

// RequestRefund refunds amount of one of the actor's operator's sessions
// with a reason, once per key (a double submission refunds once): to the
// original channels, the rest to the wallet (RefundSession). Above the
// operator's threshold it records a refund approval for an owner instead
// (once per key too). Needs PermRefund; audited as session.refund
// (RefundSession) or refund.requested, not again for a duplicate.
func (s *Service) RequestRefund(ctx context.Context, id vend.SessionID, key string, amount vend.Amount, reason string) (RefundOutcome, error) {
	a, err := s.opActor(ctx, PermRefund)
	if err != nil {
		return RefundOutcome{}, err
	}
	th, ok, err := s.st.RefundThreshold(ctx, a.Operator)
	if err != nil {
		return RefundOutcome{}, err
	}
	if ok && (th.Currency != amount.Currency || amount.Minor > th.Minor) {
		ap, err := s.st.RequestRefundApproval(ctx, store.NewApproval{Operator: a.Operator, Session: id.String(), Amount: amount,
			Reason: reason, Key: key, RequestedBy: a.Account, ReqByEmail: a.Email})
		if err != nil {
			return RefundOutcome{}, err
		}
		if !ap.Duplicate {
			s.audited(ctx, a.Operator, "refund.requested", id.String(), nil, auditApproval(ap))
		}
		return RefundOutcome{Approval: &ap}, nil
	}
	r, err := s.RefundSession(ctx, a.Operator, id, key, amount, reason)
	if err != nil {
		return RefundOutcome{}, err
	}
	return RefundOutcome{Refund: &r}, nil
}

// RefundParts describes channel refunds as the phone API does (source,
// order, amount, state, provider's refund ID).
func (s *Service) RefundParts(fs []store.Refund) []phoneapi.RefundPart { return s.refundParts(fs) }

type auditedApproval struct {
	ID      string `json:"id"`
	Session string `json:"session"`
	Amount  int64  `json:"amount_minor"`
	Cur     string `json:"currency"`
	Reason  string `json:"reason"`
	State   string `json:"state"`
	By      string `json:"requested_by"`
	Decider string `json:"decided_by,omitempty"`
	Note    string `json:"note,omitempty"`
	Refund  string `json:"refund,omitempty"`
}

func auditApproval(a store.RefundApproval) auditedApproval {
	return auditedApproval{ID: a.ID, Session: a.Session.String(), Amount: a.Amount.Minor, Cur: string(a.Amount.Currency), Reason: a.Reason,
		State: string(a.State), By: a.RequestedEmail, Decider: a.DecidedEmail, Note: a.Note, Refund: a.Refund}
}

// RefundApprovals returns the actor's operator's open refund approvals,
// newest first. Needs PermView.
func (s *Service) RefundApprovals(ctx context.Context) ([]store.RefundApproval, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return nil, err
	}
	return s.st.RefundApprovals(ctx, a.Operator, vend.SessionID{}, true)
}

// RefundApproval returns one of the actor's operator's refund approvals.
// Needs PermView.
func (s *Service) RefundApproval(ctx context.Context, id string) (store.RefundApproval, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return store.RefundApproval{}, err
	}
	return s.st.RefundApproval(ctx, a.Operator, id)
}

// ApproveRefund is an owner's approval of a pending refund: another
// account than the one that asked (refund.approval_self) claims it, the
// refund is made with key "approval:<id>" (so approving twice, or after a
// crash, refunds once), and the approval records it. A refund that cannot
// be made (refund.exceeds_refundable: refunded meanwhile) leaves the
// approval pending, to be rejected. Needs PermApproveRefund; audited as
// refund.approved.
func (s *Service) ApproveRefund(ctx context.Context, id, note string) (store.RefundApproval, error) {
	a, err := s.opActor(ctx, PermApproveRefund)
	if err != nil {
		return store.RefundApproval{}, err
	}
	before, err := s.st.RefundApproval(ctx, a.Operator, id)
	if err != nil {
		return store.RefundApproval{}, err
	}
	if before.State == store.ApprovalApproved {
		return before, nil
	}
	ap, err := s.st.ClaimRefundApproval(ctx, a.Operator, id, a.Account, a.Email, note)
	if err != nil {
		return store.RefundApproval{}, err
	}
	r, err := s.st.RefundSession(ctx, a.Operator, ap.Session, ap.Amount, ap.Reason, "approval:"+ap.ID)
	if err != nil {
		if k := vend.KindOf(err); k == vend.Conflict || k == vend.Invalid || k == vend.NotFound {
			if rerr := s.st.ReleaseRefundApproval(ctx, a.Operator, id); rerr != nil {
				return store.RefundApproval{}, rerr
			}
		}
		return store.RefundApproval{}, err
	}
	if !r.Duplicate {
		s.sendRefunds(ctx, r)
	}
	after, err := s.st.FinishRefundApproval(ctx, a.Operator, id, r.ID)
	if err != nil {
		return store.RefundApproval{}, err
	}
	s.audited(ctx, a.Operator, "refund.approved", ap.Session.String(), auditApproval(before), auditApproval(after))
	return after, nil
}

// RejectRefund is an owner's rejection of a pending refund, with a
// reason; nothing is refunded. Needs PermApproveRefund; audited as
// refund.rejected.
func (s *Service) RejectRefund(ctx context.Context, id, note string) (store.RefundApproval, error) {
	a, err := s.opActor(ctx, PermApproveRefund)
	if err != nil {
		return store.RefundApproval{}, err
	}
	before, err := s.st.RefundApproval(ctx, a.Operator, id)
	if err != nil {
		return store.RefundApproval{}, err
	}
	after, err := s.st.RejectRefundApproval(ctx, a.Operator, id, a.Account, a.Email, note)
	if err != nil {
		return store.RefundApproval{}, err
	}
	s.audited(ctx, a.Operator, "refund.rejected", after.Session.String(), auditApproval(before), auditApproval(after))
	return after, nil
}

// RefundThreshold returns the actor's operator's refund approval
// threshold (ok false: none). Needs PermView.
func (s *Service) RefundThreshold(ctx context.Context) (vend.Amount, bool, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return vend.Amount{}, false, err
	}
	return s.st.RefundThreshold(ctx, a.Operator)
}

// SetRefundThreshold sets (nil: removes) the amount above which the
// actor's operator's refunds need an owner's approval. Needs
// PermApproveRefund; audited as refund.threshold.
func (s *Service) SetRefundThreshold(ctx context.Context, limit *vend.Amount) error {
	a, err := s.opActor(ctx, PermApproveRefund)
	if err != nil {
		return err
	}
	prev, ok, err := s.st.RefundThreshold(ctx, a.Operator)
	if err != nil {
		return err
	}
	if err := s.st.SetRefundThreshold(ctx, a.Operator, limit); err != nil {
		return err
	}
	var before any
	if ok {
		before = prev
	}
	s.audited(ctx, a.Operator, "refund.threshold", a.Operator, before, limit)
	return nil
}

// SetDeviceLocation sets where one of the actor's operator's devices
// stands (revenue is grouped by it). Needs PermProvision; audited as
// device.location.
func (s *Service) SetDeviceLocation(ctx context.Context, device, location string) error {
	a, err := s.opActor(ctx, PermProvision)
	if err != nil {
		return err
	}
	locs, err := s.st.DeviceLocations(ctx, a.Operator)
	if err != nil {
		return err
	}
	if err := s.st.SetDeviceLocation(ctx, a.Operator, device, location); err != nil {
		return err
	}
	s.audited(ctx, a.Operator, "device.location", device, locs[device], strings.TrimSpace(location))
	return nil
}

// Revenue returns the actor's operator's revenue in [from, to) grouped by
// day, device or location (store.RevenueBy). Needs PermView.
func (s *Service) Revenue(ctx context.Context, group store.RevenueGroup, from, to time.Time) ([]store.RevenueLine, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return nil, err
	}
	return s.st.RevenueBy(ctx, a.Operator, group, from, to)
}

// Export kinds.
const (
	ExportSessions  = "sessions"
	ExportRevenue   = "revenue"
	ExportMovements = "ledger"
)

// ExportRange is what an export covers.
type ExportRange struct {
	From, To time.Time          // [From, To)
	Group    store.RevenueGroup // revenue exports: day, device or location
	Query    store.SessionQuery // session exports: the search (its time range is From, To)
}

// Export streams a CSV export of the actor's operator's books to w: kind
// ExportSessions (every session matching r.Query in [From, To), page by
// page), ExportRevenue (grouped by r.Group) or ExportMovements (the
// revenue account's entries with the balance after each: the merchant's
// account book). Money is exact: minor units and a decimal string, never
// a float. Text cells that a spreadsheet would run as a formula (starting
// with = + - @, a tab or a carriage return) are prefixed with a quote.
// Needs PermExport; audited as export.<kind>.
func (s *Service) Export(ctx context.Context, kind string, r ExportRange, w io.Writer) error {
	a, err := s.opActor(ctx, PermExport)
	if err != nil {
		return err
	}
	if !r.To.After(r.From) {
		return vend.Errorf(ErrMoneyInput, "export range: to must be after from")
	}
	switch kind {
	case ExportSessions, ExportRevenue, ExportMovements:
	default:
		return vend.Errorf(ErrMoneyInput, "export: unknown kind %q (want sessions, revenue or ledger)", clipText(kind))
	}
	if err := s.Audit(ctx, "export."+kind, a.Operator, nil, map[string]string{"from": r.From.UTC().Format(time.RFC3339),
		"to": r.To.UTC().Format(time.RFC3339), "group": string(r.Group)}); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	switch kind {
	case ExportSessions:
		err = s.exportSessions(ctx, a.Operator, r, cw)
	case ExportRevenue:
		err = s.exportRevenue(ctx, a.Operator, r, cw)
	default:
		err = s.exportMovements(ctx, a.Operator, r, cw)
	}
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

func (s *Service) exportSessions(ctx context.Context, operator string, r ExportRange, cw *csv.Writer) error {
	if err := cw.Write([]string{"session", "receipt", "created_at", "ended_at", "device", "machine", "slot", "state", "outcome", "units",
		"currency", "hold_minor", "hold", "captured_minor", "captured", "late_minor", "late", "reason"}); err != nil {
		return err
	}
	q := r.Query
	q.Since, q.Until, q.Limit, q.Cursor = r.From, r.To, store.MaxPageSize, ""
	for {
		p, err := s.st.SearchSessions(ctx, operator, q)
		if err != nil {
			return err
		}
		for _, ss := range p.Sessions {
			ended := ""
			if !ss.Ended.IsZero() {
				ended = ss.Ended.UTC().Format(time.RFC3339)
			}
			if err := cw.Write([]string{ss.ID.String(), "R-" + ss.ID.String(), ss.Created.UTC().Format(time.RFC3339), ended,
				CSVText(ss.Device), CSVText(ss.Machine), CSVText(ss.Slot), string(ss.State), ss.Outcome.String(),
				strconv.FormatUint(ss.Units, 10), string(ss.Currency),
				strconv.FormatInt(ss.Hold, 10), Decimal(ss.Hold, ss.Currency),
				strconv.FormatInt(ss.Captured, 10), Decimal(ss.Captured, ss.Currency),
				strconv.FormatInt(ss.LateAmount, 10), Decimal(ss.LateAmount, ss.Currency), CSVText(ss.Reason)}); err != nil {
				return err
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
		if p.Next == "" {
			return nil
		}
		q.Cursor = p.Next
	}
}

func (s *Service) exportRevenue(ctx context.Context, operator string, r ExportRange, cw *csv.Writer) error {
	g := r.Group
	if g == "" {
		g = store.ByDay
	}
	ls, err := s.st.RevenueBy(ctx, operator, g, r.From, r.To)
	if err != nil {
		return err
	}
	if err := cw.Write([]string{string(g), "currency", "sessions", "gross_minor", "gross", "refunds_minor", "refunds", "net_minor", "net"}); err != nil {
		return err
	}
	for _, l := range ls {
		if err := cw.Write([]string{CSVText(l.Key), string(l.Currency), strconv.Itoa(l.Sessions),
			strconv.FormatInt(l.Gross, 10), Decimal(l.Gross, l.Currency), strconv.FormatInt(l.Refunds, 10), Decimal(l.Refunds, l.Currency),
			strconv.FormatInt(l.Net, 10), Decimal(l.Net, l.Currency)}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) exportMovements(ctx context.Context, operator string, r ExportRange, cw *csv.Writer) error {
	if err := cw.Write([]string{"entry", "date", "kind", "session", "currency", "amount_minor", "amount", "balance_after_minor", "balance_after"}); err != nil {
		return err
	}
	n := 0
	return s.st.Movements(ctx, operator, r.From, r.To, func(m store.Movement) error {
		sess := ""
		if !m.Session.IsZero() {
			sess = m.Session.String()
		}
		if err := cw.Write([]string{strconv.FormatInt(m.Entry, 10), m.At.Format(time.RFC3339), string(m.Kind), sess, string(m.Amount.Currency),
			strconv.FormatInt(m.Amount.Minor, 10), Decimal(m.Amount.Minor, m.Amount.Currency),
			strconv.FormatInt(m.Balance.Minor, 10), Decimal(m.Balance.Minor, m.Balance.Currency)}); err != nil {
			return err
		}
		if n++; n%500 == 0 {
			cw.Flush()
			return cw.Error()
		}
		return nil
	})
}

// CSVText neutralizes a text cell for spreadsheets: a cell starting with
// = + - @, a tab or a carriage return is prefixed with a single quote, so
// that it is shown, never run as a formula (CSV injection). Numbers the
// export writes itself are not text cells.
func CSVText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// minorDigits is the number of decimal places of currencies that have
// other than two (ISO 4217).
var minorDigits = map[vend.Currency]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0,
	"UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

// Digits returns the number of decimal places of cur's minor unit.
func Digits(cur vend.Currency) int {
	if d, ok := minorDigits[cur]; ok {
		return d
	}
	return 2
}

// Decimal formats minor units of cur as an exact decimal string ("-1.50"
// for -150 EUR, "150" for 150 JPY), with integers only.
func Decimal(minor int64, cur vend.Currency) string {
	d := Digits(cur)
	neg := minor < 0
	u := uint64(minor)
	if neg {
		u = -u
	}
	s := strconv.FormatUint(u, 10)
	if d > 0 {
		for len(s) <= d {
			s = "0" + s
		}
		s = s[:len(s)-d] + "." + s[len(s)-d:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ParseDecimal reads an amount an operator typed ("1.5", "1.50", "2")
// into minor units of cur, exactly: no more decimal places than the
// currency has, not negative, at most 10^15 minor units. Errors:
// request.field naming what was wrong.
func ParseDecimal(s string, cur vend.Currency) (int64, error) {
	s = strings.TrimSpace(s)
	whole, frac, dot := strings.Cut(s, ".")
	d := Digits(cur)
	bad := func(why string) (int64, error) {
		return 0, vend.Errorf(ErrMoneyInput, "amount %q: %s", clipText(s), why)
	}
	if whole == "" && frac == "" {
		return bad("empty")
	}
	if dot && len(frac) == 0 {
		return bad("nothing after the decimal point")
	}
	if len(frac) > d {
		return bad(fmt.Sprintf("%s has %d decimal places", cur, d))
	}
	for _, c := range whole + frac {
		if c < '0' || c > '9' {
			return bad("want digits and one decimal point")
		}
	}
	if whole == "" {
		whole = "0"
	}
	if len(whole) > 13 {
		return bad("too large")
	}
	frac += strings.Repeat("0", d-len(frac))
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil || n > 1e15 {
		return bad("too large")
	}
	return n, nil
}
