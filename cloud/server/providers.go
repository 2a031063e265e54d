package server

import (
	"fmt"

	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/alipay"
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
