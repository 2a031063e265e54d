package server

import (
	"crypto/sha256"
	"strings"

	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/service"
	"beaconvend/cloud/webcheckout"
)

// webCheckout is the web checkout at the machines (/m/…, /r/…), served
// on the public listener beside the phone API. Its forms' key is derived
// from the cloud key, so every instance of a fleet accepts a form another
// rendered; its cookies are Secure when the public listener or the
// configured public URL is HTTPS.
// Guests share the phone API's per-address checkout budget, and their
// address is read as the API reads it (trusted proxies).
func (s *Server) webCheckout(svc *service.Service, api *httpapi.Server, sec Secrets, scheme string) (*webcheckout.Handler, error) {
	key := sha256.Sum256(append([]byte("beaconvend web checkout forms\x00"), sec.CloudKey.Seed()...))
	return webcheckout.New(webcheckout.Options{
		Backend:       svc,
		Key:           key[:],
		SecureCookies: scheme == "https" || strings.HasPrefix(s.cfg.Payments.PublicURL, "https://"),
		ClientIP:      api.ClientAddr,
		Limit:         api.TakeGuestCheckout,
		Logger:        s.log.With("part", "web"),
	})
}
