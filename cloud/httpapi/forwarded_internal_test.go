package httpapi

import (
	"crypto/tls"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// A request counts as TLS when it came over TLS here, or from a trusted
// proxy that says https; anyone else's X-Forwarded-Proto is ignored.
func TestForwardedTLS(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		remote, proto string
		direct        bool
		want          bool
	}{
		{"192.0.2.1:5000", "", false, false},
		{"192.0.2.1:5000", "", true, true},
		{"192.0.2.1:5000", "https", false, false}, // not a proxy we trust
		{"10.1.2.3:5000", "https", false, true},
		{"10.1.2.3:5000", "HTTPS ", false, true},
		{"10.1.2.3:5000", "http", false, false},
		{"10.1.2.3:5000", "", false, false},
	} {
		s := &Server{}
		s.opts.TrustedProxies = proxies
		r := httptest.NewRequest("GET", "/console/login", nil)
		r.RemoteAddr = tc.remote
		r.TLS = nil
		if tc.direct {
			r.TLS = &tls.ConnectionState{}
		}
		if tc.proto != "" {
			r.Header.Set("X-Forwarded-Proto", tc.proto)
		}
		if got := s.ForwardedTLS(r); got != tc.want {
			t.Errorf("ForwardedTLS(%s, proto %q, direct TLS %v) = %v, want %v", tc.remote, tc.proto, tc.direct, got, tc.want)
		}
	}
}
