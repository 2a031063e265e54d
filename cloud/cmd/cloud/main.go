// Command cloud is the beaconvend cloud service and its provisioning CLI.
//
//	cloud serve [-data DIR] [-db DSN] [-http ADDR] [-broker embedded|URL] [-mqtt-listen ADDR]
//	            [-mqtt-tls-listen ADDR -mqtt-tls-cert FILE -mqtt-tls-key FILE] [-group NAME] [-json]
//	cloud operator add -name NAME -email EMAIL (-password-file FILE | -password-stdin)
//	cloud operator add-account -operator OPERATOR -email EMAIL (-password-file FILE | -password-stdin)
//	cloud operator password -email EMAIL (-password-file FILE | -password-stdin)
//	cloud operator disable|enable -email EMAIL
//	cloud device add -id ID -operator OPERATOR -kind water|washer|dryer|vending -out DIR [...]
//	cloud device rotate-key -id ID [-status] [-wait DURATION]
//	cloud device disable -id ID
//
// See Main for what each does; main only wires signals to Main.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"beaconvend/cloud/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	err := m.Run(ctx)
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// upkeepOptions are the knobs of the service's background components
// that `cloud serve` runs beside the ingest and the HTTP API.
type upkeepOptions struct {
	Presence service.PresenceOptions
	Janitor  service.JanitorOptions
	Keys     service.KeyRotatorOptions
}

// upkeepFlags adds the serve flags of upkeepOptions.
func (m *Main) upkeepFlags(fs *flag.FlagSet) {
	fs.DurationVar(&m.Upkeep.Presence.StaleAfter, "presence-stale", service.DefaultStaleAfter,
		"a device heard from for this long is offline (three times the boards' telemetry period)")
	fs.DurationVar(&m.Upkeep.Janitor.Interval, "janitor-interval", 10*time.Minute, "how often expired bookkeeping rows are pruned")
}

// runUpkeep runs the presence sweeper, the janitor and the key-rotation
// driver until ctx is done, each with its own Run.
func runUpkeep(svc *service.Service, o upkeepOptions) func(context.Context) error {
	return func(ctx context.Context) error {
		runs := []func(context.Context) error{svc.Presence(o.Presence).Run, svc.Janitor(o.Janitor).Run, svc.KeyRotator(o.Keys).Run}
		errc := make(chan error, len(runs))
		for _, run := range runs {
			go func() { errc <- run(ctx) }()
		}
		var errs []error
		for range runs {
			errs = append(errs, <-errc)
		}
		return errors.Join(errs...)
	}
}

// disconnectHook returns the embedded broker's Options.OnDisconnect,
// which reaches the service once set is called with it (the broker starts
// before the service exists).
func disconnectHook() (hook func(deviceID string, at time.Time), set func(*service.Service)) {
	var p atomic.Pointer[service.Service]
	return func(id string, at time.Time) {
		if s := p.Load(); s != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.DeviceDisconnected(ctx, id, at)
		}
	}, p.Store
}
