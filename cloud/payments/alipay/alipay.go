package alipay

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	sdk "github.com/smartwalle/alipay/v3"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// DefaultGatewayURL is Alipay's production OpenAPI gateway.
const DefaultGatewayURL = "https://openapi.alipay.com/gateway.do"

// Name is the channel's stable ID (payments.Channel.Name).
const Name = "alipay"

// currency is the only currency of domestic precreate payments.
const currency vend.Currency = "CNY"

// maxNotification bounds the body of a notification the cloud reads.
const maxNotification = 64 << 10

// maxBill bounds the size of a downloaded bill zip.
const maxBill = 64 << 20

// shanghai is Alipay's time zone (China has no daylight saving time).
var shanghai = time.FixedZone("CST", 8*3600)

// Config configures the Alipay channel. AppID, AppPrivateKeyFile and
// AlipayPublicKeyFile are required.
type Config struct {
	// AppID is the application's ID on the Alipay open platform.
	AppID string
	// AppPrivateKeyFile is a PEM file holding the application's RSA private
	// key (PKCS #1 or PKCS #8), with which every request is signed (RSA2).
	AppPrivateKeyFile string
	// AlipayPublicKeyFile is a PEM file holding Alipay's RSA public key
	// (PKIX) for this application, with which every response and
	// notification is verified. Certificate mode is not supported.
	AlipayPublicKeyFile string
	// GatewayURL is the OpenAPI gateway; DefaultGatewayURL when empty.
	// Tests point it at a loopback peer.
	GatewayURL string
	// NotifyURL is where Alipay POSTs notifications when an Order or
	// RefundRequest names none (normally .../v1/channels/alipay/notify).
	NotifyURL string
	// HTTPClient makes every call to the gateway and the bill download;
	// a client with a 15 s timeout when nil.
	HTTPClient *http.Client
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

type channel struct {
	cfg    Config
	client *sdk.Client
	http   *http.Client
}

// New returns the Alipay channel described by cfg. It reads both key
// files; a missing field, an unreadable file or a key that does not parse
// is an error of kind vend.Invalid naming what was wrong.
func New(cfg Config) (payments.Channel, error) {
	if cfg.AppID == "" {
		return nil, errConfig("app ID is empty")
	}
	if cfg.GatewayURL == "" {
		cfg.GatewayURL = DefaultGatewayURL
	}
	if u, err := url.Parse(cfg.GatewayURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errConfig("gateway URL %q is not an http(s) URL", cfg.GatewayURL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	priv, err := os.ReadFile(cfg.AppPrivateKeyFile)
	if err != nil {
		return nil, errConfig("app private key: %v", err)
	}
	pub, err := os.ReadFile(cfg.AlipayPublicKeyFile)
	if err != nil {
		return nil, errConfig("alipay public key: %v", err)
	}
	// production=false with an explicit gateway: in production mode the
	// SDK downloads, unverified and from the very gateway whose answer it
	// is checking, the certificate of any alipay_cert_sn a response or a
	// notification names, which would let a forged answer bring its own
	// key. In public-key mode nothing is ever downloaded: an unknown
	// alipay_cert_sn is refused.
	client, err := sdk.New(cfg.AppID, string(priv), false,
		sdk.WithSandboxGateway(cfg.GatewayURL),
		sdk.WithHTTPClient(cfg.HTTPClient),
		sdk.WithTimeLocation(shanghai))
	if err != nil {
		return nil, errConfig("app private key %s: %v", cfg.AppPrivateKeyFile, err)
	}
	if err := client.LoadAliPayPublicKey(string(pub)); err != nil {
		return nil, errConfig("alipay public key %s: %v", cfg.AlipayPublicKeyFile, err)
	}
	return &channel{cfg: cfg, client: client, http: cfg.HTTPClient}, nil
}

var (
	errInvalidConfig = vend.E(vend.Invalid, "config.invalid", "alipay: bad configuration")
	errField         = vend.E(vend.Invalid, "request.field", "alipay: bad request field")
)

func errConfig(format string, args ...any) error {
	return vend.Errorf(errInvalidConfig, format, args...)
}

func (c *channel) Name() string { return Name }

func (c *channel) Source() phoneapi.PaymentSource {
	return phoneapi.PaymentSource{ID: Name, Kind: phoneapi.SourceAlipay, Name: "Alipay"}
}

// check turns what the SDK returned into the channel's error vocabulary.
// A transport failure, an answer that is not JSON, a signature that does
// not verify, and an unsigned error answer (which Alipay sends when it
// cannot tell who asked: a wrong app key or app ID) are ErrProvider. A
// signed answer whose code is not 10000 is a business refusal: the SDK
// returns it with a nil error, so every call passes its answer's Error
// here.
func check(api string, err error, e *sdk.Error) error {
	if err != nil {
		var se *sdk.Error
		if errors.As(err, &se) {
			return vend.Errorf(payments.ErrProvider, "alipay: %s: unsigned error answer %s %s: %s", api, se.Code, se.SubCode, se.SubMsg)
		}
		return vend.Errorf(payments.ErrProvider, "alipay: %s: %v", api, err)
	}
	if e == nil {
		return vend.Errorf(payments.ErrProvider, "alipay: %s: empty answer", api)
	}
	if e.Code != sdk.CodeSuccess {
		if technical(*e) {
			return vend.Errorf(payments.ErrProvider, "alipay: %s: %s %s: %s", api, e.Code, e.SubCode, e.SubMsg)
		}
		return refused(api, *e)
	}
	return nil
}

// technical reports a signed non-10000 answer that is Alipay's own
// trouble, not a refusal: service unavailable (20000, isp.*,
// ACQ.SYSTEM_ERROR) or a call limit (40005). They feed the breaker.
func technical(e sdk.Error) bool {
	return e.Code == sdk.CodeUnknowError || e.Code == sdk.CodeCallLimited ||
		strings.HasPrefix(e.SubCode, "isp.") || e.SubCode == "ACQ.SYSTEM_ERROR"
}

func refused(api string, e sdk.Error) error {
	return vend.Errorf(payments.ErrRefused, "alipay: %s: %s %s: %s", api, e.Code, e.SubCode, e.SubMsg)
}

// subCode returns the sub_code of a business refusal, "" otherwise.
func subCode(err error, e *sdk.Error) string {
	if err == nil && e != nil && e.Code != sdk.CodeSuccess {
		return e.SubCode
	}
	return ""
}

func (c *channel) Create(ctx context.Context, o payments.Order) (payments.Action, error) {
	if o.No == "" || len(o.No) > 64 {
		return payments.Action{}, vend.Errorf(errField, "alipay: order number %q: want 1 to 64 characters", o.No)
	}
	if o.Amount.Currency != currency {
		return payments.Action{}, vend.Errorf(payments.ErrAmount, "alipay: currency %q: precreate takes CNY only", o.Amount.Currency)
	}
	if o.Amount.Minor < 1 || o.Amount.Minor > 100_000_000_00 {
		return payments.Action{}, vend.Errorf(payments.ErrAmount, "alipay: amount %d fen: want 0.01 to 100000000.00 yuan", o.Amount.Minor)
	}
	p := sdk.TradePreCreate{}
	p.OutTradeNo = o.No
	p.TotalAmount = payments.FormatMinor(o.Amount.Minor)
	p.Subject = o.Description
	if p.Subject == "" {
		p.Subject = "beaconvend"
	}
	p.NotifyURL = c.notifyURL(o.NotifyURL)
	if !o.ExpiresAt.IsZero() {
		p.TimeExpire = o.ExpiresAt.In(shanghai).Format(time.DateTime)
	}
	rsp, err := c.client.TradePreCreate(ctx, p)
	if err := check("precreate", err, errOf(rsp)); err != nil {
		return payments.Action{}, err
	}
	if rsp.QRCode == "" || rsp.OutTradeNo != o.No {
		return payments.Action{}, vend.Errorf(payments.ErrProvider, "alipay: precreate: answer for order %q has qr_code %q", rsp.OutTradeNo, rsp.QRCode)
	}
	return payments.Action{CodeURL: rsp.QRCode}, nil
}

func (c *channel) notifyURL(u string) string {
	if u != "" {
		return u
	}
	return c.cfg.NotifyURL
}

// Query asks alipay.trade.query. Alipay creates the trade of a precreated
// order only when the buyer scans its QR code: until then the answer is
// ACQ.TRADE_NOT_EXIST, which Query reports as pending (not paid).
func (c *channel) Query(ctx context.Context, orderNo string) (payments.Status, error) {
	rsp, err := c.client.TradeQuery(ctx, sdk.TradeQuery{OutTradeNo: orderNo})
	if subCode(err, errOf(rsp)) == "ACQ.TRADE_NOT_EXIST" {
		return payments.Status{OrderNo: orderNo, State: payments.PayPending}, nil
	}
	if err := check("query", err, errOf(rsp)); err != nil {
		return payments.Status{}, err
	}
	if rsp.OutTradeNo != "" && rsp.OutTradeNo != orderNo {
		return payments.Status{}, vend.Errorf(payments.ErrProvider, "alipay: query %s: answer is for order %q", orderNo, rsp.OutTradeNo)
	}
	return c.status(orderNo, rsp.TradeNo, string(rsp.TradeStatus), rsp.TotalAmount, rsp.SendPayDate, firstNonEmpty(rsp.BuyerUserId, rsp.BuyerOpenId))
}

// status builds a Status from Alipay's fields. TRADE_CLOSED after a
// payment (a trade refunded in full) is still paid: the refunds are
// separate records.
func (c *channel) status(orderNo, tradeNo, tradeStatus, total, paidAt, payer string) (payments.Status, error) {
	s := payments.Status{OrderNo: orderNo, ProviderTxID: tradeNo, Payer: payer}
	switch tradeStatus {
	case "WAIT_BUYER_PAY":
		s.State = payments.PayPending
	case "TRADE_SUCCESS", "TRADE_FINISHED":
		s.State = payments.PayPaid
	case "TRADE_CLOSED":
		s.State = payments.PayClosed
		if paidAt != "" {
			s.State = payments.PayPaid
		}
	default:
		return payments.Status{}, vend.Errorf(payments.ErrProvider, "alipay: order %s: unknown trade_status %q", orderNo, tradeStatus)
	}
	if s.State == payments.PayPaid {
		minor, err := payments.ParseMinor(total)
		if err != nil || minor <= 0 {
			return payments.Status{}, vend.Errorf(payments.ErrProvider, "alipay: order %s: total_amount %q", orderNo, total)
		}
		s.Amount = vend.Amount{Minor: minor, Currency: currency}
		if paidAt != "" {
			t, err := time.ParseInLocation(time.DateTime, paidAt, shanghai)
			if err != nil {
				return payments.Status{}, vend.Errorf(payments.ErrProvider, "alipay: order %s: payment time %q", orderNo, paidAt)
			}
			s.PaidAt = t
		}
	}
	return s, nil
}

// Close abandons an unpaid order with alipay.trade.close. A closed order
// is not an error; a paid one is vend.Conflict (ACQ.TRADE_STATUS_ERROR).
//
// When the buyer has not scanned the code, Alipay has no trade to close
// and answers ACQ.TRADE_NOT_EXIST: there is nothing to close, and the code
// cannot be paid after its time_expire, which Create sets to the order's
// ExpiresAt (Alipay's documented answer for precreate). Close then
// reports success. It does not fall back to alipay.trade.cancel: cancel
// refunds a trade paid in the meantime in full, under no refund number
// the cloud knows, so money would leave behind the cloud's back; a
// payment that arrives after Close is instead reported by its
// notification and by Query, and credited.
func (c *channel) Close(ctx context.Context, orderNo string) error {
	rsp, err := c.client.TradeClose(ctx, sdk.TradeClose{OutTradeNo: orderNo})
	if subCode(err, errOf(rsp)) == "ACQ.TRADE_NOT_EXIST" {
		return nil
	}
	return check("close", err, errOf(rsp))
}

// Refund asks alipay.trade.refund with out_request_no = r.RefundNo, which
// makes it idempotent: the same refund number returns the first result.
// Alipay's answer fund_change Y means the money moved; N (a repeated
// request) is settled by a refund query, which Refund always makes to
// report the refund's own amount and time. A refund Alipay accepted whose
// query fails or does not show it yet is RefundPending.
func (c *channel) Refund(ctx context.Context, r payments.RefundRequest) (payments.RefundStatus, error) {
	if r.Amount.Currency != currency || r.Amount.Minor <= 0 {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrAmount, "alipay: refund %s: amount %v", r.RefundNo, r.Amount)
	}
	if r.RefundNo == "" || len(r.RefundNo) > 64 {
		return payments.RefundStatus{}, vend.Errorf(errField, "alipay: refund number %q: want 1 to 64 characters", r.RefundNo)
	}
	rsp, err := c.client.TradeRefund(ctx, sdk.TradeRefund{
		OutTradeNo:   r.OrderNo,
		RefundAmount: payments.FormatMinor(r.Amount.Minor),
		RefundReason: r.Reason,
		OutRequestNo: r.RefundNo,
	})
	if err := check("refund", err, errOf(rsp)); err != nil {
		return payments.RefundStatus{}, err
	}
	if rsp.OutTradeNo != "" && rsp.OutTradeNo != r.OrderNo {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrProvider, "alipay: refund %s: answer is for order %q", r.RefundNo, rsp.OutTradeNo)
	}
	st, err := c.QueryRefund(ctx, r.OrderNo, r.RefundNo)
	if err != nil || st.State == payments.RefundFailed {
		// Alipay accepted the refund (code 10000) but its refund query
		// does not show it yet, or did not answer: pending, to be
		// queried again; never failed, which would invite a second refund.
		return payments.RefundStatus{OrderNo: r.OrderNo, RefundNo: r.RefundNo, ProviderRefundID: rsp.TradeNo + "/" + r.RefundNo,
			State: payments.RefundPending, Amount: r.Amount}, nil
	}
	return st, nil
}

// QueryRefund asks alipay.trade.fastpay.refund.query. Alipay answers
// refund_status REFUND_SUCCESS for a refund that was made, and no
// refund_status when no refund exists under that number (it was never
// received, or failed): that is RefundFailed, and a Refund with the same
// number may be tried again.
func (c *channel) QueryRefund(ctx context.Context, orderNo, refundNo string) (payments.RefundStatus, error) {
	rsp, err := c.client.TradeFastPayRefundQuery(ctx, sdk.TradeFastPayRefundQuery{
		OutTradeNo: orderNo, OutRequestNo: refundNo, QueryOptions: []string{"gmt_refund_pay"},
	})
	if err := check("refund query", err, errOf(rsp)); err != nil {
		return payments.RefundStatus{}, err
	}
	st := payments.RefundStatus{OrderNo: orderNo, RefundNo: refundNo, ProviderRefundID: rsp.TradeNo + "/" + refundNo}
	if rsp.RefundStatus != "REFUND_SUCCESS" {
		if rsp.RefundStatus != "" {
			return payments.RefundStatus{}, vend.Errorf(payments.ErrProvider, "alipay: refund %s: unknown refund_status %q", refundNo, rsp.RefundStatus)
		}
		st.State = payments.RefundFailed
		st.ProviderRefundID = ""
		return st, nil
	}
	if rsp.OutRequestNo != refundNo || (rsp.OutTradeNo != "" && rsp.OutTradeNo != orderNo) {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrProvider, "alipay: refund %s: answer is for %q/%q", refundNo, rsp.OutTradeNo, rsp.OutRequestNo)
	}
	minor, err := payments.ParseMinor(rsp.RefundAmount)
	if err != nil || minor <= 0 {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrProvider, "alipay: refund %s: refund_amount %q", refundNo, rsp.RefundAmount)
	}
	st.State = payments.RefundSucceeded
	st.Amount = vend.Amount{Minor: minor, Currency: currency}
	if rsp.GMTRefundPay != "" {
		t, err := time.ParseInLocation(time.DateTime, strings.TrimSuffix(rsp.GMTRefundPay, ".000"), shanghai)
		if err != nil {
			return payments.RefundStatus{}, vend.Errorf(payments.ErrProvider, "alipay: refund %s: gmt_refund_pay %q", refundNo, rsp.GMTRefundPay)
		}
		st.DoneAt = t
	}
	return st, nil
}

// ParseNotification reads one asynchronous notification (a form POST),
// verifies its RSA2 signature with Alipay's public key and its app_id,
// and decodes it. The event ID is notify_id, which Alipay keeps when it
// sends the same notification again. A notification that carries
// out_biz_no reports a refund (Alipay sends trade_status TRADE_SUCCESS
// after a partial refund and TRADE_CLOSED after a full one, with the
// total refunded so far); the refund itself is then read with a refund
// query, so the Notification carries that refund's own amount.
func (c *channel) ParseNotification(ctx context.Context, r *http.Request) (payments.Notification, error) {
	if r.Method != http.MethodPost {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "alipay: notification: method %s", r.Method)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxNotification+1))
	if err != nil {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "alipay: notification: read: %v", err)
	}
	if len(body) > maxNotification {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "alipay: notification: body over %d bytes", maxNotification)
	}
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "alipay: notification: form: %v", err)
	}
	for k, v := range values {
		if len(v) != 1 {
			return payments.Notification{}, vend.Errorf(payments.ErrNotification, "alipay: notification: field %q given %d times", k, len(v))
		}
	}
	if values.Get("sign_type") != "RSA2" {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "alipay: notification: sign_type %q, want RSA2", values.Get("sign_type"))
	}
	n, err := c.client.DecodeNotification(ctx, values)
	if err != nil {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "alipay: notification: signature: %v", err)
	}
	if n.AppId != c.cfg.AppID {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "alipay: notification: app_id %q is not ours", n.AppId)
	}
	if n.NotifyId == "" || n.OutTradeNo == "" {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "alipay: notification: notify_id or out_trade_no missing")
	}
	if n.OutBizNo != "" {
		st, err := c.QueryRefund(ctx, n.OutTradeNo, n.OutBizNo)
		if err != nil {
			return payments.Notification{}, err
		}
		return payments.Notification{EventID: n.NotifyId, Kind: payments.NotifyRefund, Refund: st}, nil
	}
	st, err := c.status(n.OutTradeNo, n.TradeNo, string(n.TradeStatus), n.TotalAmount, n.GmtPayment, firstNonEmpty(n.BuyerId, n.BuyerOpenId))
	if err != nil {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "%v", err)
	}
	return payments.Notification{EventID: n.NotifyId, Kind: payments.NotifyPayment, Payment: st}, nil
}

// AckNotification answers "success" (Alipay stops sending) when err is
// nil and "failure" otherwise (Alipay sends the notification again
// later, up to 8 times over 25 hours).
func (c *channel) AckNotification(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err == nil {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "success")
		return
	}
	status := http.StatusInternalServerError
	switch vend.KindOf(err) {
	case vend.Unauthorized, vend.Invalid:
		status = http.StatusBadRequest
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "failure")
}

func errOf[T any](rsp *T) *sdk.Error {
	if rsp == nil {
		return nil
	}
	switch v := any(rsp).(type) {
	case *sdk.TradePreCreateRsp:
		return &v.Error
	case *sdk.TradeQueryRsp:
		return &v.Error
	case *sdk.TradeCloseRsp:
		return &v.Error
	case *sdk.TradeRefundRsp:
		return &v.Error
	case *sdk.TradeFastPayRefundQueryRsp:
		return &v.Error
	case *sdk.BillDownloadURLQueryRsp:
		return &v.Error
	}
	return nil // an answer type check does not know reads as empty
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
