package emu_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/hw/emu"
	"beaconvend/hw/modbus"
	"beaconvend/hw/profile"
)

// testProfile has every kind of register: an active-low input, a 32-bit
// input-register counter (high word first), a 16-bit and a 32-bit
// (low word first) holding counter, and a watchdog register.
const testProfile = `
name: test-board
slave_id: 7
serial: {baud: 9600, parity: none}
outputs:
  - {name: o1, coil: 0}
  - {name: o2, coil: 1}
  - {name: o3, coil: 2}
  - {name: o4, coil: 3}
inputs:
  - {name: i1, input: 0}
  - {name: i2, input: 1, active_low: true}
  - {name: i3, input: 2}
counters:
  - {name: c1, table: input, register: 0, width: 32, word_order: high_first}
  - {name: h16, table: holding, register: 10, width: 16}
  - {name: h32, table: holding, register: 11, width: 32, word_order: low_first}
watchdog: {register: 20, unit_ms: 100}
`

func mustProfile(tb testing.TB, nameOrYAML string) *profile.Profile {
	tb.Helper()
	var p *profile.Profile
	var err error
	if strings.Contains(nameOrYAML, "\n") {
		p, err = profile.Parse(strings.NewReader(nameOrYAML))
	} else {
		p, err = profile.Resolve(nameOrYAML)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func mustSim(tb testing.TB, yaml string) *emu.SimConfig {
	tb.Helper()
	c, err := emu.ParseSimConfig(strings.NewReader(yaml))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// rig is a Board served over net.Pipe, for model tests inside a synctest
// bubble (net.Pipe blocks durably, so fake time advances while the slave waits).
type rig struct {
	tb    testing.TB
	board *emu.Board
	conn  net.Conn
	slave byte
}

func newRig(tb testing.TB, p *profile.Profile, cfg *emu.SimConfig, o *emu.Opts) *rig {
	tb.Helper()
	if o == nil {
		o = &emu.Opts{}
	}
	o.FrameGap = time.Second // fewer idle wake-ups over long fake sleeps
	o.Tick = time.Second
	b, err := emu.NewBoard(p, cfg, o)
	if err != nil {
		tb.Fatal(err)
	}
	ours, theirs := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.Serve(ctx, theirs) }()
	go func() { defer wg.Done(); b.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		ours.Close()
		theirs.Close()
		wg.Wait()
	})
	return &rig{tb: tb, board: b, conn: ours, slave: p.SlaveID}
}

// tx sends a request PDU and returns the response PDU.
func (r *rig) tx(pdu ...byte) []byte {
	r.tb.Helper()
	if _, err := r.conn.Write(modbus.AppendCRC(append([]byte{r.slave}, pdu...))); err != nil {
		r.tb.Fatal(err)
	}
	resp, err := readADU(r.conn)
	if err != nil {
		r.tb.Fatalf("request % x: %v", pdu, err)
	}
	return resp[1 : len(resp)-2]
}

// readADU reads one response frame, framed by its function code.
func readADU(rd io.Reader) ([]byte, error) {
	head := make([]byte, 3)
	if _, err := io.ReadFull(rd, head); err != nil {
		return nil, err
	}
	var rest int
	switch fc := head[1]; {
	case fc&0x80 != 0:
		rest = 2
	case fc <= 4:
		rest = int(head[2]) + 2
	default:
		rest = 5
	}
	tail := make([]byte, rest)
	if _, err := io.ReadFull(rd, tail); err != nil {
		return nil, err
	}
	adu := append(head, tail...)
	if !modbus.CheckCRC(adu) {
		return adu, io.ErrUnexpectedEOF
	}
	return adu, nil
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func (r *rig) writeCoil(addr uint16, on bool) {
	r.tb.Helper()
	v := uint16(0)
	if on {
		v = 0xFF00
	}
	pdu := append(append([]byte{modbus.FuncWriteSingleCoil}, u16(addr)...), u16(v)...)
	if got := r.tx(pdu...); got[0] != modbus.FuncWriteSingleCoil {
		r.tb.Fatalf("write coil %d: % x", addr, got)
	}
}

func (r *rig) writeReg(addr, v uint16) {
	r.tb.Helper()
	pdu := append(append([]byte{modbus.FuncWriteSingleRegister}, u16(addr)...), u16(v)...)
	if got := r.tx(pdu...); got[0] != modbus.FuncWriteSingleRegister {
		r.tb.Fatalf("write register %d: % x", addr, got)
	}
}

func (r *rig) readInput(addr uint16) bool {
	r.tb.Helper()
	pdu := append(append([]byte{modbus.FuncReadDiscreteInputs}, u16(addr)...), u16(1)...)
	got := r.tx(pdu...)
	if got[0] != modbus.FuncReadDiscreteInputs {
		r.tb.Fatalf("read input %d: % x", addr, got)
	}
	return got[2]&1 != 0
}

func (r *rig) readInputRegs(addr, qty uint16) []uint16 {
	r.tb.Helper()
	pdu := append(append([]byte{modbus.FuncReadInputRegisters}, u16(addr)...), u16(qty)...)
	got := r.tx(pdu...)
	if got[0] != modbus.FuncReadInputRegisters {
		r.tb.Fatalf("read input registers %d: % x", addr, got)
	}
	var out []uint16
	for i := 0; i < int(qty); i++ {
		out = append(out, binary.BigEndian.Uint16(got[2+2*i:]))
	}
	return out
}

func (r *rig) do(req emu.Request) *emu.Status {
	r.tb.Helper()
	resp := r.board.Do(req)
	if !resp.OK {
		r.tb.Fatalf("Do(%+v): %s", req, resp.Error)
	}
	return resp.Status
}

func machine(tb testing.TB, s emu.Status, name string) emu.MachineStatus {
	tb.Helper()
	for _, m := range s.Machines {
		if m.Name == name {
			return m
		}
	}
	tb.Fatalf("no machine %q in status", name)
	return emu.MachineStatus{}
}
