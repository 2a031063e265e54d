// Package webcheckout serves the web checkout at a machine: the page a
// payer without the app reaches by scanning the code printed on the
// machine (cloud/stickers prints them), pays one session as a guest
// through a channel (WeChat Pay or Alipay QR, or a card), follows its
// progress, stops it, and keeps the receipt link.
//
// Routes (Handler.Register mounts them; cloud/server and the demo serve
// them beside the phone API):
//
//	GET  /m/{device}/{machine}          the machine: name, live state, price, a choice of amount or slot and channel
//	GET  /m/{device}/{machine}/state    the machine's state now, JSON, for the page's script
//	POST /m/{device}/{machine}/checkout opens a guest checkout, then 303 to its progress page
//	GET  /m/c/{id}                      the checkout: the QR to pay, live progress, Stop, the receipt link
//	GET  /m/c/{id}/events               its progress as Server-Sent Events (event "checkout", data a phoneapi.Checkout)
//	POST /m/c/{id}/stop                 stops it (cancels before the session starts, stops the machine during it)
//	GET  /r/{token}                     the receipt: delivered, captured, returned to the channel with the refunds' state
//	GET  /m/static/…                    the style sheet and the one script, embedded in the binary
//
// (So a device named "c" or "static" has no machine pages: those paths
// are taken.)
//
// The pages are rendered on the server with html/template and work
// without JavaScript for the essential path: the form is a plain POST and
// the progress page advances when reloaded (a "Check progress" link). It
// does not reload itself with <meta http-equiv=refresh>: a timed refresh
// moves a screen reader's focus away and takes the page from under a
// payer (axe-core rates it critical, WCAG 2.2.1). With JavaScript, checkout.js follows
// the events stream and updates the live region, reloading the page when
// the checkout changes state. Every response carries a strict Content
// Security Policy (default-src 'self', no inline script or style, no
// framing), so nothing loads from another origin: a card's client secret
// would go to Stripe.js, which cannot load here, so a card checkout shows
// a placeholder page saying so (a card payer uses the app).
//
// Forms are protected against cross-site posts by a token per rendered
// form, an HMAC under Options.Key of a random cookie (HttpOnly,
// SameSite=Strict) and of the form's purpose; each rendered machine form
// carries its own idempotency key, so a double submit opens one checkout
// and lands both requests on the same progress page. Opening a checkout
// takes from the payer's per-address budget that the phone API's guest
// checkouts share (Options.Limit). The checkout's
// token, which lets a guest read and stop it, is kept in an HttpOnly,
// SameSite=Strict cookie scoped to the checkout's path, never in a URL.
//
// Presence: a printed code proves nothing about where the payer stands
// (a photo of the sticker works from anywhere), unlike the app's rotating
// BLE proximity ID. So the web checkout is off for every machine until
// its operator turns it on (`cloud machine web-checkout DEVICE MACHINE
// on`), and the service refuses a web checkout for a machine where it is
// off (checkout.web_off); this page then says so and shows no form.
package webcheckout
