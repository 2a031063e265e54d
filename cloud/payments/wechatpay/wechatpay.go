package wechatpay

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/validators"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/verifiers"
	"github.com/wechatpay-apiv3/wechatpay-go/core/consts"
	"github.com/wechatpay-apiv3/wechatpay-go/core/notify"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"
	sdkpayments "github.com/wechatpay-apiv3/wechatpay-go/services/payments"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
	"github.com/wechatpay-apiv3/wechatpay-go/services/refunddomestic"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// Name is the channel's stable ID (payments.Channel.Name).
const Name = "wechatpay"

// DefaultBaseURL is WeChat Pay's API host, the SDK's own.
const DefaultBaseURL = consts.WechatPayAPIServer

// currency is the only currency a domestic merchant is paid in.
const currency vend.Currency = "CNY"

// maxNotification bounds the body of a notification read into memory.
const maxNotification = 64 << 10

// maxBill bounds a downloaded trade bill.
const maxBill = 256 << 20

// Config is what New needs to talk to WeChat Pay as one merchant.
type Config struct {
	MchID          string // merchant ID (mchid), e.g. "1900000109"
	AppID          string // the AppID orders are created under (appid)
	MerchantSerial string // serial number of the merchant's API certificate (serial_no of the Authorization header)
	// MerchantKeyFile is the merchant's API private key, PEM (PKCS#8 or
	// PKCS#1), the apiclient_key.pem WeChat Pay's tool produces.
	MerchantKeyFile string
	// APIv3KeyFile holds the APIv3 key: 32 bytes (surrounding whitespace
	// ignored). It decrypts notifications.
	APIv3KeyFile string
	// PlatformKeyFile is WeChat Pay's platform public key (PEM "PUBLIC
	// KEY") or a platform certificate (PEM "CERTIFICATE"); responses and
	// notifications must be signed by its private key.
	PlatformKeyFile string
	// PlatformSerial is the public key ID (PUB_KEY_ID_…) or the platform
	// certificate's serial number that responses name in Wechatpay-Serial.
	// Empty with a certificate: the certificate's own serial.
	PlatformSerial string
	// BaseURL is the API server, scheme and host only. Empty:
	// DefaultBaseURL. Tests point it at a loopback peer.
	BaseURL string
	// NotifyURL is where WeChat Pay POSTs notifications when an order or a
	// refund request names none (HTTPS, no query string).
	NotifyURL string
	// HTTPClient sends the requests; nil: a client with a 30 s timeout.
	// It is copied, never modified.
	HTTPClient *http.Client
}

// Channel is the WeChat Pay channel. It implements payments.Channel.
type Channel struct {
	cfg       Config
	client    *core.Client // signs requests, verifies responses
	raw       *core.Client // signs requests, verifies nothing (the bill file)
	native    native.NativeApiService
	refunds   refunddomestic.RefundsApiService
	notify    *notify.Handler
	apiHosts  map[string]bool
	validator *validators.WechatPayResponseValidator
}

var _ payments.Channel = (*Channel)(nil)

// New reads the key files of cfg and returns the channel. A missing field,
// an unreadable file or a key of the wrong kind is an error naming it.
func New(cfg Config) (payments.Channel, error) {
	return newChannel(cfg)
}

func newChannel(cfg Config) (*Channel, error) {
	for _, f := range []struct{ name, v string }{
		{"MchID", cfg.MchID}, {"AppID", cfg.AppID}, {"MerchantSerial", cfg.MerchantSerial},
		{"MerchantKeyFile", cfg.MerchantKeyFile}, {"APIv3KeyFile", cfg.APIv3KeyFile},
		{"PlatformKeyFile", cfg.PlatformKeyFile},
	} {
		if strings.TrimSpace(f.v) == "" {
			return nil, fmt.Errorf("wechatpay: config: %s is empty", f.name)
		}
	}
	key, err := utils.LoadPrivateKeyWithPath(cfg.MerchantKeyFile)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: config: MerchantKeyFile %s: %v", cfg.MerchantKeyFile, err)
	}
	v3, err := os.ReadFile(cfg.APIv3KeyFile)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: config: APIv3KeyFile: %v", err)
	}
	apiV3Key := strings.TrimSpace(string(v3))
	if len(apiV3Key) != 32 {
		return nil, fmt.Errorf("wechatpay: config: APIv3KeyFile %s: the key has %d bytes, want 32", cfg.APIv3KeyFile, len(apiV3Key))
	}
	pub, serial, err := loadPlatformKey(cfg.PlatformKeyFile)
	if err != nil {
		return nil, err
	}
	if cfg.PlatformSerial != "" {
		serial = cfg.PlatformSerial
	}
	if serial == "" {
		return nil, errors.New("wechatpay: config: PlatformSerial is empty (needed with a platform public key)")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || strings.Trim(base.Path, "/") != "" || base.RawQuery != "" {
		return nil, fmt.Errorf("wechatpay: config: BaseURL %q: want scheme://host[:port] only", cfg.BaseURL)
	}
	hc := &http.Client{Timeout: consts.DefaultTimeout}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		hc = &c
	}
	api, _ := url.Parse(consts.WechatPayAPIServer)
	if base.Host != api.Host || base.Scheme != api.Scheme {
		next := hc.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		hc.Transport = &rehost{from: api.Host, scheme: base.Scheme, host: base.Host, next: next}
	}
	verifier := verifiers.NewSHA256WithRSAPubkeyVerifier(serial, *pub)
	ctx := context.Background()
	client, err := core.NewClient(ctx,
		option.WithMerchantCredential(cfg.MchID, cfg.MerchantSerial, key),
		option.WithVerifier(verifier),
		option.WithHTTPClient(hc),
	)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: config: %v", err)
	}
	nh, err := notify.NewRSANotifyHandler(apiV3Key, verifier)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: config: APIv3 key: %v", err)
	}
	c := &Channel{
		cfg:       cfg,
		client:    client,
		raw:       core.NewClientWithValidator(client, &validators.NullValidator{}),
		native:    native.NativeApiService{Client: client},
		refunds:   refunddomestic.RefundsApiService{Client: client},
		notify:    nh,
		apiHosts:  map[string]bool{api.Host: true, base.Host: true},
		validator: validators.NewWechatPayResponseValidator(verifier),
	}
	return c, nil
}

// loadPlatformKey reads a PEM public key or certificate.
func loadPlatformKey(path string) (*rsa.PublicKey, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("wechatpay: config: PlatformKeyFile: %v", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, "", fmt.Errorf("wechatpay: config: PlatformKeyFile %s: no PEM block", path)
	}
	switch blk.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, "", fmt.Errorf("wechatpay: config: PlatformKeyFile %s: %v", path, err)
		}
		pub, ok := cert.PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, "", fmt.Errorf("wechatpay: config: PlatformKeyFile %s: not an RSA certificate", path)
		}
		return pub, utils.GetCertificateSerialNumber(*cert), nil
	case "PUBLIC KEY", "RSA PUBLIC KEY":
		var k any
		if blk.Type == "PUBLIC KEY" {
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		} else {
			k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		}
		if err != nil {
			return nil, "", fmt.Errorf("wechatpay: config: PlatformKeyFile %s: %v", path, err)
		}
		pub, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, "", fmt.Errorf("wechatpay: config: PlatformKeyFile %s: not an RSA public key", path)
		}
		return pub, "", nil
	}
	return nil, "", fmt.Errorf("wechatpay: config: PlatformKeyFile %s: PEM block %q, want PUBLIC KEY or CERTIFICATE", path, blk.Type)
}

// rehost sends requests for the SDK's fixed API host to another server.
type rehost struct {
	from, scheme, host string
	next               http.RoundTripper
}

func (t *rehost) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.from {
		return t.next.RoundTrip(r)
	}
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = t.scheme, t.host, ""
	return t.next.RoundTrip(r2)
}

// Name returns "wechatpay".
func (c *Channel) Name() string { return Name }

// Source describes the channel to the phone.
func (c *Channel) Source() phoneapi.PaymentSource {
	return phoneapi.PaymentSource{ID: Name, Kind: phoneapi.SourceWeChatPay, Name: "WeChat Pay"}
}

// Create opens a Native order and returns its code_url. A retry with the
// same order number and amount gets the same code_url from WeChat Pay.
func (c *Channel) Create(ctx context.Context, o payments.Order) (payments.Action, error) {
	if err := checkNo("order number", o.No); err != nil {
		return payments.Action{}, err
	}
	if err := checkAmount(o.Amount); err != nil {
		return payments.Action{}, err
	}
	notifyURL := o.NotifyURL
	if notifyURL == "" {
		notifyURL = c.cfg.NotifyURL
	}
	if notifyURL == "" {
		return payments.Action{}, vend.Errorf(errInvalid, "create %s: no notify URL (Order.NotifyURL, Config.NotifyURL)", o.No)
	}
	desc := o.Description
	if desc == "" {
		desc = "beaconvend"
	}
	req := native.PrepayRequest{
		Appid:       core.String(c.cfg.AppID),
		Mchid:       core.String(c.cfg.MchID),
		Description: core.String(desc),
		OutTradeNo:  core.String(o.No),
		NotifyUrl:   core.String(notifyURL),
		Amount:      &native.Amount{Total: core.Int64(o.Amount.Minor), Currency: core.String(string(currency))},
	}
	if !o.ExpiresAt.IsZero() {
		t := o.ExpiresAt.Truncate(time.Second)
		req.TimeExpire = &t
	}
	if o.ClientIP != "" {
		req.SceneInfo = &native.SceneInfo{PayerClientIp: core.String(o.ClientIP)}
	}
	resp, _, err := c.native.Prepay(ctx, req)
	if err != nil {
		return payments.Action{}, c.mapErr(ctx, "create "+o.No, err)
	}
	if resp.CodeUrl == nil || *resp.CodeUrl == "" {
		return payments.Action{}, vend.Errorf(payments.ErrProvider, "wechatpay: create %s: no code_url in the answer", o.No)
	}
	return payments.Action{CodeURL: *resp.CodeUrl}, nil
}

// Query returns WeChat Pay's state of the order.
func (c *Channel) Query(ctx context.Context, orderNo string) (payments.Status, error) {
	if err := checkNo("order number", orderNo); err != nil {
		return payments.Status{}, err
	}
	tx, _, err := c.native.QueryOrderByOutTradeNo(ctx, native.QueryOrderByOutTradeNoRequest{
		OutTradeNo: core.String(orderNo), Mchid: core.String(c.cfg.MchID),
	})
	if err != nil {
		return payments.Status{}, c.mapErr(ctx, "query "+orderNo, err)
	}
	st, err := c.status(tx)
	if err != nil {
		return payments.Status{}, vend.Errorf(payments.ErrProvider, "wechatpay: query %s: %v", orderNo, err)
	}
	if st.OrderNo != orderNo {
		return payments.Status{}, vend.Errorf(payments.ErrProvider, "wechatpay: query %s: the answer is about order %q", orderNo, st.OrderNo)
	}
	return st, nil
}

// status converts a transaction (a query answer or a notification).
func (c *Channel) status(tx *sdkpayments.Transaction) (payments.Status, error) {
	if tx == nil {
		return payments.Status{}, errors.New("empty transaction")
	}
	if m := str(tx.Mchid); m != "" && m != c.cfg.MchID {
		return payments.Status{}, fmt.Errorf("transaction of merchant %q, not %q", m, c.cfg.MchID)
	}
	st := payments.Status{OrderNo: str(tx.OutTradeNo), ProviderTxID: str(tx.TransactionId)}
	if tx.Payer != nil {
		st.Payer = str(tx.Payer.Openid)
	}
	switch s := str(tx.TradeState); s {
	case "SUCCESS", "REFUND":
		st.State = payments.PayPaid
	case "NOTPAY", "USERPAYING":
		st.State = payments.PayPending
	case "CLOSED", "REVOKED":
		st.State = payments.PayClosed
	case "PAYERROR":
		st.State = payments.PayFailed
	default:
		return payments.Status{}, fmt.Errorf("unknown trade_state %q", s)
	}
	if st.State != payments.PayPaid {
		return st, nil
	}
	if tx.Amount == nil || tx.Amount.Total == nil || *tx.Amount.Total <= 0 {
		return payments.Status{}, errors.New("paid transaction without amount.total")
	}
	cur := vend.Currency(str(tx.Amount.Currency))
	if cur == "" {
		cur = currency
	}
	st.Amount = vend.Amount{Minor: *tx.Amount.Total, Currency: cur}
	if st.ProviderTxID == "" {
		return payments.Status{}, errors.New("paid transaction without transaction_id")
	}
	t, err := time.Parse(time.RFC3339, str(tx.SuccessTime))
	if err != nil {
		return payments.Status{}, fmt.Errorf("success_time %q: want RFC 3339", str(tx.SuccessTime))
	}
	st.PaidAt = t
	return st, nil
}

// Close closes an unpaid order. WeChat Pay answers 204 for an order
// already closed; a paid order is refused (ORDERPAID).
func (c *Channel) Close(ctx context.Context, orderNo string) error {
	if err := checkNo("order number", orderNo); err != nil {
		return err
	}
	_, err := c.native.CloseOrder(ctx, native.CloseOrderRequest{OutTradeNo: core.String(orderNo), Mchid: core.String(c.cfg.MchID)})
	if err != nil {
		return c.mapErr(ctx, "close "+orderNo, err)
	}
	return nil
}

// Refund asks for a domestic refund of r.Amount of the order. WeChat Pay
// refunds once per refund number: a retry returns the same refund.
func (c *Channel) Refund(ctx context.Context, r payments.RefundRequest) (payments.RefundStatus, error) {
	if err := checkNo("order number", r.OrderNo); err != nil {
		return payments.RefundStatus{}, err
	}
	if err := checkNo("refund number", r.RefundNo); err != nil {
		return payments.RefundStatus{}, err
	}
	if err := checkAmount(r.Amount); err != nil {
		return payments.RefundStatus{}, err
	}
	if err := checkAmount(r.Total); err != nil {
		return payments.RefundStatus{}, err
	}
	if r.Amount.Minor > r.Total.Minor {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrAmount, "wechatpay: refund %s: %s is above the order's %s", r.RefundNo, r.Amount, r.Total)
	}
	req := refunddomestic.CreateRequest{
		OutTradeNo:  core.String(r.OrderNo),
		OutRefundNo: core.String(r.RefundNo),
		Amount: &refunddomestic.AmountReq{
			Refund: core.Int64(r.Amount.Minor), Total: core.Int64(r.Total.Minor), Currency: core.String(string(currency)),
		},
	}
	if r.Reason != "" {
		req.Reason = core.String(r.Reason)
	}
	notifyURL := r.NotifyURL
	if notifyURL == "" {
		notifyURL = c.cfg.NotifyURL
	}
	if notifyURL != "" {
		req.NotifyUrl = core.String(notifyURL)
	}
	resp, _, err := c.refunds.Create(ctx, req)
	if err != nil {
		return payments.RefundStatus{}, c.mapErr(ctx, "refund "+r.RefundNo, err)
	}
	return c.refundStatus("refund "+r.RefundNo, r.OrderNo, r.RefundNo, resp)
}

// QueryRefund returns WeChat Pay's state of a refund.
func (c *Channel) QueryRefund(ctx context.Context, orderNo, refundNo string) (payments.RefundStatus, error) {
	if err := checkNo("refund number", refundNo); err != nil {
		return payments.RefundStatus{}, err
	}
	resp, _, err := c.refunds.QueryByOutRefundNo(ctx, refunddomestic.QueryByOutRefundNoRequest{OutRefundNo: core.String(refundNo)})
	if err != nil {
		return payments.RefundStatus{}, c.mapErr(ctx, "query refund "+refundNo, err)
	}
	return c.refundStatus("query refund "+refundNo, orderNo, refundNo, resp)
}

func (c *Channel) refundStatus(op, orderNo, refundNo string, r *refunddomestic.Refund) (payments.RefundStatus, error) {
	bad := func(format string, args ...any) (payments.RefundStatus, error) {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrProvider, "wechatpay: %s: %s", op, fmt.Sprintf(format, args...))
	}
	if r == nil {
		return bad("empty answer")
	}
	rs := payments.RefundStatus{OrderNo: str(r.OutTradeNo), RefundNo: str(r.OutRefundNo), ProviderRefundID: str(r.RefundId)}
	if rs.RefundNo != refundNo || (orderNo != "" && rs.OrderNo != orderNo) {
		return bad("the answer is about refund %q of order %q", rs.RefundNo, rs.OrderNo)
	}
	if r.Status == nil {
		return bad("no status")
	}
	switch *r.Status {
	case refunddomestic.STATUS_SUCCESS:
		rs.State = payments.RefundSucceeded
	case refunddomestic.STATUS_PROCESSING:
		rs.State = payments.RefundPending
	case refunddomestic.STATUS_CLOSED, refunddomestic.STATUS_ABNORMAL:
		rs.State = payments.RefundFailed
	default:
		return bad("unknown status %q", *r.Status)
	}
	if r.Amount == nil || r.Amount.Refund == nil || *r.Amount.Refund <= 0 {
		return bad("no amount.refund")
	}
	cur := vend.Currency(str(r.Amount.Currency))
	if cur == "" {
		cur = currency
	}
	rs.Amount = vend.Amount{Minor: *r.Amount.Refund, Currency: cur}
	if r.SuccessTime != nil {
		rs.DoneAt = *r.SuccessTime
	}
	return rs, nil
}

// refundResource is the decrypted resource of a REFUND.* notification.
type refundResource struct {
	MchID         string `json:"mchid"`
	OutTradeNo    string `json:"out_trade_no"`
	TransactionID string `json:"transaction_id"`
	OutRefundNo   string `json:"out_refund_no"`
	RefundID      string `json:"refund_id"`
	RefundStatus  string `json:"refund_status"`
	SuccessTime   string `json:"success_time"`
	Amount        struct {
		Total  *int64 `json:"total"`
		Refund *int64 `json:"refund"`
	} `json:"amount"`
}

// ParseNotification verifies and decrypts a payment or refund
// notification. Anything that does not verify (signature, platform serial,
// timestamp more than five minutes off), decrypt or decode is
// payments.ErrNotification and changes nothing.
func (c *Channel) ParseNotification(ctx context.Context, r *http.Request) (payments.Notification, error) {
	fail := func(format string, args ...any) (payments.Notification, error) {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "wechatpay: %s", fmt.Sprintf(format, args...))
	}
	if r.Method != http.MethodPost {
		return fail("method %s, want POST", r.Method)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxNotification+1))
	if err != nil {
		return fail("read body: %v", err)
	}
	if len(body) > maxNotification {
		return fail("body above %d bytes", maxNotification)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var content json.RawMessage
	req, err := c.notify.ParseNotifyRequest(ctx, r, &content)
	if err != nil {
		msg := err.Error()
		if i := strings.Index(msg, ", request: "); i >= 0 {
			msg = msg[:i] // the SDK appends a dump of the request
		}
		return fail("%s", msg)
	}
	if req.ID == "" {
		return fail("notification without id")
	}
	n := payments.Notification{EventID: req.ID}
	switch {
	case req.EventType == "TRANSACTION.SUCCESS":
		var tx sdkpayments.Transaction
		if err := json.Unmarshal(content, &tx); err != nil {
			return fail("notification %s: transaction: %v", req.ID, err)
		}
		st, err := c.status(&tx)
		if err != nil {
			return fail("notification %s: %v", req.ID, err)
		}
		if st.OrderNo == "" {
			return fail("notification %s: no out_trade_no", req.ID)
		}
		n.Kind, n.Payment = payments.NotifyPayment, st
	case strings.HasPrefix(req.EventType, "REFUND."):
		var rr refundResource
		if err := json.Unmarshal(content, &rr); err != nil {
			return fail("notification %s: refund: %v", req.ID, err)
		}
		if rr.MchID != "" && rr.MchID != c.cfg.MchID {
			return fail("notification %s: refund of merchant %q", req.ID, rr.MchID)
		}
		rs := payments.RefundStatus{OrderNo: rr.OutTradeNo, RefundNo: rr.OutRefundNo, ProviderRefundID: rr.RefundID}
		switch rr.RefundStatus {
		case "SUCCESS":
			rs.State = payments.RefundSucceeded
		case "CLOSED", "ABNORMAL":
			rs.State = payments.RefundFailed
		default:
			return fail("notification %s: refund_status %q", req.ID, rr.RefundStatus)
		}
		if rr.OutRefundNo == "" || rr.OutTradeNo == "" || rr.Amount.Refund == nil || *rr.Amount.Refund <= 0 {
			return fail("notification %s: refund without out_refund_no, out_trade_no or amount.refund", req.ID)
		}
		rs.Amount = vend.Amount{Minor: *rr.Amount.Refund, Currency: currency}
		if rr.SuccessTime != "" {
			t, err := time.Parse(time.RFC3339, rr.SuccessTime)
			if err != nil {
				return fail("notification %s: success_time %q", req.ID, rr.SuccessTime)
			}
			rs.DoneAt = t
		}
		n.Kind, n.Refund = payments.NotifyRefund, rs
	default:
		return fail("notification %s: event_type %q", req.ID, req.EventType)
	}
	return n, nil
}

// AckNotification answers 204 when err is nil; otherwise 500 with
// {"code":"FAIL","message":…}, so WeChat Pay sends the notification again.
func (c *Channel) AckNotification(w http.ResponseWriter, err error) {
	if err == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	b, _ := json.Marshal(map[string]string{"code": "FAIL", "message": vend.CodeOf(err)})
	_, _ = w.Write(b)
}

// billAnswer is the answer of GET /v3/bill/tradebill.
type billAnswer struct {
	HashType    string `json:"hash_type"`
	HashValue   string `json:"hash_value"`
	DownloadURL string `json:"download_url"`
}

// Statement downloads the trade bill (bill_type ALL) of day, checks its
// SHA1, parses it and checks that every row is of that day (Asia/Shanghai). A day without a bill (NO_STATEMENT_EXIST: no
// transaction that day) is an empty statement; a bill not yet generated
// (STATEMENT_CREATING) is payments.ErrProvider.
func (c *Channel) Statement(ctx context.Context, day payments.Day) (payments.Statement, error) {
	empty := payments.Statement{Channel: Name, Day: day, Currency: currency}
	q := url.Values{"bill_date": {day.String()}, "bill_type": {"ALL"}}
	res, err := c.client.Get(ctx, consts.WechatPayAPIServer+"/v3/bill/tradebill?"+q.Encode())
	if err != nil {
		mapped := c.mapErr(ctx, "trade bill "+day.String(), err)
		var ae *core.APIError
		if errors.Is(mapped, payments.ErrRefused) && errors.As(err, &ae) && ae.Code == "NO_STATEMENT_EXIST" {
			return empty, nil
		}
		return payments.Statement{}, mapped
	}
	var ans billAnswer
	if err := core.UnMarshalResponse(res.Response, &ans); err != nil {
		return payments.Statement{}, vend.Errorf(payments.ErrProvider, "wechatpay: trade bill %s: %v", day, err)
	}
	if !strings.EqualFold(ans.HashType, "SHA1") || len(ans.HashValue) != 40 {
		return payments.Statement{}, vend.Errorf(payments.ErrProvider, "wechatpay: trade bill %s: hash %s %q, want SHA1", day, ans.HashType, ans.HashValue)
	}
	u, err := url.Parse(ans.DownloadURL)
	if err != nil || !c.apiHosts[u.Host] {
		return payments.Statement{}, vend.Errorf(payments.ErrProvider, "wechatpay: trade bill %s: download_url %q is not on the API host", day, ans.DownloadURL)
	}
	dl, err := c.raw.Get(ctx, ans.DownloadURL)
	if err != nil {
		return payments.Statement{}, c.mapErr(ctx, "trade bill "+day.String()+" download", err)
	}
	defer dl.Response.Body.Close()
	data, err := io.ReadAll(io.LimitReader(dl.Response.Body, maxBill+1))
	if err != nil {
		return payments.Statement{}, vend.Errorf(payments.ErrProvider, "wechatpay: trade bill %s: download: %v", day, err)
	}
	if len(data) > maxBill {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "wechatpay: trade bill %s: above %d bytes", day, maxBill)
	}
	sum := sha1.Sum(data)
	if !strings.EqualFold(hex.EncodeToString(sum[:]), ans.HashValue) {
		return payments.Statement{}, vend.Errorf(payments.ErrStatement, "wechatpay: trade bill %s: SHA1 %x, the answer said %s", day, sum, ans.HashValue)
	}
	st, err := ParseTradeBill(data, c.cfg.MchID)
	if err != nil {
		return payments.Statement{}, fmt.Errorf("%w (trade bill %s)", err, day)
	}
	for i, r := range st.Rows {
		if y, m, d := r.At.In(shanghai).Date(); y != day.Year || m != day.Month || d != day.Day {
			return payments.Statement{}, vend.Errorf(payments.ErrStatement, "wechatpay: trade bill %s: row %d (order %s) is of %s", day, i+1, r.OrderNo, r.At.In(shanghai).Format(time.DateOnly))
		}
	}
	st.Day = day
	return st, nil
}

// mapErr turns an SDK error into the channel's vocabulary. The SDK checks
// the signature of 2xx answers only; a refusal that carries a signature
// must verify too, or it is a forgery (ErrProvider), never a refusal.
func (c *Channel) mapErr(ctx context.Context, op string, err error) error {
	var ae *core.APIError
	if errors.As(err, &ae) {
		if ae.StatusCode < 500 && ae.Header.Get(consts.WechatPaySignature) != "" {
			res := &http.Response{Header: ae.Header, Body: io.NopCloser(strings.NewReader(ae.Body))}
			if verr := c.validator.Validate(ctx, res); verr != nil {
				return vend.Errorf(payments.ErrProvider, "wechatpay: %s: http %d %s answer does not verify: %v", op, ae.StatusCode, ae.Code, verr)
			}
		}
		switch {
		case ae.StatusCode >= 500, ae.StatusCode == http.StatusUnauthorized, ae.StatusCode == http.StatusTooManyRequests,
			ae.Code == "SYSTEM_ERROR", ae.Code == "FREQUENCY_LIMITED", ae.Code == "BANK_ERROR", ae.Code == "STATEMENT_CREATING":
			return vend.Errorf(payments.ErrProvider, "wechatpay: %s: http %d %s %s", op, ae.StatusCode, ae.Code, ae.Message)
		case ae.Code == "":
			return vend.Errorf(payments.ErrProvider, "wechatpay: %s: http %d without a code", op, ae.StatusCode)
		}
		return vend.Errorf(payments.ErrRefused, "wechatpay: %s: %s: %s", op, ae.Code, ae.Message)
	}
	return vend.Errorf(payments.ErrProvider, "wechatpay: %s: %v", op, err)
}

// checkNo checks an out_trade_no / out_refund_no: 6 to 32 characters of
// [0-9A-Za-z_-|*@] per WeChat Pay.
func checkNo(what, no string) error {
	if len(no) < 6 || len(no) > 32 {
		return vend.Errorf(errInvalid, "%s %q: want 6 to 32 characters", what, no)
	}
	for _, r := range no {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("_-|*@", r)) {
			return vend.Errorf(errInvalid, "%s %q: character %q not allowed", what, no, r)
		}
	}
	return nil
}

// errInvalid is a request the channel refuses before calling WeChat Pay.
var errInvalid = vend.E(vend.Invalid, "request.field", "wechatpay: bad request")

func checkAmount(a vend.Amount) error {
	if a.Currency != currency {
		return vend.Errorf(payments.ErrAmount, "wechatpay: currency %q, want CNY", a.Currency)
	}
	if a.Minor <= 0 {
		return vend.Errorf(payments.ErrAmount, "wechatpay: amount %d fen, want > 0", a.Minor)
	}
	return nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
