package stripetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-go/v85"
)

// Server is the project's own stateful stand-in for the part of Stripe's
// API the card channel uses: payment intents (create, retrieve with
// latest_charge expanded, search by metadata order_no, capture, cancel),
// refunds (create, list by payment_intent, retrieve) and balance
// transactions (list of a created range, paginated, with data.source and
// data.source.payment_intent expanded). It speaks Stripe's wire format
// (form-encoded requests, JSON objects and errors) and enforces the rules
// Stripe documents: capture only from requires_capture, at most
// amount_capturable, once; cancel only from an uncaptured state (a
// succeeded or cancelled intent answers payment_intent_unexpected_state);
// refunds only of a succeeded intent and at most what is unrefunded;
// idempotency keys replay the first answer (a key reused with other
// parameters is an idempotency_error). It is NOT Stripe: stripe-mock is
// what checks request shapes; this checks sequencing.
//
// The payer's side is driven by test controls: Confirm, RequireAction,
// Decline, Lapse, FailRefund, SettleRefund. Set the exported fields before
// the first request.
type Server struct {
	URL    string           // the base URL to give the channel
	APIKey string           // the secret key requests must carry (Bearer); empty: any sk_ key
	Now    func() time.Time // the clock of created timestamps; time.Now when nil
	// Fee is Stripe's fee on a captured amount, minor units; nil: 2.9 % +
	// 30 rounded half up.
	Fee func(amount int64) int64
	// PendingRefunds makes new refunds pending until SettleRefund.
	PendingRefunds bool
	// Validity is how long an authorization is held (capture_before); 7 days when 0.
	Validity time.Duration

	srv      *httptest.Server
	mu       sync.Mutex
	seq      int
	intents  map[string]*intent
	charges  map[string]*charge
	refunds  map[string]*refund
	txs      []*balanceTx
	idem     map[string]idemAnswer
	calls    map[string]int
	failNext []int
}

type intent struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	Amount             int64             `json:"amount"`
	AmountCapturable   int64             `json:"amount_capturable"`
	AmountReceived     int64             `json:"amount_received"`
	CaptureMethod      string            `json:"capture_method"`
	ClientSecret       string            `json:"client_secret"`
	Created            int64             `json:"created"`
	Currency           string            `json:"currency"`
	Description        *string           `json:"description"`
	Metadata           map[string]string `json:"metadata"`
	Status             string            `json:"status"`
	CancellationReason *string           `json:"cancellation_reason"`
	NextAction         map[string]any    `json:"next_action"`
	LastPaymentError   map[string]any    `json:"last_payment_error"`
	PaymentMethodTypes []string          `json:"payment_method_types"`
	Livemode           bool              `json:"livemode"`
	latestCharge       string
}

type charge struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	Amount             int64             `json:"amount"`
	AmountCaptured     int64             `json:"amount_captured"`
	AmountRefunded     int64             `json:"amount_refunded"`
	Captured           bool              `json:"captured"`
	Created            int64             `json:"created"`
	Currency           string            `json:"currency"`
	Metadata           map[string]string `json:"metadata"`
	Status             string            `json:"status"`
	Paid               bool              `json:"paid"`
	BalanceTransaction *string           `json:"balance_transaction"`
	captureBefore      int64
	intent             string
}

type refund struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	Amount        int64             `json:"amount"`
	Created       int64             `json:"created"`
	Currency      string            `json:"currency"`
	Metadata      map[string]string `json:"metadata"`
	Status        string            `json:"status"`
	Charge        string            `json:"charge"`
	FailureReason string            `json:"failure_reason,omitempty"`
	intent        string
}

type balanceTx struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Amount      int64  `json:"amount"`
	Fee         int64  `json:"fee"`
	Net         int64  `json:"net"`
	Created     int64  `json:"created"`
	AvailableOn int64  `json:"available_on"`
	Currency    string `json:"currency"`
	Type        string `json:"type"`
	Status      string `json:"status"`
	Description string `json:"description"`
	source      string
}

type idemAnswer struct {
	fingerprint string
	status      int
	body        []byte
}

// NewServer starts the stand-in on loopback; it stops at t's cleanup.
func NewServer(t interface {
	Cleanup(func())
}) *Server {
	s := &Server{intents: map[string]*intent{}, charges: map[string]*charge{}, refunds: map[string]*refund{},
		idem: map[string]idemAnswer{}, calls: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) fee(amount int64) int64 {
	if s.Fee != nil {
		return s.Fee(amount)
	}
	return (amount*29+500)/1000 + 30
}

func (s *Server) id(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s_stand%06d", prefix, s.seq)
}

// Calls returns how many requests the stand-in answered for route, e.g.
// "POST /v1/payment_intents" or "POST /v1/payment_intents/{id}/capture".
func (s *Server) Calls(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[route]
}

// FailNext makes the next requests answer these HTTP statuses (an
// api_error), one each, before any processing.
func (s *Server) FailNext(status ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, status...)
}

// IntentOf returns the ID of the intent whose metadata order_no is orderNo, "" if none.
func (s *Server) IntentOf(orderNo string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pi := range s.intents {
		if pi.Metadata["order_no"] == orderNo {
			return pi.ID
		}
	}
	return ""
}

// Intents returns how many intents exist.
func (s *Server) Intents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.intents)
}

// Confirm is the payer confirming intent id with a card that needs no
// further action: an intent with manual capture turns requires_capture
// (the amount authorized), one with automatic capture succeeded (charged,
// with its balance transaction).
func (s *Server) Confirm(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi, ok := s.intents[id]
	if !ok {
		return fmt.Errorf("stripetest: no intent %s", id)
	}
	switch pi.Status {
	case "requires_payment_method", "requires_confirmation", "requires_action":
	default:
		return fmt.Errorf("stripetest: confirm %s: status %s", id, pi.Status)
	}
	now := s.now().Unix()
	validity := s.Validity
	if validity == 0 {
		validity = 7 * 24 * time.Hour
	}
	ch := &charge{ID: s.id("ch"), Object: "charge", Amount: pi.Amount, Created: now, Currency: pi.Currency,
		Metadata: copyMap(pi.Metadata), Status: "succeeded", Paid: true, intent: pi.ID}
	s.charges[ch.ID] = ch
	pi.latestCharge, pi.NextAction, pi.LastPaymentError = ch.ID, nil, nil
	if pi.CaptureMethod == "manual" {
		pi.Status, pi.AmountCapturable = "requires_capture", pi.Amount
		ch.captureBefore = now + int64(validity/time.Second)
		return nil
	}
	pi.Status, pi.AmountReceived = "succeeded", pi.Amount
	s.capture(pi, ch, pi.Amount)
	return nil
}

// capture records a capture of amount on the charge with its balance transaction.
func (s *Server) capture(pi *intent, ch *charge, amount int64) {
	ch.Captured, ch.AmountCaptured = true, amount
	fee := s.fee(amount)
	tx := &balanceTx{ID: s.id("txn"), Object: "balance_transaction", Amount: amount, Fee: fee, Net: amount - fee,
		Created: s.now().Unix(), Currency: pi.Currency, Type: "charge", Status: "pending", source: ch.ID}
	tx.AvailableOn = tx.Created + 2*86400
	ch.BalanceTransaction = &tx.ID
	s.txs = append(s.txs, tx)
}

// RequireAction is the issuer asking for 3-D Secure: the intent turns
// requires_action; Confirm completes it.
func (s *Server) RequireAction(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi, ok := s.intents[id]
	if !ok || (pi.Status != "requires_payment_method" && pi.Status != "requires_confirmation") {
		return fmt.Errorf("stripetest: require action %s: no such intent awaiting payment", id)
	}
	pi.Status = "requires_action"
	pi.NextAction = map[string]any{"type": "use_stripe_sdk", "use_stripe_sdk": map[string]any{"type": "three_d_secure_redirect"}}
	return nil
}

// Decline is the card being declined: the intent goes back to
// requires_payment_method with a last_payment_error.
func (s *Server) Decline(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi, ok := s.intents[id]
	if !ok || (pi.Status != "requires_payment_method" && pi.Status != "requires_confirmation" && pi.Status != "requires_action") {
		return fmt.Errorf("stripetest: decline %s: no such intent awaiting payment", id)
	}
	pi.Status, pi.NextAction = "requires_payment_method", nil
	pi.LastPaymentError = map[string]any{"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
		"message": "Your card was declined."}
	return nil
}

// Lapse is an authorization expiring uncaptured: Stripe cancels the
// intent (cancellation_reason automatic).
func (s *Server) Lapse(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi, ok := s.intents[id]
	if !ok || pi.Status != "requires_capture" {
		return fmt.Errorf("stripetest: lapse %s: no such authorized intent", id)
	}
	reason := "automatic"
	pi.Status, pi.AmountCapturable, pi.CancellationReason = "canceled", 0, &reason
	return nil
}

// FailRefund makes refund rid (a re_ ID) fail: its amount returns to
// the balance (a refund_failure balance transaction).
func (s *Server) FailRefund(rid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rf, ok := s.refunds[rid]
	if !ok || rf.Status == "failed" || rf.Status == "canceled" {
		return fmt.Errorf("stripetest: fail refund %s: no such live refund", rid)
	}
	rf.Status, rf.FailureReason = "failed", "expired_or_canceled_card"
	if ch := s.charges[rf.Charge]; ch != nil {
		ch.AmountRefunded -= rf.Amount
	}
	s.txs = append(s.txs, &balanceTx{ID: s.id("txn"), Object: "balance_transaction", Amount: rf.Amount, Net: rf.Amount,
		Created: s.now().Unix(), Currency: rf.Currency, Type: "refund_failure", Status: "pending", source: rf.ID})
	return nil
}

// SettleRefund makes a pending refund succeed.
func (s *Server) SettleRefund(rid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rf, ok := s.refunds[rid]
	if !ok || rf.Status != "pending" {
		return fmt.Errorf("stripetest: settle refund %s: no such pending refund", rid)
	}
	rf.Status = "succeeded"
	return nil
}

// RefundOf returns the ID of the refund whose metadata refund_no is refundNo, "" if none.
func (s *Server) RefundOf(refundNo string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rf := range s.refunds {
		if rf.Metadata["refund_no"] == refundNo {
			return rf.ID
		}
	}
	return ""
}

// Event returns the JSON of an event of type typ whose data.object is the
// current state of object id (pi_… or re_…), under stripe-go's API version.
func (s *Server) Event(typ, id string) []byte { return s.EventVersion(typ, id, stripe.APIVersion) }

// EventVersion is Event under another API version.
func (s *Server) EventVersion(typ, id, apiVersion string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var obj any
	switch {
	case s.intents[id] != nil:
		obj = s.intentJSON(s.intents[id], false)
	case s.refunds[id] != nil:
		obj = s.refundJSON(s.refunds[id], false)
	case s.charges[id] != nil:
		obj = s.charges[id]
	default:
		obj = map[string]any{"id": id, "object": "unknown"}
	}
	ev := map[string]any{"id": s.id("evt"), "object": "event", "api_version": apiVersion, "created": s.now().Unix(),
		"type": typ, "livemode": false, "pending_webhooks": 1, "data": map[string]any{"object": obj},
		"request": map[string]any{"id": nil, "idempotency_key": nil}}
	b, _ := json.Marshal(ev)
	return b
}

func copyMap(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// apiError is Stripe's error answer.
type apiError struct {
	status int
	body   map[string]any
}

func errorf(status int, typ, code, param, format string, args ...any) *apiError {
	e := map[string]any{"type": typ, "message": fmt.Sprintf(format, args...)}
	if code != "" {
		e["code"] = code
		e["doc_url"] = "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(code, "_", "-")
	}
	if param != "" {
		e["param"] = param
	}
	return &apiError{status: status, body: e}
}

var (
	routeIntent  = regexp.MustCompile(`^/v1/payment_intents/(pi_[A-Za-z0-9_]+)$`)
	routeCapture = regexp.MustCompile(`^/v1/payment_intents/(pi_[A-Za-z0-9_]+)/capture$`)
	routeCancel  = regexp.MustCompile(`^/v1/payment_intents/(pi_[A-Za-z0-9_]+)/cancel$`)
	routeRefund  = regexp.MustCompile(`^/v1/refunds/(re_[A-Za-z0-9_]+)$`)
	searchQuery  = regexp.MustCompile(`^metadata\['([a-z_]+)'\]:'([^']*)'$`)
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	status, body := s.answer(r)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", s.id("req"))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// answer handles one request under s.mu, with idempotency for POSTs.
func (s *Server) answer(r *http.Request) (int, []byte) {
	if len(s.failNext) > 0 {
		st := s.failNext[0]
		s.failNext = s.failNext[1:]
		return marshalErr(errorf(st, "api_error", "", "", "An unknown error occurred (injected by the stand-in)"))
	}
	auth := r.Header.Get("Authorization")
	key, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || !strings.HasPrefix(key, "sk_") || (s.APIKey != "" && key != s.APIKey) {
		return marshalErr(errorf(http.StatusUnauthorized, "invalid_request_error", "", "", "Invalid API Key provided"))
	}
	if err := r.ParseForm(); err != nil {
		return marshalErr(errorf(http.StatusBadRequest, "invalid_request_error", "", "", "Invalid request body: %v", err))
	}
	ik := r.Header.Get("Idempotency-Key")
	var fp string
	if r.Method == http.MethodPost && ik != "" {
		fp = r.Method + " " + r.URL.Path + "?" + r.PostForm.Encode()
		if prev, ok := s.idem[ik]; ok {
			if prev.fingerprint != fp {
				return marshalErr(errorf(http.StatusBadRequest, "idempotency_error", "", "",
					"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '%s' if you meant to execute a different request.", ik))
			}
			return prev.status, prev.body
		}
	}
	v, aerr := s.route(r)
	var status int
	var body []byte
	if aerr != nil {
		status, body = marshalErr(aerr)
	} else {
		status = http.StatusOK
		body, _ = json.Marshal(v)
	}
	if fp != "" {
		s.idem[ik] = idemAnswer{fingerprint: fp, status: status, body: body}
	}
	return status, body
}

func marshalErr(e *apiError) (int, []byte) {
	b, _ := json.Marshal(map[string]any{"error": e.body})
	return e.status, b
}

// allowed refuses parameters outside the list, as Stripe does.
func allowed(form url.Values, names ...string) *apiError {
	for k := range form {
		base := k
		if i := strings.IndexByte(k, '['); i >= 0 {
			base = k[:i]
		}
		ok := false
		for _, n := range names {
			if base == n {
				ok = true
			}
		}
		if !ok {
			return errorf(http.StatusBadRequest, "invalid_request_error", "parameter_unknown", k, "Received unknown parameter: %s", k)
		}
	}
	return nil
}

func expands(form url.Values) map[string]bool {
	out := map[string]bool{}
	for k, vs := range form {
		if strings.HasPrefix(k, "expand[") {
			for _, v := range vs {
				out[v] = true
			}
		}
	}
	return out
}

func metadata(form url.Values) map[string]string {
	out := map[string]string{}
	for k, vs := range form {
		if n, ok := strings.CutPrefix(k, "metadata["); ok && strings.HasSuffix(n, "]") && len(vs) > 0 {
			out[strings.TrimSuffix(n, "]")] = vs[0]
		}
	}
	return out
}

func (s *Server) route(r *http.Request) (any, *apiError) {
	p := r.URL.Path
	count := func(route string) { s.calls[route]++ }
	switch {
	case r.Method == http.MethodPost && p == "/v1/payment_intents":
		count("POST /v1/payment_intents")
		return s.createIntent(r.PostForm)
	case r.Method == http.MethodGet && p == "/v1/payment_intents/search":
		count("GET /v1/payment_intents/search")
		return s.search(r.Form)
	case r.Method == http.MethodGet && routeIntent.MatchString(p):
		count("GET /v1/payment_intents/{id}")
		pi, err := s.intent(routeIntent.FindStringSubmatch(p)[1])
		if err != nil {
			return nil, err
		}
		if err := allowed(r.Form, "expand", "client_secret"); err != nil {
			return nil, err
		}
		return s.intentJSON(pi, expands(r.Form)["latest_charge"]), nil
	case r.Method == http.MethodPost && routeCapture.MatchString(p):
		count("POST /v1/payment_intents/{id}/capture")
		return s.captureIntent(routeCapture.FindStringSubmatch(p)[1], r.PostForm)
	case r.Method == http.MethodPost && routeCancel.MatchString(p):
		count("POST /v1/payment_intents/{id}/cancel")
		return s.cancelIntent(routeCancel.FindStringSubmatch(p)[1], r.PostForm)
	case r.Method == http.MethodPost && p == "/v1/refunds":
		count("POST /v1/refunds")
		return s.createRefund(r.PostForm)
	case r.Method == http.MethodGet && p == "/v1/refunds":
		count("GET /v1/refunds")
		return s.listRefunds(r.Form)
	case r.Method == http.MethodGet && routeRefund.MatchString(p):
		count("GET /v1/refunds/{id}")
		rf, ok := s.refunds[routeRefund.FindStringSubmatch(p)[1]]
		if !ok {
			return nil, errorf(http.StatusNotFound, "invalid_request_error", "resource_missing", "id", "No such refund: '%s'", routeRefund.FindStringSubmatch(p)[1])
		}
		return s.refundJSON(rf, false), nil
	case r.Method == http.MethodGet && p == "/v1/balance_transactions":
		count("GET /v1/balance_transactions")
		return s.listTxs(r.Form)
	}
	return nil, errorf(http.StatusNotFound, "invalid_request_error", "", "", "Unrecognized request URL (%s: %s). The stand-in serves only what the card channel uses.", r.Method, p)
}

func (s *Server) intent(id string) (*intent, *apiError) {
	pi, ok := s.intents[id]
	if !ok {
		return nil, errorf(http.StatusNotFound, "invalid_request_error", "resource_missing", "intent", "No such payment_intent: '%s'", id)
	}
	return pi, nil
}

func (s *Server) createIntent(f url.Values) (any, *apiError) {
	if err := allowed(f, "amount", "currency", "capture_method", "metadata", "description", "payment_method_types"); err != nil {
		return nil, err
	}
	amount, err := strconv.ParseInt(f.Get("amount"), 10, 64)
	if err != nil || amount < 1 || amount > 99999999 {
		return nil, errorf(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "amount", "Invalid integer: %s", f.Get("amount"))
	}
	cur := f.Get("currency")
	if len(cur) != 3 || strings.ToLower(cur) != cur {
		return nil, errorf(http.StatusBadRequest, "invalid_request_error", "", "currency", "Invalid currency: %s", cur)
	}
	cm := f.Get("capture_method")
	if cm == "" {
		cm = "automatic_async"
	}
	if cm != "manual" && cm != "automatic" && cm != "automatic_async" {
		return nil, errorf(http.StatusBadRequest, "invalid_request_error", "", "capture_method", "Invalid capture_method: %s", cm)
	}
	id := s.id("pi")
	pi := &intent{ID: id, Object: "payment_intent", Amount: amount, CaptureMethod: cm, Currency: cur, Created: s.now().Unix(),
		ClientSecret: id + "_secret_" + strconv.Itoa(s.seq), Metadata: metadata(f), Status: "requires_payment_method",
		PaymentMethodTypes: []string{"card"}}
	if d := f.Get("description"); d != "" {
		pi.Description = &d
	}
	s.intents[id] = pi
	return s.intentJSON(pi, false), nil
}

func (s *Server) intentJSON(pi *intent, expandCharge bool) map[string]any {
	b, _ := json.Marshal(pi)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["latest_charge"] = nil
	if pi.latestCharge != "" {
		m["latest_charge"] = pi.latestCharge
		if expandCharge {
			m["latest_charge"] = s.chargeJSON(s.charges[pi.latestCharge], false)
		}
	}
	return m
}

func (s *Server) chargeJSON(ch *charge, expandIntent bool) map[string]any {
	b, _ := json.Marshal(ch)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	card := map[string]any{"brand": "visa", "last4": "4242", "amount_authorized": ch.Amount}
	if ch.captureBefore > 0 {
		card["capture_before"] = ch.captureBefore
	}
	m["payment_method_details"] = map[string]any{"type": "card", "card": card}
	m["payment_intent"] = ch.intent
	if expandIntent {
		m["payment_intent"] = s.intentJSON(s.intents[ch.intent], false)
	}
	return m
}

func (s *Server) refundJSON(rf *refund, expandIntent bool) map[string]any {
	b, _ := json.Marshal(rf)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["payment_intent"] = rf.intent
	if expandIntent {
		m["payment_intent"] = s.intentJSON(s.intents[rf.intent], false)
	}
	return m
}

func (s *Server) search(f url.Values) (any, *apiError) {
	if err := allowed(f, "query", "limit", "page", "expand"); err != nil {
		return nil, err
	}
	m := searchQuery.FindStringSubmatch(f.Get("query"))
	if m == nil {
		return nil, errorf(http.StatusBadRequest, "invalid_request_error", "", "query", "The stand-in searches only metadata['key']:'value', not %q", f.Get("query"))
	}
	data := []any{}
	for _, id := range s.sortedIntents() {
		if pi := s.intents[id]; pi.Metadata[m[1]] == m[2] {
			data = append(data, s.intentJSON(pi, false))
		}
	}
	return map[string]any{"object": "search_result", "data": data, "has_more": false, "next_page": nil, "url": "/v1/payment_intents/search"}, nil
}

func (s *Server) sortedIntents() []string {
	ids := make([]string, 0, len(s.intents))
	for id := range s.intents {
		ids = append(ids, id)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids))) // newest first, as Stripe lists
	return ids
}

func unexpected(pi *intent, format string, args ...any) *apiError {
	e := errorf(http.StatusBadRequest, "invalid_request_error", "payment_intent_unexpected_state", "", format, args...)
	e.body["payment_intent"] = pi
	return e
}

func (s *Server) captureIntent(id string, f url.Values) (any, *apiError) {
	pi, err := s.intent(id)
	if err != nil {
		return nil, err
	}
	if err := allowed(f, "amount_to_capture", "expand"); err != nil {
		return nil, err
	}
	if pi.Status != "requires_capture" {
		return nil, unexpected(pi, "This PaymentIntent could not be captured because it has a status of %s. Only a PaymentIntent with one of the following statuses may be captured: requires_capture.", pi.Status)
	}
	amount := pi.AmountCapturable
	if a := f.Get("amount_to_capture"); a != "" {
		v, err := strconv.ParseInt(a, 10, 64)
		if err != nil || v < 1 {
			return nil, errorf(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "amount_to_capture", "Invalid integer: %s", a)
		}
		if v > pi.AmountCapturable {
			return nil, errorf(http.StatusBadRequest, "invalid_request_error", "amount_too_large", "amount_to_capture",
				"The amount_to_capture (%d) must be less than or equal to the PaymentIntent's amount_capturable (%d).", v, pi.AmountCapturable)
		}
		amount = v
	}
	pi.Status, pi.AmountReceived, pi.AmountCapturable = "succeeded", amount, 0
	s.capture(pi, s.charges[pi.latestCharge], amount)
	return s.intentJSON(pi, expands(f)["latest_charge"]), nil
}

func (s *Server) cancelIntent(id string, f url.Values) (any, *apiError) {
	pi, err := s.intent(id)
	if err != nil {
		return nil, err
	}
	if err := allowed(f, "cancellation_reason", "expand"); err != nil {
		return nil, err
	}
	switch pi.Status {
	case "requires_payment_method", "requires_capture", "requires_confirmation", "requires_action", "processing":
	default:
		return nil, unexpected(pi, "You cannot cancel this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.", pi.Status)
	}
	reason := "requested_by_customer"
	if r := f.Get("cancellation_reason"); r != "" {
		reason = r
	}
	pi.Status, pi.AmountCapturable, pi.CancellationReason, pi.NextAction = "canceled", 0, &reason, nil
	return s.intentJSON(pi, false), nil
}

func (s *Server) createRefund(f url.Values) (any, *apiError) {
	if err := allowed(f, "payment_intent", "amount", "metadata", "reason"); err != nil {
		return nil, err
	}
	pi, err := s.intent(f.Get("payment_intent"))
	if err != nil {
		return nil, err
	}
	if pi.Status != "succeeded" {
		return nil, errorf(http.StatusBadRequest, "invalid_request_error", "charge_not_refundable", "",
			"This PaymentIntent (%s) does not have a successful charge to refund.", pi.ID)
	}
	ch := s.charges[pi.latestCharge]
	left := ch.AmountCaptured - ch.AmountRefunded
	amount := left
	if a := f.Get("amount"); a != "" {
		v, err := strconv.ParseInt(a, 10, 64)
		if err != nil || v < 1 {
			return nil, errorf(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "amount", "Invalid integer: %s", a)
		}
		amount = v
	}
	if left == 0 {
		return nil, errorf(http.StatusBadRequest, "invalid_request_error", "charge_already_refunded", "", "Charge %s has already been refunded.", ch.ID)
	}
	if amount > left {
		return nil, errorf(http.StatusBadRequest, "invalid_request_error", "amount_too_large", "amount",
			"Refund amount (%d) is greater than unrefunded amount on charge (%d)", amount, left)
	}
	status := "succeeded"
	if s.PendingRefunds {
		status = "pending"
	}
	rf := &refund{ID: s.id("re"), Object: "refund", Amount: amount, Created: s.now().Unix(), Currency: pi.Currency,
		Metadata: metadata(f), Status: status, Charge: ch.ID, intent: pi.ID}
	s.refunds[rf.ID] = rf
	ch.AmountRefunded += amount
	s.txs = append(s.txs, &balanceTx{ID: s.id("txn"), Object: "balance_transaction", Amount: -amount, Net: -amount,
		Created: rf.Created, Currency: rf.Currency, Type: "refund", Status: "pending", source: rf.ID})
	return s.refundJSON(rf, false), nil
}

func (s *Server) listRefunds(f url.Values) (any, *apiError) {
	if err := allowed(f, "payment_intent", "charge", "limit", "starting_after", "ending_before", "expand"); err != nil {
		return nil, err
	}
	var ids []string
	for id, rf := range s.refunds {
		if pi := f.Get("payment_intent"); pi != "" && rf.intent != pi {
			continue
		}
		ids = append(ids, id)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	page, more, err := paginate(ids, f)
	if err != nil {
		return nil, err
	}
	data := []any{}
	for _, id := range page {
		data = append(data, s.refundJSON(s.refunds[id], false))
	}
	return map[string]any{"object": "list", "data": data, "has_more": more, "url": "/v1/refunds"}, nil
}

// paginate applies limit and starting_after to IDs listed newest first.
func paginate(ids []string, f url.Values) ([]string, bool, *apiError) {
	limit := 10
	if l := f.Get("limit"); l != "" {
		v, err := strconv.Atoi(l)
		if err != nil || v < 1 || v > 100 {
			return nil, false, errorf(http.StatusBadRequest, "invalid_request_error", "", "limit", "Invalid limit: must be between 1 and 100")
		}
		limit = v
	}
	if after := f.Get("starting_after"); after != "" {
		i := sort.Search(len(ids), func(i int) bool { return ids[i] <= after }) // ids descend
		if i == len(ids) || ids[i] != after {
			return nil, false, errorf(http.StatusBadRequest, "invalid_request_error", "resource_missing", "starting_after", "No such object: '%s'", after)
		}
		ids = ids[i+1:]
	}
	if len(ids) > limit {
		return ids[:limit], true, nil
	}
	return ids, false, nil
}

func (s *Server) listTxs(f url.Values) (any, *apiError) {
	if err := allowed(f, "created", "limit", "starting_after", "ending_before", "expand", "type", "currency"); err != nil {
		return nil, err
	}
	bound := func(k string) (int64, bool, *apiError) {
		v := f.Get("created[" + k + "]")
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false, errorf(http.StatusBadRequest, "invalid_request_error", "", "created["+k+"]", "Invalid integer: %s", v)
		}
		return n, true, nil
	}
	gte, hasGte, aerr := bound("gte")
	if aerr != nil {
		return nil, aerr
	}
	lt, hasLt, aerr := bound("lt")
	if aerr != nil {
		return nil, aerr
	}
	byID := map[string]*balanceTx{}
	var ids []string
	for _, tx := range s.txs {
		if (hasGte && tx.Created < gte) || (hasLt && tx.Created >= lt) {
			continue
		}
		byID[tx.ID] = tx
		ids = append(ids, tx.ID)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	page, more, err := paginate(ids, f)
	if err != nil {
		return nil, err
	}
	ex := expands(f)
	data := []any{}
	for _, id := range page {
		tx := byID[id]
		b, _ := json.Marshal(tx)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		m["source"] = tx.source
		if ex["data.source"] || ex["data.source.payment_intent"] {
			if ch := s.charges[tx.source]; ch != nil {
				m["source"] = s.chargeJSON(ch, ex["data.source.payment_intent"])
			} else if rf := s.refunds[tx.source]; rf != nil {
				m["source"] = s.refundJSON(rf, ex["data.source.payment_intent"])
			}
		}
		data = append(data, m)
	}
	return map[string]any{"object": "list", "data": data, "has_more": more, "url": "/v1/balance_transactions"}, nil
}
