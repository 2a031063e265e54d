// Command cloud is the beaconvend cloud service and its provisioning CLI.
//
//	cloud serve -config cloud.yaml [-json]
//	cloud serve -dev [-data DIR] [-db DSN] [-http ADDR] [-broker embedded|URL] [-json] [...]
//	cloud keys reencrypt -config cloud.yaml [-dry-run]
//	cloud operator add -name NAME -email EMAIL (-password-file FILE | -password-stdin)
//	cloud operator add-account -operator OPERATOR -email EMAIL (-password-file FILE | -password-stdin)
//	cloud operator password -email EMAIL (-password-file FILE | -password-stdin)
//	cloud operator disable|enable -email EMAIL
//	cloud device add -id ID -operator OPERATOR -kind water|washer|dryer|vending -out DIR [...]
//	cloud device rotate-key -id ID [-status] [-wait DURATION]
//	cloud device disable -id ID
//	cloud stickers [-config cloud.yaml | -public-url URL] -device D [-machine M] [-format svg|png|pdf] -o FILE
//	cloud machine web-checkout [-config cloud.yaml] DEVICE MACHINE on|off
//
// The serving logic and its configuration are package cloud/server; see
// Main for what each command does; main only wires signals to Main.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		switch {
		case errors.Is(err, errHelp):
			os.Exit(0)
		case errors.Is(err, errUsage):
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
