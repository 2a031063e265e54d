package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/reconcile"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// reconciler is the daily reconciliation of the configured channels
// (cloud/payments/reconcile) with the service's hooks: a row paid at the
// provider that we never booked is queried and credited, a credit the
// provider does not list is alerted.
func (c *Config) reconciler(st *store.Store, svc *service.Service, reg prometheus.Registerer, log *slog.Logger) *reconcile.Reconciler {
	o := &reconcile.Opts{Fees: st, Logger: log,
		Hooks: reconcile.Hooks{MissingInOurs: svc.ReconMissingInOurs, MissingInTheirs: svc.ReconMissingInTheirs}}
	if c.Payments.DayZone != "" {
		o.Location, _ = time.LoadLocation(c.Payments.DayZone) // validated with the configuration
	}
	if reg != nil {
		o.Metrics = reconcile.NewMetrics(reg)
	}
	return reconcile.New(st, o)
}

// reconciled are the channels with a provider statement to reconcile:
// every enabled channel but the sandbox card, which moves no real money.
func reconciled(chans []*payments.Guarded) map[string]reconcile.Source {
	out := map[string]reconcile.Source{}
	for _, ch := range chans {
		if ch.Name() != ChannelSandboxCard {
			out[ch.Name()] = ch
		}
	}
	return out
}

// ReconcileCommand runs `cloud reconcile -channel C -day D [-csv FILE]`
// (args after the word) against the configured channels and st. The
// hooks run through a service that sends no device command.
func ReconcileCommand(ctx context.Context, c *Config, st *store.Store, args []string, stdout io.Writer, log *slog.Logger) error {
	sec, err := LoadSecrets(c.DataDir)
	if err != nil {
		return err
	}
	chans, err := c.Channels()
	if err != nil {
		return err
	}
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: noDevices{}, CloudKey: sec.CloudKey, Channels: chans,
		Currency: c.Payments.Currency, PublicURL: c.Payments.PublicURL, Logger: log})
	if err != nil {
		return err
	}
	srcs := reconciled(chans)
	return reconcile.Command(ctx, args, reconcile.CommandEnv{
		Reconciler: c.reconciler(st, svc, nil, log),
		Source: func(name string) (reconcile.Source, error) {
			if s, ok := srcs[name]; ok {
				return s, nil
			}
			return nil, errors.New("server: reconcile: no enabled channel " + name + " with a statement (payments.channels)")
		},
	}, stdout)
}

// noDevices is the Publisher of a service that only reconciles.
type noDevices struct{}

func (noDevices) Publish(context.Context, string, mqttapi.Message) error {
	return errors.New("server: the reconcile command sends no device commands")
}
