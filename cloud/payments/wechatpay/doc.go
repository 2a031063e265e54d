// Package wechatpay is the WeChat Pay channel: API v3 Native (QR)
// payments through the official Go SDK
// (github.com/wechatpay-apiv3/wechatpay-go), behind payments.Channel.
//
// New builds the channel from a Config: the merchant ID (mchid), the
// AppID the orders are created under, the merchant's API certificate
// serial number and private key (PEM file), the APIv3 key (a file holding
// the 32-byte key), and WeChat Pay's platform public key or platform
// certificate (PEM file) with its serial or public key ID. Every request
// is signed by the SDK (Authorization: WECHATPAY2-SHA256-RSA2048) and every
// response is checked by the SDK against the platform key (signature over
// timestamp, nonce and body; a timestamp more than five minutes off is
// refused).
//
// What each method does at WeChat Pay:
//
//   - Create: POST /v3/pay/transactions/native; the answer's code_url is the
//     QR payload (Action.CodeURL). Amounts are fen (CNY minor units).
//   - Query: GET /v3/pay/transactions/out-trade-no/{no}; trade_state
//     SUCCESS and REFUND are paid, NOTPAY and USERPAYING pending, CLOSED and
//     REVOKED closed, PAYERROR failed.
//   - Close: POST .../out-trade-no/{no}/close.
//   - Refund, QueryRefund: /v3/refund/domestic/refunds; SUCCESS is
//     succeeded, PROCESSING pending, CLOSED and ABNORMAL failed.
//   - ParseNotification: the SDK's notify handler verifies the platform
//     signature and timestamp and opens the AEAD_AES_256_GCM resource with
//     the APIv3 key. TRANSACTION.SUCCESS is a payment notification,
//     REFUND.* a refund notification. The event ID is the notification's
//     id; WeChat Pay sends a notification again until it is acknowledged,
//     so the caller deduplicates by that ID. AckNotification answers 204
//     (received) or 500 with {"code":"FAIL"} (send it again).
//   - Statement: the daily trade bill (GET /v3/bill/tradebill, bill_type
//     ALL) has no typed API in the SDK: the signed client asks for the
//     download_url and the SHA1 of the file, downloads it (the file itself
//     is not signed; only the digest protects it), checks the digest and
//     parses the CSV with ParseTradeBill.
//
// The trade bill is a UTF-8 CSV (with or without a byte-order mark): a
// header of 27 column names, one line per payment or refund whose every
// cell starts with a backtick (`), then a caption line of 7 summary
// names and one line of summary values. Amounts are yuan with two
// decimals (fees may carry more decimal places, which must be zeros) and
// are read exactly into fen with payments.ParseMinor. A refund row (交易状态
// REFUND) is read from 退款金额 and carries 退款状态 (SUCCESS, PROCESSING,
// ABNORMAL, …) as its status; any other line is a payment row read from
// 应结订单金额 whose status is its 交易状态 (SUCCESS, or e.g. REVOKED, which
// reconciliation reports as a status mismatch). Every summary
// total is checked against the sum of its column over the rows and the
// count against the number of rows; a bill whose summary does not match is
// payments.ErrStatement. Duplicate rows are kept: reconciliation reports
// them.
//
// Errors: a business refusal by WeChat Pay (a 4xx answer with a code such
// as ORDER_NOT_EXIST, ORDERPAID, INVALID_REQUEST) is payments.ErrRefused
// with the code in the message; a network failure, a 5xx, a 401 (our
// signature refused: a configuration fault), a 429 or a response whose
// signature does not verify is payments.ErrProvider. The SDK checks the
// signature of 2xx answers only; the channel also checks a refusal that
// carries a signature, so that a forged ORDER_NOT_EXIST or
// NO_STATEMENT_EXIST is ErrProvider rather than a refusal the caller acts
// on. A notification that does not verify or decrypt is
// payments.ErrNotification.
//
// The SDK's API host (https://api.mch.weixin.qq.com) is a constant. When
// Config.BaseURL names another server (a test peer on loopback), the
// channel's HTTP client rewrites the scheme and host of every request to
// it; paths and queries, and so the signatures over them, are unchanged.
//
// Reference: WeChat Pay's API v3 merchant documentation at
// pay.weixin.qq.com (Native payment, refunds, notifications, trade bill).
package wechatpay
