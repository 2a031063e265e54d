package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"beaconvend/cloud/ingest"
	"beaconvend/cloud/service"
)

// Health is the admin listener's /healthz answer: what an operator's
// monitoring needs to tell why a cloud is not ready. The public listener
// answers only {"status":…}.
type Health struct {
	Status          string   `json:"status"` // ok, or degraded (then the answer is 503)
	Store           string   `json:"store"`  // ok, or the error
	BrokerConnected bool     `json:"broker_connected"`
	Development     bool     `json:"development"`
	HTTPTLS         string   `json:"http_tls"`   // listener, proxy or off
	BrokerTLS       string   `json:"broker_tls"` // listener, proxy, external or off
	KeyEncryption   bool     `json:"key_encryption"`
	Channels        []string `json:"channels"`
	DevicesOnline   float64  `json:"devices_online"`         // as the last periodic count found them
	LedgerImbalance float64  `json:"ledger_imbalance_minor"` // as the last periodic check found it; must be 0
	UptimeSeconds   int64    `json:"uptime_seconds"`
}

func tlsMode(t TLS) string {
	switch {
	case t.On():
		return "listener"
	case t.TerminatedByProxy:
		return "proxy"
	}
	return "off"
}

// adminHandler serves /metrics (the service's registry), /healthz with
// detail, and Go's net/http/pprof profiles under /debug/pprof/.
func (s *Server) adminHandler(svc *service.Service, in *ingest.Ingest) http.Handler {
	started := time.Now()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(svc.Registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		c := s.cfg
		h := Health{Status: "ok", Store: "ok", BrokerConnected: in.Connected(), Development: c.Development,
			HTTPTLS: tlsMode(c.HTTP.TLS), BrokerTLS: tlsMode(c.Broker.TLS), Channels: channelNames(c.Payments.Channels),
			KeyEncryption: c.KeyEncryption.KeyFile != "" || c.KeyEncryption.KeyEnv != "",
			DevicesOnline: svc.Metrics.DevicesOnline(), LedgerImbalance: svc.Metrics.LedgerImbalance(),
			UptimeSeconds: int64(time.Since(started).Seconds())}
		if !c.Broker.Embedded() {
			h.BrokerTLS = "external"
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := svc.Ready(ctx); err != nil {
			h.Store = err.Error()
		}
		code := http.StatusOK
		if h.Store != "ok" || !h.BrokerConnected {
			h.Status, code = "degraded", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(h)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// channelNames returns the names of the enabled channels.
func channelNames(cs []ChannelConfig) []string {
	out := []string{}
	for _, c := range cs {
		if c.On() {
			out = append(out, c.Name)
		}
	}
	return out
}
