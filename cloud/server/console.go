package server

import (
	"crypto/sha256"

	"beaconvend/cloud/console"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// operatorConsole is the operator console (/console/), served on the
// public listener beside the phone API. Its anti-forgery key is derived
// from the cloud key, so every instance of a fleet accepts a form another
// rendered; its sessions are the operator API's (same bounds, same
// log-in throttle); its cookie is Secure when the request came over TLS,
// directly or through a trusted proxy.
func (s *Server) operatorConsole(svc *service.Service, api *httpapi.Server, sec Secrets) (*console.Console, error) {
	key := sha256.Sum256(append([]byte("beaconvend operator console\x00"), sec.CloudKey.Seed()...))
	ho := s.opts.HTTP
	lim := store.ConsoleLimits{TTL: ho.OperatorSessionTTL, Idle: ho.OperatorIdleTimeout}
	if lim.TTL <= 0 {
		lim.TTL = httpapi.DefaultOperatorSessionTTL
	}
	if lim.Idle <= 0 {
		lim.Idle = httpapi.DefaultOperatorIdleTimeout
	}
	return console.New(console.Options{
		Store:         s.opts.Store,
		Service:       svc,
		Key:           key[:],
		Session:       lim,
		Secure:        api.ForwardedTLS,
		ClientIP:      api.ClientAddr,
		LogInThrottle: api.ThrottleOperatorLogIn,
		Logger:        s.log.With("part", "console"),
	})
}
