package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(ExitUsage)
	}
	// Signals do not kill the program: during a session the first Ctrl-C
	// stops the machine (StopSession) and the receipt is still printed;
	// outside a session, or on a second Ctrl-C, Run's context ends.
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	m.Interrupts = sigc
	err := m.Run(context.Background())
	signal.Stop(sigc)
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, oneLine(err))
		os.Exit(exitCode(err))
	}
}

// stdio returns w, or the fallback when w is nil.
func stdio(w io.Writer, fallback io.Writer) io.Writer {
	if w == nil {
		return fallback
	}
	return w
}
