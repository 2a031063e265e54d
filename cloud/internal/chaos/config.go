package chaos

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Rates are how often each fault is injected, per minute of soak.
type Rates struct {
	LinkCut        float64 // a controller's broker link cut (restored after 2-45 s)
	BrokerRestart  float64 // Mosquitto stopped (SIGKILL or SIGTERM) and started again
	ControllerKill float64 // a controller SIGKILLed and started again
	CloudKill      float64 // the cloud SIGKILLed and started again
	Stop           float64 // share (0-1) of started sessions the phone stops at a random moment
	PriceChange    float64 // share (0-1) of starts that race an operator price change
}

// DefaultRates are the rates of the long soak and the CI form.
var DefaultRates = Rates{LinkCut: 6, BrokerRestart: 1, ControllerKill: 2, CloudKill: 1, Stop: 0.4, PriceChange: 0.15}

// Config is one soak run.
type Config struct {
	CloudBin      string // go build ./cloud/cmd/cloud
	ControllerBin string // go build ./controller/cmd/controller
	MosquittoBin  string // mosquitto 2
	Dir           string // working directory: data, logs, controller journals
	DB            string // "sqlite" (default) or "postgres"
	PostgresDSN   string // for DB postgres: a scratch database's DSN
	Duration      time.Duration
	Devices       int // controllers; kinds rotate water, washer, vending
	Phones        int
	Seed          uint64
	Rates         Rates
	Skew          bool          // skew controller clocks by up to ±10 min (the controller's test-only -clock-skew flag)
	SessionBound  time.Duration // a session must be final this long after it was created
	QuiesceWithin time.Duration // how long the soak waits, after the faults stop, for every session to end
	Log           io.Writer     // progress lines; discarded when nil
}

// Defaults for Config fields left zero.
const (
	DefaultDuration      = 10 * time.Minute
	DefaultDevices       = 6
	DefaultPhones        = 4
	DefaultSessionBound  = 3 * time.Minute
	DefaultQuiesceWithin = 3 * time.Minute
)

func (c *Config) defaults() error {
	if c.DB == "" {
		c.DB = "sqlite"
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Devices == 0 {
		c.Devices = DefaultDevices
	}
	if c.Phones == 0 {
		c.Phones = DefaultPhones
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.SessionBound == 0 {
		c.SessionBound = DefaultSessionBound
	}
	if c.QuiesceWithin == 0 {
		c.QuiesceWithin = DefaultQuiesceWithin
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	switch {
	case c.CloudBin == "" || c.ControllerBin == "" || c.MosquittoBin == "":
		return errors.New("chaos: config needs CloudBin, ControllerBin and MosquittoBin")
	case c.Dir == "":
		return errors.New("chaos: config needs Dir")
	case c.DB != "sqlite" && c.DB != "postgres":
		return fmt.Errorf("chaos: db %q: want sqlite or postgres", c.DB)
	case c.DB == "postgres" && c.PostgresDSN == "":
		return errors.New("chaos: db postgres needs PostgresDSN")
	case c.Duration < 0 || c.Duration > 24*time.Hour:
		return fmt.Errorf("chaos: duration %s: want up to 24h", c.Duration)
	case c.Devices < 1 || c.Devices > 30:
		return fmt.Errorf("chaos: devices %d: want 1-30", c.Devices)
	case c.Phones < 1 || c.Phones > 30:
		return fmt.Errorf("chaos: phones %d: want 1-30", c.Phones)
	case c.Rates.Stop < 0 || c.Rates.Stop > 1 || c.Rates.PriceChange < 0 || c.Rates.PriceChange > 1:
		return errors.New("chaos: stop and price-change rates are shares: want 0-1")
	case c.Rates.LinkCut < 0 || c.Rates.BrokerRestart < 0 || c.Rates.ControllerKill < 0 || c.Rates.CloudKill < 0:
		return errors.New("chaos: fault rates per minute: want >= 0")
	}
	return nil
}

func (c *Config) logf(format string, args ...any) {
	fmt.Fprintf(c.Log, "chaos: "+format+"\n", args...)
}
