package ble

import (
	"log/slog"

	"beaconvend/app-protocol/vend"
)

// Backend names for Config.Backend.
const (
	BackendAir = "air" // simulated air over loopback multicast (the default)
	BackendHCI = "hci" // go-ble on a Linux HCI adapter
)

// Config selects a backend; the controller's configuration embeds it:
//
//	ble:
//	  backend: hci   # or air
//	  hci: 0         # adapter index, hci0
//	  air: 239.255.66.1:47474
type Config struct {
	Backend string `json:"backend" yaml:"backend"` // BackendAir (default when empty) or BackendHCI
	HCI     int    `json:"hci" yaml:"hci"`         // adapter index for BackendHCI; -1: first free
	Air     string `json:"air" yaml:"air"`         // group for BackendAir; empty: $BEACONVEND_BLE_AIR or DefaultAir
	RSSI    int    `json:"rssi" yaml:"rssi"`       // RSSI listeners see on the simulated air, dBm; 0: DefaultAirRSSI
}

// OpenAdvertiser opens the Advertiser c names. Errors: ErrConfig for an
// unknown backend, ErrUnsupported for BackendHCI outside Linux, and the
// backend's.
func OpenAdvertiser(c Config, log *slog.Logger) (Advertiser, error) {
	switch c.Backend {
	case "", BackendAir:
		a, err := NewAirAdvertiser(&AirOpts{Group: c.Air, RSSI: c.RSSI, Jitter: DefaultAirJitter, Logger: log})
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return a, nil
	case BackendHCI:
		o := DefaultHCIOpts()
		o.Logger = log
		h, err := openHCI(c.HCI, o)
		if err != nil {
			return nil, err
		}
		return h, nil
	}
	return nil, vend.Errorf(ErrConfig, "backend %q: want %q or %q", c.Backend, BackendAir, BackendHCI)
}

// OpenScanner opens the Scanner c names, like OpenAdvertiser. An HCI
// scanner holds the adapter: close it (it is an *HCI) when done.
func OpenScanner(c Config, log *slog.Logger) (Scanner, error) {
	switch c.Backend {
	case "", BackendAir:
		s, err := NewAirScanner(&AirOpts{Group: c.Air})
		if err != nil {
			return nil, err
		}
		return s, nil
	case BackendHCI:
		o := DefaultHCIOpts()
		o.Logger = log
		h, err := openHCI(c.HCI, o)
		if err != nil {
			return nil, err
		}
		return h, nil
	}
	return nil, vend.Errorf(ErrConfig, "backend %q: want %q or %q", c.Backend, BackendAir, BackendHCI)
}
