package httpapi

import (
	"net/http"
	"strings"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// The operator API's money routes (described in app-protocol/openapi.yaml
// under /v1/operator/). Each calls the service method the console uses,
// with the account as the actor, so roles and the audit log apply alike.
type (
	// OperatorSessionPage is one page of a session search, newest first;
	// NextCursor (absent on the last page) is the cursor of the next.
	OperatorSessionPage struct {
		Sessions   []OperatorSession `json:"sessions"`
		NextCursor string            `json:"next_cursor,omitempty"`
	}
	// OperatorSessionDetail is one session with all that explains its money.
	OperatorSessionDetail struct {
		Session       OperatorSession        `json:"session"`
		ReceiptNumber string                 `json:"receipt_number"` // the payer reference on the app's receipt
		Grant         *OperatorGrant         `json:"grant,omitempty"`
		GrantError    string                 `json:"grant_error,omitempty"` // why the stored grant failed its signature check
		Report        *OperatorUsageReport   `json:"report,omitempty"`
		ReportError   string                 `json:"report_error,omitempty"` // why the stored report failed its signature check
		Events        []OperatorSessionEvent `json:"events"`
		Checkout      *OperatorCheckoutRef   `json:"checkout,omitempty"`
		Refunds       []OperatorRefund       `json:"refunds"`
		Approvals     []OperatorApproval     `json:"approvals"`
		Refundable    vend.Amount            `json:"refundable"`
	}
	// OperatorGrant is the decoded signed grant, its signature checked
	// with the cloud's key.
	OperatorGrant struct {
		KeyID     string        `json:"key_id"`
		Device    string        `json:"device"`
		Machine   string        `json:"machine"`
		Slot      string        `json:"slot,omitempty"`
		Unit      vend.Unit     `json:"unit"`
		Price     vend.Price    `json:"price"`
		Currency  vend.Currency `json:"currency"`
		CapUnits  uint64        `json:"cap_units"`
		CapMoney  vend.Amount   `json:"cap_money"`
		IssuedAt  time.Time     `json:"issued_at"`
		ExpiresAt time.Time     `json:"expires_at"`
		Window    uint32        `json:"window"`
	}
	// OperatorUsageReport is the device's decoded signed usage report,
	// its signature checked with the device's keys; Signed is the report
	// as received (base64), for anyone to check again.
	OperatorUsageReport struct {
		Seq        uint64       `json:"seq"`
		Units      uint64       `json:"units"`
		Amount     vend.Amount  `json:"amount"`
		Outcome    vend.Outcome `json:"outcome"`
		FaultCode  uint16       `json:"fault_code,omitempty"`
		StartedAt  time.Time    `json:"started_at,omitzero"`
		EndedAt    time.Time    `json:"ended_at"`
		ReceivedAt time.Time    `json:"received_at"`
		Signed     []byte       `json:"signed"`
	}
	// OperatorSessionEvent is one step of a session's life.
	OperatorSessionEvent struct {
		At     time.Time `json:"at"`
		What   string    `json:"what"`
		Detail string    `json:"detail,omitempty"`
	}
	// OperatorCheckoutRef names the web checkout (and channel order) that
	// paid a session.
	OperatorCheckoutRef struct {
		ID      string `json:"id"`
		Channel string `json:"channel"`
		OrderNo string `json:"order_no"`
	}
	// OperatorRefund is one refund of a session: its parts through the
	// payer's channels and what went to the wallet.
	OperatorRefund struct {
		ID        string                `json:"id"`
		Amount    vend.Amount           `json:"amount"`
		Wallet    vend.Amount           `json:"wallet"`
		Reason    string                `json:"reason"`
		CreatedAt time.Time             `json:"created_at"`
		Parts     []phoneapi.RefundPart `json:"parts"`
	}
	// OperatorApproval is a refund above the operator's threshold, waiting
	// for (or given) an owner's decision.
	OperatorApproval struct {
		ID          string      `json:"id"`
		Session     string      `json:"session"`
		Amount      vend.Amount `json:"amount"`
		Reason      string      `json:"reason"`
		State       string      `json:"state"` // pending, approving, approved, rejected, expired
		RequestedBy string      `json:"requested_by"`
		DecidedBy   string      `json:"decided_by,omitempty"`
		Note        string      `json:"note,omitempty"`
		Refund      string      `json:"refund,omitempty"`
		CreatedAt   time.Time   `json:"created_at"`
		ExpiresAt   time.Time   `json:"expires_at"`
		DecidedAt   time.Time   `json:"decided_at,omitzero"`
	}
	// OperatorRefundReviewRequest asks where a refund would go.
	OperatorRefundReviewRequest struct {
		Amount vend.Amount `json:"amount"`
	}
	// OperatorRefundReview is where a refund would go, computed without
	// moving money.
	OperatorRefundReview struct {
		Amount        vend.Amount                 `json:"amount"`
		Charged       vend.Amount                 `json:"charged"`
		Refundable    vend.Amount                 `json:"refundable"`
		Channels      []OperatorRefundPlannedPart `json:"channels"`
		Wallet        vend.Amount                 `json:"wallet"`
		NeedsApproval bool                        `json:"needs_approval"`
		Threshold     *vend.Amount                `json:"threshold,omitempty"`
	}
	// OperatorRefundPlannedPart is one channel refund of a review.
	OperatorRefundPlannedPart struct {
		Channel    string      `json:"channel"`
		OrderNo    string      `json:"order_no"`
		ProviderTx string      `json:"provider_tx,omitempty"`
		Amount     vend.Amount `json:"amount"`
	}
	// OperatorDecision is an owner's approve or reject, with a note
	// (required to reject).
	OperatorDecision struct {
		Note string `json:"note,omitempty"`
	}
	// OperatorRefundThreshold is the amount above which a refund needs an
	// owner's approval; absent: none.
	OperatorRefundThreshold struct {
		Threshold *vend.Amount `json:"threshold,omitempty"`
	}
	// OperatorRevenueLine is one group of revenue (a day, a device, a
	// location) in one currency.
	OperatorRevenueLine struct {
		Key      string      `json:"key"`
		Sessions int         `json:"sessions"`
		Gross    vend.Amount `json:"gross"`
		Refunds  vend.Amount `json:"refunds"`
		Net      vend.Amount `json:"net"`
	}
	// OperatorApprovalList is the open refund approvals, newest first.
	OperatorApprovalList struct {
		Approvals []OperatorApproval `json:"approvals"`
	}
	// OperatorDeviceList answers GET /v1/operator/devices.
	OperatorDeviceList struct {
		Devices []OperatorDevice `json:"devices"`
	}
	// OperatorSessionList answers GET /v1/operator/sessions/unreported.
	OperatorSessionList struct {
		Sessions []OperatorSession `json:"sessions"`
	}
	// OperatorRevenueList answers GET /v1/operator/revenue.
	OperatorRevenueList struct {
		Revenue []OperatorRevenue `json:"revenue"`
	}
	// OperatorRevenueReport is revenue grouped one way.
	OperatorRevenueReport struct {
		Group string                `json:"group"`
		From  string                `json:"from"` // YYYY-MM-DD
		To    string                `json:"to"`   // YYYY-MM-DD, exclusive
		Lines []OperatorRevenueLine `json:"lines"`
	}
)

// operatorMoneyRoutes registers the operator API's money routes on m.
func (s *Server) operatorMoneyRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/operator/sessions/{session}", s.operator(s.opSessionDetail))
	m.HandleFunc("POST /v1/operator/sessions/{session}/refund/review", s.operator(s.opRefundReview))
	m.HandleFunc("GET /v1/operator/refund-approvals", s.operator(s.opApprovals))
	m.HandleFunc("POST /v1/operator/refund-approvals/{id}/approve", s.operator(s.opApprove))
	m.HandleFunc("POST /v1/operator/refund-approvals/{id}/reject", s.operator(s.opReject))
	m.HandleFunc("GET /v1/operator/refund-threshold", s.operator(s.opThreshold))
	m.HandleFunc("PUT /v1/operator/refund-threshold", s.operator(s.opSetThreshold))
	m.HandleFunc("GET /v1/operator/revenue/{group}", s.operator(s.opRevenueBy))
	m.HandleFunc("GET /v1/operator/exports/{kind}", s.operator(s.opExport))
}

// opSearchSessions answers GET /v1/operator/sessions: device, machine,
// since/until (RFC 3339 or YYYY-MM-DD), state, outcome, payer, cursor,
// limit (1-500, 50 by default).
func (s *Server) opSearchSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.SessionQuery{Device: q.Get("device"), Machine: q.Get("machine"), State: store.State(q.Get("state")),
		Payer: q.Get("payer"), Cursor: q.Get("cursor")}
	var err error
	if f.Since, err = queryTime(r, "since"); err == nil {
		f.Until, err = queryTime(r, "until")
	}
	if err == nil {
		f.Limit, err = queryLimit(r)
	}
	if err == nil && f.Limit > store.MaxPageSize {
		err = vend.Errorf(ErrField, "limit: at most %d", store.MaxPageSize)
	}
	if o := q.Get("outcome"); err == nil && o != "" {
		if err = f.Outcome.UnmarshalText([]byte(o)); err != nil {
			err = vend.Errorf(ErrField, "outcome: unknown %q", o)
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := s.svc.SearchSessions(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OperatorSessionPage{Sessions: operatorSessions(p.Sessions), NextCursor: p.Next})
}

func (s *Server) opSessionDetail(w http.ResponseWriter, r *http.Request) {
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := s.svc.SessionDetail(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := OperatorSessionDetail{Session: operatorSession(d.Session), ReceiptNumber: "R-" + id.String(), GrantError: d.GrantErr,
		ReportError: d.ReportErr, Events: []OperatorSessionEvent{}, Refunds: []OperatorRefund{}, Approvals: []OperatorApproval{},
		Refundable: d.Refundable}
	if g := d.Grant; g != nil {
		out.Grant = &OperatorGrant{KeyID: g.KeyID.String(), Device: g.Device, Machine: g.Machine, Slot: g.Slot, Unit: g.Unit, Price: g.Price,
			Currency: g.Currency, CapUnits: g.CapUnits, CapMoney: vend.Amount{Minor: g.CapMoney, Currency: g.Currency},
			IssuedAt: g.IssuedAt.UTC(), ExpiresAt: g.ExpiresAt.UTC(), Window: g.Window}
	}
	if u := d.Report; u != nil {
		out.Report = &OperatorUsageReport{Seq: u.Seq, Units: u.Units, Amount: vend.Amount{Minor: u.Amount, Currency: u.Currency},
			Outcome: u.Outcome, FaultCode: u.FaultCode, StartedAt: utcOrZero(u.StartedAt), EndedAt: u.EndedAt.UTC(),
			ReceivedAt: d.ReportRaw.Received, Signed: d.ReportRaw.Signed}
	}
	for _, e := range d.Events {
		out.Events = append(out.Events, OperatorSessionEvent{At: e.At.UTC(), What: e.What, Detail: e.Detail})
	}
	if c := d.Checkout; c != nil {
		out.Checkout = &OperatorCheckoutRef{ID: c.ID, Channel: c.Channel, OrderNo: c.OrderNo}
	}
	for _, rr := range d.Refunds {
		out.Refunds = append(out.Refunds, OperatorRefund{ID: rr.ID, Amount: rr.Amount, Wallet: vend.Amount{Minor: rr.Wallet, Currency: rr.Amount.Currency},
			Reason: rr.Reason, CreatedAt: rr.Created, Parts: s.svc.RefundParts(rr.Refunds)})
	}
	for _, a := range d.Approvals {
		out.Approvals = append(out.Approvals, opApproval(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func opApproval(a store.RefundApproval) OperatorApproval {
	return OperatorApproval{ID: a.ID, Session: a.Session.String(), Amount: a.Amount, Reason: a.Reason, State: string(a.State),
		RequestedBy: a.RequestedEmail, DecidedBy: a.DecidedEmail, Note: a.Note, Refund: a.Refund, CreatedAt: a.Created,
		ExpiresAt: a.Expires, DecidedAt: utcOrZero(a.Decided)}
}

func (s *Server) opRefundReview(w http.ResponseWriter, r *http.Request) {
	var req OperatorRefundReviewRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rv, err := s.svc.ReviewRefund(r.Context(), id, req.Amount)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := rv.Plan
	out := OperatorRefundReview{Amount: p.Amount, Charged: p.Charged, Refundable: p.Refundable, Wallet: p.Wallet,
		Channels: []OperatorRefundPlannedPart{}, NeedsApproval: rv.NeedsApproval, Threshold: rv.Threshold}
	for _, c := range p.Channels {
		out.Channels = append(out.Channels, OperatorRefundPlannedPart{Channel: c.Channel, OrderNo: c.OrderNo, ProviderTx: c.ProviderTx, Amount: c.Amount})
	}
	writeJSON(w, http.StatusOK, out)
}

// opRefundOrApproval answers a confirmed refund: 201 with the refund, or
// 202 with the approval it waits for (above the operator's threshold).
func (s *Server) opRefundOrApproval(w http.ResponseWriter, r *http.Request, id vend.SessionID, key string, req OperatorRefundRequest) {
	out, err := s.svc.RequestRefund(r.Context(), id, key, req.Amount, req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if out.Approval != nil {
		writeJSON(w, http.StatusAccepted, opApproval(*out.Approval))
		return
	}
	writeJSON(w, http.StatusCreated, out.Refund)
}

func (s *Server) opApprovals(w http.ResponseWriter, r *http.Request) {
	aps, err := s.svc.RefundApprovals(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := OperatorApprovalList{Approvals: []OperatorApproval{}}
	for _, a := range aps {
		out.Approvals = append(out.Approvals, opApproval(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) opDecide(w http.ResponseWriter, r *http.Request, decide func(id, note string) (store.RefundApproval, error)) {
	var req OperatorDecision
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := decide(r.PathValue("id"), strings.TrimSpace(req.Note))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, opApproval(a))
}

func (s *Server) opApprove(w http.ResponseWriter, r *http.Request) {
	s.opDecide(w, r, func(id, note string) (store.RefundApproval, error) { return s.svc.ApproveRefund(r.Context(), id, note) })
}

func (s *Server) opReject(w http.ResponseWriter, r *http.Request) {
	s.opDecide(w, r, func(id, note string) (store.RefundApproval, error) { return s.svc.RejectRefund(r.Context(), id, note) })
}

func (s *Server) opThreshold(w http.ResponseWriter, r *http.Request) {
	th, ok, err := s.svc.RefundThreshold(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := OperatorRefundThreshold{}
	if ok {
		out.Threshold = &th
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) opSetThreshold(w http.ResponseWriter, r *http.Request) {
	var req OperatorRefundThreshold
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.svc.SetRefundThreshold(r.Context(), req.Threshold); err != nil {
		s.fail(w, r, err)
		return
	}
	s.opThreshold(w, r)
}

// revenueRange reads from and to (YYYY-MM-DD or RFC 3339; to exclusive;
// the last 30 days by default).
func (s *Server) revenueRange(r *http.Request) (time.Time, time.Time, error) {
	from, err := queryTime(r, "from")
	if err != nil {
		return from, from, err
	}
	to, err := queryTime(r, "to")
	if err != nil {
		return from, to, err
	}
	if to.IsZero() {
		to = s.now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	}
	if from.IsZero() {
		from = to.Add(-30 * 24 * time.Hour)
	}
	if !to.After(from) {
		return from, to, vend.Errorf(ErrField, "to: must be after from")
	}
	return from, to, nil
}

func (s *Server) opRevenueBy(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.revenueRange(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	g := store.RevenueGroup(r.PathValue("group"))
	ls, err := s.svc.Revenue(r.Context(), g, from, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := OperatorRevenueReport{Group: string(g), From: from.UTC().Format(time.DateOnly), To: to.UTC().Format(time.DateOnly), Lines: []OperatorRevenueLine{}}
	for _, l := range ls {
		out.Lines = append(out.Lines, OperatorRevenueLine{Key: l.Key, Sessions: l.Sessions, Gross: vend.Amount{Minor: l.Gross, Currency: l.Currency},
			Refunds: vend.Amount{Minor: l.Refunds, Currency: l.Currency}, Net: vend.Amount{Minor: l.Net, Currency: l.Currency}})
	}
	writeJSON(w, http.StatusOK, out)
}

// opExport streams a CSV export: sessions, revenue (?group=) or ledger.
func (s *Server) opExport(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.revenueRange(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	kind := r.PathValue("kind")
	rg := service.ExportRange{From: from, To: to, Group: store.RevenueGroup(r.URL.Query().Get("group"))}
	switch rg.Group {
	case "", store.ByDay, store.ByDevice, store.ByLocation:
	default:
		s.fail(w, r, vend.Errorf(ErrField, "group: want day, device or location"))
		return
	}
	switch kind {
	case service.ExportSessions, service.ExportRevenue, service.ExportMovements:
	default:
		s.fail(w, r, vend.Errorf(ErrField, "kind: want sessions, revenue or ledger"))
		return
	}
	if err := s.svc.Authorize(r.Context(), service.PermExport); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+kind+`-`+from.UTC().Format(time.DateOnly)+`.csv"`)
	if err := s.svc.Export(r.Context(), kind, rg, w); err != nil {
		s.log.Error("httpapi: export", "kind", kind, "err", err)
		_, _ = w.Write([]byte("\n# export failed: " + vend.CodeOf(err) + "\n"))
	}
}
