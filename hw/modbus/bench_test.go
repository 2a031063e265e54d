package modbus_test

import (
	"context"
	"testing"
	"time"

	"beaconvend/hw/modbus"
)

// A poll as the controller runs it: read 8 coils (the relays) and 2 input
// registers (a 32-bit pulse counter). On the wire: 8+6 bytes, then 8+9.
const pollWireBytes = 8 + 6 + 8 + 9

// benchmarkPoll polls the in-test board over a real pty. The board sleeps
// as long as request and reply would take at baud (10 bits per character),
// so the figures approach what a real line allows. Reported:
//   - polls/s;
//   - line-rate-ratio: the time the poll's bytes alone need at baud/10
//     characters per second, divided by the measured time per poll. 1.0
//     would be a line never idle; the rest is the two inter-frame gaps
//     (3.5 characters each, 1.75 ms above 19200 baud) and scheduling.
func benchmarkPoll(b *testing.B, baud int) {
	o := modbus.DefaultOpts
	o.Baud = baud
	o.Retries = 0
	r := newRig(b, baud, &o)
	serveBoard(b, r.Line, &board{ID: 1, Baud: baud})
	ctx := context.Background()
	b.ReportAllocs()
	polls := 0
	for b.Loop() {
		if _, err := r.M.ReadCoils(ctx, 1, 0, 8); err != nil {
			b.Fatal(err)
		}
		if _, err := r.M.ReadInputRegisters(ctx, 1, 0, 2); err != nil {
			b.Fatal(err)
		}
		polls++
	}
	perPoll := b.Elapsed() / time.Duration(polls)
	bound := time.Duration(pollWireBytes) * time.Second / time.Duration(baud/10)
	b.ReportMetric(float64(time.Second)/float64(perPoll), "polls/s")
	b.ReportMetric(float64(bound)/float64(perPoll), "line-rate-ratio")
	if s := r.M.Stats(); s.Failed != 0 || s.Retries != 0 {
		b.Errorf("Stats() = %+v, want a clean run", s)
	}
}

func BenchmarkPoll9600(b *testing.B)   { benchmarkPoll(b, 9600) }
func BenchmarkPoll115200(b *testing.B) { benchmarkPoll(b, 115200) }

// BenchmarkParseResponse is the parser alone, on a 125-register reply.
func BenchmarkParseResponse(b *testing.B) {
	req := modbus.Request{Slave: 1, Function: modbus.FuncReadHoldingRegisters, Qty: 125}
	f := append([]byte{1, 3, 250}, make([]byte, 250)...)
	f = modbus.AppendCRC(f)
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		if _, err := modbus.ParseResponse(req, f); err != nil {
			b.Fatal(err)
		}
	}
}
