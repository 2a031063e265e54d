package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/controller/config"
	"beaconvend/hw/ble"
)

// newBeacon builds the backend the config names: "hci" (go-ble on the
// Linux HCI adapter), "sim" (the simulated air over loopback, for boards
// without a radio, the demo and tests) or "none".
func newBeacon(cfg *config.Config, sec *config.Secrets, log *slog.Logger, now func() time.Time) (Beacon, error) {
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
	return bleBeacon{b, log}, nil
}

// bleBeacon adapts *ble.Beacon: SetState errors are retried by its Run, so
// they are logged here, not returned.
type bleBeacon struct {
	b   *ble.Beacon
	log *slog.Logger
}

func (x bleBeacon) SetState(s beacon.State) {
	if x.b.State() == s {
		return
	}
	if err := x.b.SetState(s); err != nil {
		x.log.Warn("beacon state", "state", s, "err", err)
	}
}
func (x bleBeacon) Run(ctx context.Context) error { return x.b.Run(ctx) }
func (x bleBeacon) Close() error                  { return x.b.Close() }
