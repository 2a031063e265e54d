package clusterfault

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Config is one cluster fault run.
type Config struct {
	CloudBin      string // go build ./cloud/cmd/cloud
	ControllerBin string // go build ./controller/cmd/controller
	Dir           string // working directory: data, logs, controller directories

	// Broker is "nats" (a three-node NATS cluster as processes, devices
	// and controllers behind a loopback balancer) or "mosquitto" (one
	// Mosquitto: its kill is a SIGKILL and a restart).
	Broker       string
	MosquittoBin string // for Broker "mosquitto"

	// DSN is the cloud's database. With Failover set it is a
	// pg_auto_failover formation's multi-host DSN and the primary is
	// killed; otherwise a scratch database on a single PostgreSQL, which
	// is not killed (the table says so).
	DSN      string
	Failover Failover

	Devices     int     // simulated devices (cloud/internal/simdev), one water machine each
	Controllers int     // real controllers on emulated boards
	Phones      int     // phone users starting sessions concurrently
	Rate        float64 // session starts per second (open loop)
	// Duration is the traffic's length without the faults: a quarter of
	// it passes before the first kill, between one kill's recovery (the
	// node restarted, the failover done) and the next, and after the last.
	Duration time.Duration
	Down     time.Duration // how long a killed node stays down before it is started again
	Settle   time.Duration // after the traffic: how long every uplink has to be acknowledged and every device to be online
	Log      io.Writer     // progress lines; discarded when nil

	// Plant, for the test of the test only, names defects (Plant*
	// constants) the run writes into the store after the deployment
	// settled and before the audit, which must then report each of them.
	Plant []string
}

// Failover is the PostgreSQL formation's fault hook (cloud/internal/pgaf).
type Failover interface {
	KillPrimary() error
	// WaitFailover waits until another node is primary and takes writes.
	WaitFailover(within time.Duration) error
}

// Defaults.
const (
	DefaultDevices     = 300
	DefaultControllers = 4
	DefaultPhones      = 16
	DefaultRate        = 20
	DefaultDuration    = 3 * time.Minute
	DefaultDown        = 10 * time.Second
	DefaultSettle      = 90 * time.Second
)

func (c *Config) defaults() error {
	if c.Devices == 0 {
		c.Devices = DefaultDevices
	}
	if c.Controllers == 0 {
		c.Controllers = DefaultControllers
	}
	if c.Phones == 0 {
		c.Phones = DefaultPhones
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Down == 0 {
		c.Down = DefaultDown
	}
	if c.Settle == 0 {
		c.Settle = DefaultSettle
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	switch {
	case c.CloudBin == "" || c.ControllerBin == "":
		return errors.New("clusterfault: config needs CloudBin and ControllerBin")
	case c.Dir == "":
		return errors.New("clusterfault: config needs Dir")
	case c.DSN == "":
		return errors.New("clusterfault: config needs DSN")
	case c.Broker != "nats" && c.Broker != "mosquitto":
		return fmt.Errorf("clusterfault: broker %q: want nats or mosquitto", c.Broker)
	case c.Broker == "mosquitto" && c.MosquittoBin == "":
		return errors.New("clusterfault: broker mosquitto needs MosquittoBin")
	case c.Devices < 1 || c.Devices > 2000:
		return fmt.Errorf("clusterfault: devices %d: want 1-2000", c.Devices)
	case c.Controllers < 1 || c.Controllers > 20:
		return fmt.Errorf("clusterfault: controllers %d: want 1-20", c.Controllers)
	case c.Phones < 1 || c.Phones > 100:
		return fmt.Errorf("clusterfault: phones %d: want 1-100", c.Phones)
	case c.Rate <= 0 || c.Rate > 500:
		return fmt.Errorf("clusterfault: rate %g: want 0-500 starts per second", c.Rate)
	case c.Duration < 20*time.Second || c.Duration > time.Hour:
		return fmt.Errorf("clusterfault: duration %s: want 20s-1h", c.Duration)
	case c.Down < 0 || c.Down > c.Duration/4:
		return fmt.Errorf("clusterfault: down %s: want 0 to a quarter of the duration", c.Down)
	}
	return CheckPlant(c.Plant)
}

func (c *Config) logf(format string, args ...any) {
	fmt.Fprintf(c.Log, "clusterfault: "+format+"\n", args...)
}
