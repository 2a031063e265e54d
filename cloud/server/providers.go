package server

import (
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/alipay"
	stripecard "beaconvend/cloud/payments/stripe"
	"beaconvend/cloud/payments/wechatpay"
)

// The real providers, configured as payments.channels entries:
//
//   - name: wechatpay
//     params: {mch_id: "1900000109", app_id: wx…, merchant_serial: …, platform_serial: PUB_KEY_ID_…}
//     credentials: {merchant_key: file:…, api_v3_key: file:…, platform_key: file:…}
//   - name: alipay
//     params: {app_id: "2021…"}
//     credentials: {app_private_key: file:…, alipay_public_key: file:…}
//   - name: stripe_card
//     params: {currency: EUR, authorization_validity: 168h, webhook_tolerance: 5m}
//     credentials: {secret_key: file:…, webhook_secret: file:…}
//
// For stripe_card (cloud/payments/stripe) every param is optional
// (StripeParams): currency defaults to payments.currency;
// authorization_validity to 168h, Stripe's validity of a card-not-present
// authorization (set 120h for Visa merchant-initiated transactions);
// webhook_tolerance to 5m. Its source ID is the channel name,
// "stripe_card", of kind card.
//
// base_url points a channel at another endpoint (a test peer); empty is
// the provider's production host. Their keys are files (the SDKs read
// files), so these credentials must be file: references.
func init() {
	RegisterChannel("wechatpay", func(e ChannelEnv) (payments.Channel, error) {
		files, err := e.needFiles("merchant_key", "api_v3_key", "platform_key")
		if err != nil {
			return nil, err
		}
		return wechatpay.New(wechatpay.Config{MchID: e.Params["mch_id"], AppID: e.Params["app_id"],
			MerchantSerial: e.Params["merchant_serial"], PlatformSerial: e.Params["platform_serial"],
			MerchantKeyFile: files[0], APIv3KeyFile: files[1], PlatformKeyFile: files[2],
			BaseURL: e.BaseURL, NotifyURL: e.NotifyURL})
	})
	RegisterChannel("alipay", func(e ChannelEnv) (payments.Channel, error) {
		files, err := e.needFiles("app_private_key", "alipay_public_key")
		if err != nil {
			return nil, err
		}
		return alipay.New(alipay.Config{AppID: e.Params["app_id"], AppPrivateKeyFile: files[0],
			AlipayPublicKeyFile: files[1], GatewayURL: e.BaseURL, NotifyURL: e.NotifyURL})
	})
	RegisterChannel(stripecard.Name, func(e ChannelEnv) (payments.Channel, error) {
		files, err := e.needFiles("secret_key", "webhook_secret")
		if err != nil {
			return nil, err
		}
		p, err := ParseStripeParams(e.Name, e.Params, e.Currency)
		if err != nil {
			return nil, err
		}
		return stripecard.New(stripecard.Config{Name: e.Name, SecretKeyFile: files[0], WebhookSecretFile: files[1],
			Currency: p.Currency, BaseURL: e.BaseURL, AuthorizationValidity: p.AuthorizationValidity, Tolerance: p.WebhookTolerance})
	})
}

// StripeParams are the params of a stripe_card channel entry.
type StripeParams struct {
	Currency              vend.Currency // params.currency: the account's settlement currency; default payments.currency
	AuthorizationValidity time.Duration // params.authorization_validity: how long a hold lasts; default 168h
	WebhookTolerance      time.Duration // params.webhook_tolerance: the oldest webhook signature accepted; default 5m
}

// ParseStripeParams reads a stripe_card entry's params; an unknown
// param, or a value that does not parse, is an error naming it.
func ParseStripeParams(channel string, params map[string]string, wallet vend.Currency) (StripeParams, error) {
	p := StripeParams{Currency: wallet, AuthorizationValidity: stripecard.DefaultAuthorizationValidity, WebhookTolerance: stripecard.DefaultTolerance}
	field := func(k string) string { return "payments.channels." + channel + ".params." + k }
	for k, v := range params {
		switch k {
		case "currency":
			p.Currency = vend.Currency(v)
			if err := p.Currency.Validate(); err != nil {
				return p, fmt.Errorf("server: %s: %q: want an ISO 4217 code such as EUR", field(k), v)
			}
		case "authorization_validity", "webhook_tolerance":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return p, fmt.Errorf("server: %s: %q: want a positive duration such as 120h", field(k), v)
			}
			if k == "webhook_tolerance" {
				p.WebhookTolerance = d
				continue
			}
			if d > 31*24*time.Hour {
				return p, fmt.Errorf("server: %s: %s: above Stripe's longest hold (31 days, extended authorization)", field(k), v)
			}
			p.AuthorizationValidity = d
		default:
			return p, fmt.Errorf("server: %s: unknown param (known: currency, authorization_validity, webhook_tolerance)", field(k))
		}
	}
	return p, nil
}

// needFiles returns the paths of the named file: credentials, or an error
// naming the first that is missing or not a file.
func (e ChannelEnv) needFiles(names ...string) ([]string, error) {
	var out []string
	for _, n := range names {
		p, ok := e.Files[n]
		if !ok {
			return nil, fmt.Errorf("server: payments.channels.%s.credentials.%s: want file:PATH (the provider's SDK reads a key file)", e.Name, n)
		}
		out = append(out, p)
	}
	return out, nil
}
