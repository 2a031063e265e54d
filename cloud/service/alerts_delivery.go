package service

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"beaconvend/cloud/store"
)

// SMTP TLS modes (SMTPOptions.TLS).
const (
	SMTPStartTLS = "starttls" // plain connection upgraded with STARTTLS, which must succeed (port 587)
	SMTPTLS      = "tls"      // TLS from the first byte (port 465)
	SMTPNone     = "none"     // no TLS at all: only for a relay on loopback or a trusted network
)

// SMTPOptions say how alert e-mails are sent. Host "" sends none: e-mail
// deliveries then fail (recorded) until one is configured.
type SMTPOptions struct {
	Host string
	Port int    // 587 when 0 (465 with TLS "tls")
	From string // the From address, required with Host
	// Username and Password authenticate (PLAIN, only over TLS or to
	// loopback); none when Username is "".
	Username, Password string
	TLS                string      // starttls (when ""), tls or none
	TLSConfig          *tls.Config // roots and server name; the system's roots and Host when nil
	Timeout            time.Duration
}

// AlertOptions configure the alert engine and its deliveries.
type AlertOptions struct {
	SMTP SMTPOptions
	// WebhookKey derives each operator's webhook signing secret
	// (Service.WebhookSecret); derived from the cloud key when empty.
	WebhookKey []byte
	// HTTPClient posts webhooks; one with a 10 s timeout that follows no
	// redirects when nil.
	HTTPClient *http.Client
	// ConsoleURL is the console's base URL for links in messages
	// (https://cloud.example.com/console); no links when "".
	ConsoleURL string
	Interval   time.Duration // between evaluations and delivery runs; 5 s
	Lease      time.Duration // how long a claimed delivery is held before another instance may retry it; 1 min
	// MaxAttempts bounds the attempts of one delivery; 8. Attempt n+1
	// waits Backoff×2^(n-1), at most 1 h.
	MaxAttempts int
	Backoff     time.Duration // 30 s
}

func (o *AlertOptions) defaults() {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.Backoff <= 0 {
		o.Backoff = 30 * time.Second
	}
	if o.SMTP.TLS == "" {
		o.SMTP.TLS = SMTPStartTLS
	}
	if o.SMTP.Port == 0 {
		o.SMTP.Port = 587
		if o.SMTP.TLS == SMTPTLS {
			o.SMTP.Port = 465
		}
	}
	if o.SMTP.Timeout <= 0 {
		o.SMTP.Timeout = 20 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
}

// WebhookSignatureHeader carries an alert webhook's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the
// operator's webhook secret (the whole whsec_… string as the key)>".
// WebhookDeliveryHeader carries the delivery's id, the same on every
// retry, for the receiver to drop duplicates.
const (
	WebhookSignatureHeader = "Beaconvend-Signature"
	WebhookDeliveryHeader  = "Beaconvend-Delivery"
)

// AlertWebhook is the JSON body of an alert webhook.
type AlertWebhook struct {
	ID     string       `json:"id"`   // the delivery id
	Type   string       `json:"type"` // "alert"
	SentAt time.Time    `json:"sent_at"`
	Alert  WebhookAlert `json:"alert"`
}

// WebhookAlert is the alert in an AlertWebhook.
type WebhookAlert struct {
	ID       string    `json:"id"`
	Operator string    `json:"operator"`
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	State    string    `json:"state"`
	Device   string    `json:"device,omitempty"`
	Machine  string    `json:"machine,omitempty"`
	Slot     string    `json:"slot,omitempty"`
	Ref      string    `json:"ref,omitempty"`
	Code     string    `json:"code,omitempty"`
	Summary  string    `json:"summary"`
	Detail   string    `json:"detail,omitempty"`
	Created  time.Time `json:"created_at"`
	URL      string    `json:"url,omitempty"`
}

// SignWebhook returns the signature header value of body sent at t
// under secret.
func SignWebhook(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// DeliverAlerts sends the deliveries that are due, once: each is claimed
// in the store (a lease, so instances never send one at the same time),
// held unsent until the end of the operator's quiet period, sent, and
// its result recorded — sent, retried after a backoff, or failed after
// MaxAttempts. A process that dies mid-way leaves the claim to expire and
// another run sends it: at least once, with the delivery id for the
// receiver to drop a repeat. It returns how many were sent.
func (s *Service) DeliverAlerts(ctx context.Context) (int, error) {
	o := s.opts.Alerts
	ds, err := s.st.ClaimDeliveries(ctx, o.Lease, 50)
	if err != nil {
		return 0, err
	}
	sets := map[string]store.AlertSettings{}
	sent := 0
	var first error
	for _, d := range ds {
		set, ok := sets[d.Alert.Operator]
		if !ok {
			if set, err = s.st.AlertSettings(ctx, d.Alert.Operator); err != nil {
				return sent, err
			}
			sets[d.Alert.Operator] = set
		}
		var res store.DeliveryResult
		if until := set.QuietUntil(s.now()); !until.IsZero() {
			res.Hold = until
		} else {
			var err error
			switch d.Channel {
			case "email":
				err = s.sendAlertMail(ctx, d)
			case "webhook":
				err = s.postAlertWebhook(ctx, d)
			default:
				err = fmt.Errorf("service: alerts: unknown channel %q", d.Channel)
			}
			if err == nil {
				res.Sent = true
				sent++
			} else {
				res.Err = err.Error()
				s.log.Warn("service: alert delivery failed", "delivery", d.ID, "channel", d.Channel, "attempt", d.Attempts, "err", err)
				if d.Attempts < o.MaxAttempts {
					wait := o.Backoff << min(d.Attempts-1, 20)
					res.Retry = s.now().Add(min(wait, time.Hour))
				}
			}
		}
		if _, err := s.st.FinishDelivery(ctx, d.ID, d.Attempts, res); err != nil && first == nil {
			first = err
		}
	}
	return sent, first
}

func (s *Service) alertURL(a store.Alert) string {
	if u := strings.TrimSuffix(s.opts.Alerts.ConsoleURL, "/"); u != "" {
		return u + "/alerts/" + a.ID
	}
	return ""
}

func (s *Service) postAlertWebhook(ctx context.Context, d store.Delivery) error {
	a := d.Alert
	now := s.now()
	body, err := json.Marshal(AlertWebhook{ID: d.ID, Type: "alert", SentAt: now.UTC(), Alert: WebhookAlert{
		ID: a.ID, Operator: a.Operator, Kind: string(a.Kind), Severity: a.Severity, State: string(a.State), Device: a.Device,
		Machine: a.Machine, Slot: a.Slot, Ref: a.Ref, Code: a.Code, Summary: a.Summary, Detail: a.Detail, Created: a.Created,
		URL: s.alertURL(a)}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("service: alert webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "beaconvend-alerts/1")
	req.Header.Set(WebhookDeliveryHeader, d.ID)
	req.Header.Set(WebhookSignatureHeader, SignWebhook(s.webhookSecret(a.Operator), now, body))
	resp, err := s.opts.Alerts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("service: alert webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("service: alert webhook: %s answered %s", req.URL.Host, resp.Status)
	}
	return nil
}

// alertMail builds the message of an alert e-mail: headers and a
// quoted-printable UTF-8 text body.
func (s *Service) alertMail(d store.Delivery, from string, to []string) ([]byte, error) {
	a := d.Alert
	var body bytes.Buffer
	fmt.Fprintf(&body, "%s\n\n", a.Summary)
	if a.Detail != "" {
		fmt.Fprintf(&body, "%s\n\n", a.Detail)
	}
	fmt.Fprintf(&body, "Kind: %s\nSeverity: %s\n", a.Kind, a.Severity)
	for _, kv := range [][2]string{{"Device", a.Device}, {"Machine", a.Machine}, {"Slot", a.Slot}, {"Code", a.Code}, {"Reference", a.Ref}} {
		if kv[1] != "" {
			fmt.Fprintf(&body, "%s: %s\n", kv[0], kv[1])
		}
	}
	fmt.Fprintf(&body, "Raised: %s\nAlert: %s\n", a.Created.UTC().Format("2006-01-02 15:04:05 UTC"), a.ID)
	if u := s.alertURL(a); u != "" {
		fmt.Fprintf(&body, "\nOpen it in the console: %s\n", u)
	}
	var m bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&m, "%s: %s\r\n", k, v) }
	h("From", from)
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", fmt.Sprintf("[beaconvend %s] %s", a.Severity, a.Summary)))
	h("Date", s.now().UTC().Format(time.RFC1123Z))
	h("Message-ID", "<"+d.ID+"@alerts.beaconvend>")
	h("X-Beaconvend-Alert", a.ID)
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	m.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&m)
	if _, err := qp.Write(bytes.ReplaceAll(body.Bytes(), []byte("\n"), []byte("\r\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return m.Bytes(), nil
}

func (s *Service) sendAlertMail(ctx context.Context, d store.Delivery) error {
	o := s.opts.Alerts.SMTP
	if o.Host == "" {
		return errors.New("service: alert mail: no SMTP server configured (alerts.smtp.host)")
	}
	from, err := mail.ParseAddress(o.From)
	if err != nil {
		return fmt.Errorf("service: alert mail: from %q: %v", o.From, err)
	}
	list, err := mail.ParseAddressList(d.Target)
	if err != nil || len(list) == 0 {
		return fmt.Errorf("service: alert mail: recipients %q: %v", d.Target, err)
	}
	to := make([]string, len(list))
	for i, x := range list {
		to[i] = x.Address
	}
	msg, err := s.alertMail(d, from.String(), to)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
	tc := o.TLSConfig
	if tc == nil {
		tc = &tls.Config{}
	}
	tc = tc.Clone()
	if tc.ServerName == "" {
		tc.ServerName = o.Host
	}
	dl := &net.Dialer{Timeout: o.Timeout}
	var conn net.Conn
	if o.TLS == SMTPTLS {
		conn, err = (&tls.Dialer{NetDialer: dl, Config: tc}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = dl.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("service: alert mail: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(o.Timeout))
	c, err := smtp.NewClient(conn, o.Host)
	if err != nil {
		return fmt.Errorf("service: alert mail: %w", err)
	}
	defer c.Close()
	if err := c.Hello("beaconvend.localhost"); err != nil {
		return fmt.Errorf("service: alert mail: %w", err)
	}
	if o.TLS == SMTPStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("service: alert mail: %s offers no STARTTLS (set alerts.smtp.tls to tls or none)", addr)
		}
		if err := c.StartTLS(tc); err != nil {
			return fmt.Errorf("service: alert mail: starttls: %w", err)
		}
	}
	if o.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", o.Username, o.Password, o.Host)); err != nil {
			return fmt.Errorf("service: alert mail: auth: %w", err)
		}
	}
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("service: alert mail: %w", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("service: alert mail: rcpt %s: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("service: alert mail: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("service: alert mail: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("service: alert mail: %w", err)
	}
	return c.Quit()
}
