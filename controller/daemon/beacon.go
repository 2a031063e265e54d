package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/controller/config"
	"beaconvend/controller/gattsvc"
	"beaconvend/hw/ble"
)

// newBeacon builds the backend the config names: "hci" (go-ble on the
// Linux HCI adapter), "sim" (the simulated air over loopback, for boards
// without a radio, the demo and tests) or "none". With beacon.gatt (hci
// only) the adapter also serves the board's GATT relay service over relay,
// beside the beacon (ble.GATTHost).
func newBeacon(cfg *config.Config, sec *config.Secrets, log *slog.Logger, now func() time.Time, relay gattsvc.Relay, claimInfo func() []byte) (Beacon, error) {
	var bc ble.Config
	switch cfg.Beacon.Backend {
	case "none":
		return NoBeacon{}, nil
	case "hci":
		bc = ble.Config{Backend: "hci", HCI: cfg.Beacon.HCIDevice}
	case "sim":
		bc = ble.Config{Backend: "air", Air: cfg.Beacon.SimAddr, RSSI: cfg.Beacon.SimRSSI}
	default:
		return nil, fmt.Errorf("controller: beacon backend %q", cfg.Beacon.Backend)
	}
	adv, err := ble.OpenAdvertiser(bc, log)
	if err != nil {
		return nil, fmt.Errorf("controller: beacon: %w", err)
	}
	o := ble.DefaultBeaconOpts()
	o.CompanyID, o.TxPower, o.Name, o.OfflineCapable, o.Logger, o.Now = cfg.Beacon.CompanyID, cfg.Beacon.TxPower, cfg.Beacon.Name, cfg.Beacon.Offline, log, now
	b, err := ble.NewBeacon(adv, identityRotator(sec, cfg, now), o)
	if err != nil {
		adv.Close()
		return nil, fmt.Errorf("controller: beacon: %w", err)
	}
	x := bleBeacon{b: b, log: log}
	if cfg.Beacon.GATT {
		p, ok := adv.(ble.Peripheral)
		if !ok {
			b.Close()
			return nil, fmt.Errorf("controller: beacon.gatt: backend %q cannot serve GATT", cfg.Beacon.Backend)
		}
		svc := gattsvc.New(relay, &gattsvc.Opts{Logger: log, Now: now, ClaimInfo: claimInfo})
		x.host, err = ble.NewGATTHost(p, b, svc.Service, &ble.GATTOpts{
			IdleTimeout: cfg.Beacon.GATTIdleTimeout.D(), NotifyKeepsAlive: true, Now: now, Logger: log,
		})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("controller: beacon.gatt: %w", err)
		}
	}
	return x, nil
}

// bleBeacon adapts *ble.Beacon: SetState errors are retried by its Run, so
// they are logged here, not returned. host, when set, serves the GATT
// relay on the same radio for as long as Run runs.
type bleBeacon struct {
	b    *ble.Beacon
	host *ble.GATTHost
	log  *slog.Logger
}

func (x bleBeacon) SetState(s beacon.State) {
	if x.b.State() == s {
		return
	}
	if err := x.b.SetState(s); err != nil {
		x.log.Warn("beacon state", "state", s, "err", err)
	}
}

// Run runs the beacon and, with GATT, the host until ctx is done.
func (x bleBeacon) Run(ctx context.Context) error {
	if x.host == nil {
		return x.b.Run(ctx)
	}
	herr := make(chan error, 1)
	go func() { herr <- x.host.Run(ctx) }()
	err := x.b.Run(ctx)
	if e := <-herr; e != nil && ctx.Err() == nil {
		x.log.Error("gatt host stopped", "err", e)
	}
	return err
}

// Close closes the beacon and its radio (the host stops with Run's ctx).
func (x bleBeacon) Close() error { return x.b.Close() }
