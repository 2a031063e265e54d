// Package payments is the seam between the cloud and the payment providers
// money enters and leaves through (WeChat Pay, Alipay, cards): the
// asynchronous Channel interface every provider implements, the records the
// cloud keeps of each order and refund, and the types a day's statement is
// normalized to for reconciliation.
//
// A real provider never answers "paid" to the request that creates an
// order: the payer acts on what Create returns (a QR code_url to scan, a
// client secret), and the provider tells the cloud later, by a signed
// notification (ParseNotification) or when asked (Query). The cloud keeps
// one record per order (a Payment, created pending with the cloud's own
// unique order number before the provider is called) and moves it to paid
// exactly once, whichever of the notification and the query comes first;
// unpaid orders are closed (Close) after their TTL. Refunds go back to the
// original order (Refund), partial or full, bounded by what is still
// refundable.
//
// Money stays in integer minor units end to end: a provider's yuan string
// "12.34" is 1234 fen, parsed exactly (ParseMinor), never through a float.
//
// Subpackages implement the providers: payments/wechatpay (API v3, Native
// QR payments), payments/alipay (precreate QR payments). The sandbox card
// (payments.Sandbox) exists only for development configurations.
package payments
