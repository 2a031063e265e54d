// Command cloud is the beaconvend cloud service and its provisioning CLI.
//
//	cloud serve [-data DIR] [-db DSN] [-http ADDR] [-broker embedded|URL] [-mqtt-listen ADDR]
//	            [-mqtt-tls-listen ADDR -mqtt-tls-cert FILE -mqtt-tls-key FILE] [-group NAME] [-json]
//	cloud operator add -name NAME -email EMAIL -password PW
//	cloud device add -id ID -operator OPERATOR -kind water|washer|dryer|vending -out DIR [...]
//	cloud device rotate-key -id ID -out DIR [-promote]
//	cloud device disable -id ID
//
// See Main for what each does; main only wires signals to Main.
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
