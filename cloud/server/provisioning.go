package server

import (
	"context"
	"crypto/ed25519"
	"net"
	"os"

	"beaconvend/cloud/provision"
	"beaconvend/cloud/service"
)

// useProvisioner lets the console and the operator API add devices with
// provision.Provisioner.AddDevice (the logic of `cloud device add`), bound
// to this cloud's grant key. The bundles name the broker the boards dial:
// the embedded broker's device TLS listener when it has one (its
// certificate must be one the boards trust: the system roots), the
// embedded broker's loopback listener otherwise (development and tests),
// or the external broker's URL with its CA file; broker.device_url, when
// set, replaces the URL, and broker.device_ca_file the CA. Site broker files
// (Mosquitto) are not rewritten here: after adding a device for a
// Mosquitto site, run `cloud broker files`.
func (s *Server) useProvisioner(svc *service.Service, sec Secrets, brokerURL string) {
	cfg := s.cfg
	u, ca := brokerURL, ""
	if cfg.Broker.Embedded() && s.MQTTTLS != "" {
		if host, _, err := net.SplitHostPort(s.MQTTTLS); err == nil && host != "" && !net.ParseIP(host).IsUnspecified() {
			u = "ssl://" + s.MQTTTLS
		}
	} else if !cfg.Broker.Embedded() && cfg.Broker.CAFile != "" {
		if b, err := os.ReadFile(cfg.Broker.CAFile); err == nil {
			ca = string(b)
		}
	}
	if cfg.Broker.DeviceURL != "" {
		u = cfg.Broker.DeviceURL
	}
	if cfg.Broker.DeviceCAFile != "" {
		if b, err := os.ReadFile(cfg.Broker.DeviceCAFile); err == nil {
			ca = string(b)
		}
	}
	p := &provision.Provisioner{Store: s.opts.Store, CloudKeys: []ed25519.PublicKey{sec.CloudKey.Public().(ed25519.PublicKey)},
		NATS: cfg.Broker.NATS(), Logger: s.log.With("part", "provision")}
	svc.UseProvisioner(service.Provisioning{
		Add: func(ctx context.Context, req provision.DeviceRequest) (provision.Result, error) {
			return p.AddDevice(ctx, req, nil)
		},
		MQTTURL: u, CAPEM: ca, TempDir: cfg.DataDir,
	})
}
