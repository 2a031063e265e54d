// Package alipay is the Alipay payment channel: face-to-face precreate (QR)
// payments through Alipay's OpenAPI gateway, with the SDK
// github.com/smartwalle/alipay/v3.
//
// New returns a payments.Channel. Create calls alipay.trade.precreate and
// hands the payer its qr_code; Alipay creates the trade only when the payer
// scans it, so until then Query (alipay.trade.query) reports the order
// pending and Close (alipay.trade.close) has nothing to close: the code
// expires at the order's time_expire, which Create always sends when the
// order has an ExpiresAt.
// Refund calls alipay.trade.refund with out_request_no = the cloud's refund
// number, which makes a repeated refund harmless, and QueryRefund calls
// alipay.trade.fastpay.refund.query. Statement downloads the day's trade
// bill (alipay.data.dataservice.bill.downloadurl.query): a zip of GBK CSV
// files whose detail file (业务明细) has 25 columns and two summary lines;
// amounts are yuan, parsed exactly into fen.
//
// Every request is signed with the application's RSA key (RSA2, SHA-256);
// every answer and every asynchronous notification must carry Alipay's RSA2
// signature, checked with Alipay's public key (public-key mode; the
// certificate mode, which makes the SDK fetch certificates from the gateway,
// is deliberately not used). Alipay answers a business failure (an unknown
// trade, a refund above what is refundable) with a signed answer whose code
// is not 10000 and the SDK returns it with a nil error: every call checks
// the code, and reports it as payments.ErrRefused with Alipay's sub_code. A
// transport failure, an answer whose signature does not verify, and an
// unsigned error answer (Alipay cannot sign for a request it could not
// attribute: a wrong app key or app ID) are payments.ErrProvider.
//
// Notifications are form POSTs; their event ID is notify_id, which Alipay
// keeps when it retries. AckNotification answers "success" or "failure".
//
// References: https://opendocs.alipay.com/open/02ekfg (precreate),
// https://opendocs.alipay.com/common/02kf5q (signatures),
// https://opendocs.alipay.com/open/270/105902 (notifications),
// https://opendocs.alipay.com/open/028woc (trade bill). The tests run
// against scripts/paypeer-alipay, a loopback peer built on Alipay's own
// Node SDK.
package alipay
