package server

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
)

// Alerts configure how the cloud delivers operator alerts
// (service.AlertOptions): e-mail over SMTP and the signing key of the
// operators' webhooks. Each operator sets its own recipients, webhook URL,
// thresholds and quiet period in the console. Without smtp.host no e-mail
// is sent (e-mail deliveries fail and are retried, visible in the inbox).
//
//	alerts:
//	  console_url: https://cloud.example.com/console  # links in messages
//	  webhook_key_file: /etc/beaconvend/alert-webhook.key  # 0600, 64 hex digits; default derived from the cloud key
//	  smtp:
//	    host: smtp.example.com
//	    port: 587                     # default 587, 465 with tls: tls
//	    from: "Beaconvend <alerts@example.com>"
//	    username: alerts              # none when empty
//	    password_file: /etc/beaconvend/smtp.password  # 0600
//	    tls: starttls                 # starttls (default), tls, or none (loopback relays only in production)
//	    ca_file: ""                   # PEM roots of the server's certificate; default the system's
type Alerts struct {
	ConsoleURL     string `yaml:"console_url"`
	WebhookKeyFile string `yaml:"webhook_key_file"`
	SMTP           SMTP   `yaml:"smtp"`
}

// SMTP is the mail server alert e-mails go through.
type SMTP struct {
	Host         string `yaml:"host"`
	Port         int    `yaml:"port"`
	From         string `yaml:"from"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	TLS          string `yaml:"tls"`
	CAFile       string `yaml:"ca_file"`
}

// AlertOptions returns the service's alert options from the alerts
// section, reading its files. Errors: ErrConfig naming the field,
// ErrKeyFile, ErrKeyPerms.
func (c *Config) AlertOptions() (service.AlertOptions, error) {
	a := c.Alerts
	o := service.AlertOptions{ConsoleURL: strings.TrimSuffix(a.ConsoleURL, "/")}
	if a.WebhookKeyFile != "" {
		k, err := readKey("alerts.webhook_key", c.path(a.WebhookKeyFile), "", nil)
		if err != nil {
			return o, err
		}
		o.WebhookKey = k
	}
	s := a.SMTP
	if s.Host == "" {
		if s.From != "" || s.Username != "" || s.PasswordFile != "" {
			return o, bad("alerts.smtp.host", "required when other smtp fields are set")
		}
		return o, nil
	}
	switch s.TLS {
	case "", service.SMTPStartTLS, service.SMTPTLS, service.SMTPNone:
	default:
		return o, bad("alerts.smtp.tls", "%q: want starttls, tls or none", s.TLS)
	}
	if s.Port < 0 || s.Port > 65535 {
		return o, bad("alerts.smtp.port", "%d: want 1-65535", s.Port)
	}
	if s.From == "" {
		return o, bad("alerts.smtp.from", "required with alerts.smtp.host")
	}
	if s.TLS == service.SMTPNone && !c.Development && !loopback(s.Host) {
		return o, bad("alerts.smtp.tls", "none sends mail in clear to %s; only a loopback relay may be reached so%s", s.Host, production)
	}
	o.SMTP = service.SMTPOptions{Host: s.Host, Port: s.Port, From: s.From, Username: s.Username, TLS: s.TLS}
	if s.Username != "" {
		if s.PasswordFile == "" {
			return o, bad("alerts.smtp.password_file", "required with alerts.smtp.username")
		}
		b, err := readSecretFile("alerts.smtp.password_file", c.path(s.PasswordFile))
		if err != nil {
			return o, err
		}
		o.SMTP.Password = strings.TrimRight(string(b), "\r\n")
	}
	if s.CAFile != "" {
		pem, err := os.ReadFile(c.path(s.CAFile))
		if err != nil {
			return o, bad("alerts.smtp.ca_file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return o, bad("alerts.smtp.ca_file", "%s holds no PEM certificate", s.CAFile)
		}
		o.SMTP.TLSConfig = &tls.Config{RootCAs: pool}
	}
	return o, nil
}

// readSecretFile reads a 0600 file.
func readSecretFile(field, file string) ([]byte, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, vend.Errorf(ErrKeyFile, "%s: %v", field, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, vend.Errorf(ErrKeyPerms, "%s %s has mode %o, want 0600", field, file, st.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, vend.Errorf(ErrKeyFile, "%s: %v", field, err)
	}
	return b, nil
}

func (c *Config) validateAlerts() error {
	_, err := c.AlertOptions()
	return err
}

// mergeAlerts fills the fields of o that the program left zero from the
// configuration.
func mergeAlerts(o service.AlertOptions, c *Config) (service.AlertOptions, error) {
	f, err := c.AlertOptions()
	if err != nil {
		return o, err
	}
	if o.SMTP.Host == "" {
		o.SMTP = f.SMTP
	}
	if o.WebhookKey == nil {
		o.WebhookKey = f.WebhookKey
	}
	if o.ConsoleURL == "" {
		o.ConsoleURL = f.ConsoleURL
	}
	return o, nil
}
