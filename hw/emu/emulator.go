package emu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"beaconvend/hw/profile"
	"beaconvend/hw/pty"
)

// Emulator is a Board on a real pseudo-terminal with a control socket: a
// driver opens BoardPath as a serial port, and tests or operators send
// faults to ControlPath. Open allocates both, Run serves them, Close
// releases them.
type Emulator struct {
	Board *Board // the emulated board: state, models, faults

	pair    *pty.Pair
	ln      net.Listener
	ctlPath string
	tmpDir  string

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	closed  bool
	closeMu sync.Once
}

// Open builds the board (see NewBoard), allocates a pty pair and listens
// on the control socket. It returns ErrConfig-wrapped errors for a bad sim
// config and OS errors for the pty or socket.
func Open(p *profile.Profile, cfg *SimConfig, o *Opts) (*Emulator, error) {
	b, err := NewBoard(p, cfg, o)
	if err != nil {
		return nil, err
	}
	e := &Emulator{Board: b, ctlPath: b.o.ControlPath}
	if e.ctlPath == "" {
		e.tmpDir, err = os.MkdirTemp("", "hwsim-")
		if err != nil {
			return nil, fmt.Errorf("emu: control socket dir: %w", err)
		}
		e.ctlPath = filepath.Join(e.tmpDir, "control.sock")
	}
	e.ln, err = net.Listen("unix", e.ctlPath)
	if err != nil {
		e.cleanup()
		return nil, fmt.Errorf("emu: control socket: %w", err)
	}
	e.pair, err = pty.Open()
	if err != nil {
		e.cleanup()
		return nil, fmt.Errorf("emu: %w", err)
	}
	return e, nil
}

// BoardPath is the pty slave (/dev/pts/N) a Modbus master opens.
func (e *Emulator) BoardPath() string { return e.pair.SlavePath }

// ControlPath is the control socket's path (see Dial).
func (e *Emulator) ControlPath() string { return e.ctlPath }

// Run serves Modbus on the pty, the control socket and the model clock
// until ctx is done or Close is called; then it returns nil. It returns an
// error if the pty fails. Run may be called once.
func (e *Emulator) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.closed || e.done != nil {
		e.mu.Unlock()
		return errors.New("emu: emulator closed or already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	e.done = make(chan struct{})
	e.mu.Unlock()
	defer close(e.done)
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	for _, f := range []func(context.Context) error{
		func(ctx context.Context) error { return e.Board.Serve(ctx, e.pair.Master) },
		func(ctx context.Context) error { return e.Board.ServeControl(ctx, e.ln) },
		e.Board.Run,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// Close stops Run, waits for it, and releases the pty and the socket.
func (e *Emulator) Close() error {
	var err error
	e.closeMu.Do(func() {
		e.mu.Lock()
		e.closed = true
		cancel, done := e.cancel, e.done
		e.mu.Unlock()
		if cancel != nil {
			cancel()
			<-done
		}
		err = e.cleanup()
	})
	return err
}

func (e *Emulator) cleanup() error {
	var err error
	if e.ln != nil {
		e.ln.Close()
	}
	if e.pair != nil {
		err = e.pair.Close()
	}
	if e.tmpDir != "" {
		os.RemoveAll(e.tmpDir)
	} else if e.ctlPath != "" && e.ln != nil {
		os.Remove(e.ctlPath)
	}
	return err
}
