package emu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// maxControlLine bounds one control request line.
const maxControlLine = 64 << 10

// ServeControl answers control requests (one JSON Request per line, one
// JSON Response per line) on every connection ln accepts, until ctx is done
// or ln is closed; then it closes the open connections, waits for their
// goroutines and returns nil. A line that is not a valid Request gets
// OK=false and the connection stays usable.
func (b *Board) ServeControl(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				mu.Lock()
				for c := range conns {
					c.Close()
				}
				mu.Unlock()
				return nil
			}
			return fmt.Errorf("%w: accept: %v", ErrControl, err)
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.serveConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

func (b *Board) serveConn(c net.Conn) {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), maxControlLine)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var req Request
		var resp Response
		if err := json.Unmarshal(line, &req); err != nil {
			resp = Response{Error: fmt.Sprintf("%v: %v", ErrRequest, err)}
		} else {
			resp = b.Do(req)
		}
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

// Control is a client of an emulator's control socket. Its methods are
// safe for concurrent use; each sends one request and waits for the
// answer. Errors wrap ErrControl (socket trouble) or ErrRequest (the
// emulator refused the command).
type Control struct {
	mu   sync.Mutex
	conn net.Conn
	rd   *bufio.Reader
	// Timeout bounds each request; 5s when 0.
	Timeout time.Duration
}

// Dial connects to the control socket at path (a Unix socket).
func Dial(path string) (*Control, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %v", ErrControl, path, err)
	}
	return &Control{conn: c, rd: bufio.NewReaderSize(c, 64<<10)}, nil
}

// Close closes the connection.
func (c *Control) Close() error { return c.conn.Close() }

// Do sends req and returns the emulator's response. A response with
// OK=false is returned together with an error wrapping ErrRequest.
func (c *Control) Do(req Request) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	to := c.Timeout
	if to <= 0 {
		to = 5 * time.Second
	}
	c.conn.SetDeadline(time.Now().Add(to))
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrControl, req.Cmd, err)
	}
	line, err := c.rd.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrControl, req.Cmd, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("%w: %s: bad response: %v", ErrControl, req.Cmd, err)
	}
	if !resp.OK {
		return &resp, fmt.Errorf("%w: %s", ErrRequest, resp.Error)
	}
	return &resp, nil
}

func (c *Control) do(req Request) error {
	_, err := c.Do(req)
	return err
}

// Status returns the emulator's whole state (see Status).
func (c *Control) Status() (*Status, error) {
	r, err := c.Do(Request{Cmd: CmdStatus})
	if err != nil {
		return nil, err
	}
	if r.Status == nil {
		return nil, fmt.Errorf("%w: status: empty response", ErrControl)
	}
	return r.Status, nil
}

// CorruptCRC makes the next n replies carry a bad CRC (0 clears).
func (c *Control) CorruptCRC(n int) error { return c.do(Request{Cmd: CmdCorruptCRC, Count: n}) }

// CorruptCRCProbability makes each reply carry a bad CRC with probability p (0-1).
func (c *Control) CorruptCRCProbability(p float64) error {
	return c.do(Request{Cmd: CmdCorruptCRC, Probability: p})
}

// NoReply makes the board leave the next n requests unanswered (0 clears).
func (c *Control) NoReply(n int) error { return c.do(Request{Cmd: CmdNoReply, Count: n}) }

// NoReplyProbability leaves each request unanswered with probability p (0-1).
func (c *Control) NoReplyProbability(p float64) error {
	return c.do(Request{Cmd: CmdNoReply, Probability: p})
}

// Delay makes the board wait d (millisecond resolution, at most 60s) before
// every reply; 0 clears.
func (c *Control) Delay(d time.Duration) error {
	return c.do(Request{Cmd: CmdDelay, DelayMS: d.Milliseconds()})
}

// StuckInput forces input (its profile name) to an electrical level, as a
// shorted or broken sensor wire would.
func (c *Control) StuckInput(input string, level bool) error {
	return c.do(Request{Cmd: CmdStuckInput, Input: input, Level: &level})
}

// ReleaseInput undoes StuckInput.
func (c *Control) ReleaseInput(input string) error {
	return c.do(Request{Cmd: CmdStuckInput, Input: input})
}

// ExpireLease switches every output OFF now, as a lapsed watchdog lease does.
func (c *Control) ExpireLease() error { return c.do(Request{Cmd: CmdExpireLease}) }

// Jam jams (or frees) a vending machine's slot.
func (c *Control) Jam(machine, slot string, jammed bool) error {
	return c.do(Request{Cmd: CmdJam, Machine: machine, Slot: slot, Jammed: &jammed})
}

// SetFlowRate sets a water machine's flow rate in litres per minute from now on.
func (c *Control) SetFlowRate(machine string, lpm float64) error {
	return c.do(Request{Cmd: CmdFlowRate, Machine: machine, LPM: &lpm})
}

// ClearFaults clears CRC corruption, withheld and delayed replies and stuck inputs.
func (c *Control) ClearFaults() error { return c.do(Request{Cmd: CmdClearFaults}) }

// Deliveries returns the delivery log's entries after seq (see Delivery)
// and how many of the oldest entries the bounded log dropped.
func (c *Control) Deliveries(since uint64) ([]Delivery, uint64, error) {
	r, err := c.Do(Request{Cmd: CmdDeliveries, Since: since})
	if err != nil {
		return nil, 0, err
	}
	return r.Deliveries, r.Dropped, nil
}
