package server

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// ChannelConfig is one entry of payments.channels. In YAML it is either
// a bare name (sandbox_card) or a mapping:
//
//   - name: wechatpay
//     enabled: true
//     base_url: https://api.mch.weixin.qq.com   # a test peer's URL in tests
//     priority: 1                               # lower is offered first
//     params: {mch_id: "1900000001", app_id: wx123, merchant_serial: 5157F09E…, platform_serial: PUB_KEY_ID_…}
//     credentials:                              # file:PATH (0600) or env:NAME; WeChat Pay and Alipay read files
//     merchant_key: file:/etc/beaconvend/wechatpay/apiclient_key.pem
//     api_v3_key: file:/etc/beaconvend/wechatpay/apiv3.key
//     platform_key: file:/etc/beaconvend/wechatpay/pub_key.pem
//     limits: {min: "0.01", max: "500.00", per_user_day: "2000.00", per_operator_day: "50000.00", currencies: [CNY]}
//
// Credentials are loaded at start; one that does not load refuses the
// start, naming its field.
type ChannelConfig struct {
	Name        string            `yaml:"name"`
	Enabled     *bool             `yaml:"enabled"`     // default true
	BaseURL     string            `yaml:"base_url"`    // the provider's endpoint; the channel's default when empty
	Priority    int               `yaml:"priority"`    // routing order when the payer chose no channel; lower first
	Params      map[string]string `yaml:"params"`      // the channel's non-secret settings (merchant ID, app ID, key serial)
	Credentials map[string]string `yaml:"credentials"` // the channel's secrets: file:PATH or env:NAME each
	Limits      LimitsConfig      `yaml:"limits"`
	Timeout     Duration          `yaml:"timeout"` // per provider call; default 15s
}

// LimitsConfig are a channel's limits as decimal amounts of the wallet
// currency ("500.00"); empty is no bound.
type LimitsConfig struct {
	Min            string   `yaml:"min"`              // per payment
	Max            string   `yaml:"max"`              // per payment
	PerUserDay     string   `yaml:"per_user_day"`     // one payer's orders per day
	PerOperatorDay string   `yaml:"per_operator_day"` // every payer's orders on the channel per day (the merchant account's cap)
	Currencies     []string `yaml:"currencies"`       // accepted; default: the wallet currency
}

// UnmarshalYAML accepts a bare name or a mapping.
func (c *ChannelConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		c.Name = n.Value
		return nil
	}
	type plain ChannelConfig
	var p plain
	dec := n.Decode
	if err := dec(&p); err != nil {
		return err
	}
	*c = ChannelConfig(p)
	return nil
}

// On reports whether the channel is enabled.
func (c ChannelConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// ChannelEnv is what a ChannelFactory builds a channel from: the entry
// itself, its credentials loaded (each checked to load, and for file:
// credentials the absolute path too, for packages that read key files
// themselves), and the notification URL the provider must POST to.
type ChannelEnv struct {
	ChannelConfig
	Secrets    map[string][]byte // credential name → its bytes
	Files      map[string]string // credential name → absolute path, for file: credentials
	NotifyURL  string            // <payments.public_url>/v1/channels/<name>/notify
	SandboxMax int64             // payments.sandbox_max_payment
	Currency   vend.Currency     // payments.currency, the wallet currency
}

// ChannelFactory builds a channel from its configuration. The cloud's
// payment channel packages register one each (RegisterChannel):
// sandbox_card here; wechatpay and alipay adapt cloud/payments/wechatpay
// and cloud/payments/alipay (each New(Config) (payments.Channel, error))
// from an init function of this package. An error refuses the start,
// naming the channel.
type ChannelFactory func(e ChannelEnv) (payments.Channel, error)

var (
	factoriesMu sync.Mutex
	factories   = map[string]ChannelFactory{
		ChannelSandboxCard: func(e ChannelEnv) (payments.Channel, error) {
			return &payments.Sandbox{MaxPayment: e.SandboxMax}, nil
		},
	}
)

// RegisterChannel makes channel name configurable. It is meant for init
// functions; registering a name twice replaces the first.
func RegisterChannel(name string, f ChannelFactory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	factories[name] = f
}

func factory(name string) (ChannelFactory, bool) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	f, ok := factories[name]
	return f, ok
}

// KnownChannels returns the configurable channel names, sorted.
func KnownChannels() []string {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	var out []string
	for n := range factories {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (c *Config) validateChannels() error {
	seen := map[string]bool{}
	for i, ch := range c.Payments.Channels {
		field := fmt.Sprintf("payments.channels[%d]", i)
		if ch.Name != "" {
			field = "payments.channels." + ch.Name
		}
		if _, ok := factory(ch.Name); !ok {
			return bad(field, "%q: unknown channel (known: %s)", ch.Name, strings.Join(KnownChannels(), ", "))
		}
		if seen[ch.Name] {
			return bad("payments.channels", "%s twice", ch.Name)
		}
		seen[ch.Name] = true
		if ch.Name == ChannelSandboxCard && ch.On() && !c.Development {
			return bad("payments.channels", "%s always pays: anyone could mint wallet money; it exists only with development: true", ch.Name)
		}
		if ch.BaseURL != "" && !strings.HasPrefix(ch.BaseURL, "https://") && !strings.HasPrefix(ch.BaseURL, "http://") {
			return bad(field+".base_url", "%q: want an http(s) URL", ch.BaseURL)
		}
		for k, v := range ch.Credentials {
			if !strings.HasPrefix(v, "file:") && !strings.HasPrefix(v, "env:") {
				return bad(field+".credentials."+k, "%q: want file:PATH or env:NAME", v)
			}
		}
		if _, err := ch.limits(c.Payments.Currency); err != nil {
			return bad(field+".limits", "%v", err)
		}
	}
	return nil
}

func (ch ChannelConfig) limits(wallet vend.Currency) (payments.Limits, error) {
	var l payments.Limits
	for _, f := range []struct {
		name string
		text string
		dst  *int64
	}{{"min", ch.Limits.Min, &l.Min}, {"max", ch.Limits.Max, &l.Max}, {"per_user_day", ch.Limits.PerUserDay, &l.PerUserDay},
		{"per_operator_day", ch.Limits.PerOperatorDay, &l.PerDay}} {
		if f.text == "" {
			continue
		}
		v, err := payments.ParseMinor(f.text)
		if err != nil || v <= 0 {
			return l, fmt.Errorf("%s: %q: want a positive decimal amount such as 500.00", f.name, f.text)
		}
		*f.dst = v
	}
	for _, c := range ch.Limits.Currencies {
		l.Currencies = append(l.Currencies, vend.Currency(c))
	}
	if len(l.Currencies) == 0 {
		l.Currencies = []vend.Currency{wallet}
	}
	if err := l.Validate(); err != nil {
		return l, err
	}
	return l, nil
}

// loadCredential reads one file:PATH (relative to the config's directory)
// or env:NAME credential; path is the file's absolute path ("" for env:).
func (c *Config) loadCredential(ref string) (b []byte, path string, err error) {
	if name, ok := strings.CutPrefix(ref, "env:"); ok {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return nil, "", fmt.Errorf("environment variable %s is not set", name)
		}
		return []byte(v), "", nil
	}
	path = strings.TrimPrefix(ref, "file:")
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.dir, path)
	}
	if path, err = filepath.Abs(path); err != nil {
		return nil, "", err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("%s is readable by others (mode %04o); want 0600", path, st.Mode().Perm())
	}
	if b, err = os.ReadFile(path); err != nil {
		return nil, "", err
	}
	if len(b) == 0 {
		return nil, "", fmt.Errorf("%s is empty", path)
	}
	return b, path, nil
}

// Channels builds the enabled payment channels with their limits,
// priority and breaker, never nil (a nil list would give the service its
// sandbox default). A credential that does not load, or a channel whose
// constructor refuses its configuration, is ErrConfig naming the field.
func (c *Config) Channels() ([]*payments.Guarded, error) {
	out := []*payments.Guarded{}
	for _, ch := range c.Payments.Channels {
		if !ch.On() {
			continue
		}
		field := "payments.channels." + ch.Name
		f, ok := factory(ch.Name)
		if !ok {
			return nil, bad(field, "unknown channel (known: %s)", strings.Join(KnownChannels(), ", "))
		}
		env := ChannelEnv{ChannelConfig: ch, Secrets: map[string][]byte{}, Files: map[string]string{}, SandboxMax: c.Payments.SandboxMaxPayment,
			Currency:  c.Payments.Currency,
			NotifyURL: strings.TrimRight(c.Payments.PublicURL, "/") + "/v1/channels/" + ch.Name + "/notify"}
		keys := make([]string, 0, len(ch.Credentials))
		for k := range ch.Credentials {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b, path, err := c.loadCredential(ch.Credentials[k])
			if err != nil {
				return nil, bad(field+".credentials."+k, "%v", err)
			}
			env.Secrets[k] = b
			if path != "" {
				env.Files[k] = path
			}
		}
		lim, err := ch.limits(c.Payments.Currency)
		if err != nil {
			return nil, bad(field+".limits", "%v", err)
		}
		pc, err := f(env)
		if err != nil {
			return nil, bad(field, "%v", err)
		}
		g := payments.Guard(pc, lim, ch.Priority, nil)
		g.Timeout = time.Duration(ch.Timeout)
		out = append(out, g)
	}
	return out, nil
}
