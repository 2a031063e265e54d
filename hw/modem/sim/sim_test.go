package sim_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"beaconvend/hw/modem/sim"
)

// driver is the serial end of the emulator, as the monitor opens it.
type driver struct {
	tb   testing.TB
	port serial.Port
	buf  []byte
}

func open(tb testing.TB, opts *sim.Opts) (*sim.Modem, *driver) {
	tb.Helper()
	m, err := sim.New(opts)
	if err != nil {
		tb.Fatalf("sim.New: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	p, err := serial.Open(m.Path(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		tb.Fatalf("serial.Open(%s): %v", m.Path(), err)
	}
	tb.Cleanup(func() { p.Close() })
	p.SetReadTimeout(50 * time.Millisecond)
	return m, &driver{tb: tb, port: p}
}

// until reads until the received bytes contain want, for up to 3 s, and
// returns everything read so far (and forgets it).
func (d *driver) until(want string) string {
	d.tb.Helper()
	deadline := time.Now().Add(3 * time.Second)
	b := make([]byte, 256)
	for !bytes.Contains(d.buf, []byte(want)) {
		if time.Now().After(deadline) {
			d.tb.Fatalf("waiting for %q: got %q", want, d.buf)
		}
		n, err := d.port.Read(b)
		if err != nil {
			d.tb.Fatalf("read: %v", err)
		}
		d.buf = append(d.buf, b[:n]...)
	}
	s := string(d.buf)
	d.buf = nil
	return s
}

// quiet reads for d and returns what arrived.
func (d *driver) quiet(dur time.Duration) string {
	end := time.Now().Add(dur)
	b := make([]byte, 256)
	for time.Now().Before(end) {
		n, err := d.port.Read(b)
		if err != nil {
			d.tb.Fatalf("read: %v", err)
		}
		d.buf = append(d.buf, b[:n]...)
	}
	s := string(d.buf)
	d.buf = nil
	return s
}

func (d *driver) send(cmd string) {
	if _, err := d.port.Write([]byte(cmd + "\r")); err != nil {
		d.tb.Fatalf("write %q: %v", cmd, err)
	}
}

func TestCommands(t *testing.T) {
	m, d := open(t, nil)
	steps := []struct{ cmd, want string }{
		{"AT", "AT\r\r\nOK\r\n"}, // echo on at power-up
		{"ATE0", "ATE0\r\r\nOK\r\n"},
		{"AT+CSQ", "\r\n+CSQ: 20,0\r\n\r\nOK\r\n"},
		{"AT+CESQ", "\r\n+CESQ: 99,99,255,255,20,43\r\n\r\nOK\r\n"},
		{"AT+CREG?", "\r\n+CREG: 0,1\r\n\r\nOK\r\n"},
		{"AT+CEREG=2", "\r\nOK\r\n"},
		{"AT+CEREG?", "\r\n+CEREG: 2,1,\"1A2B\",\"01C3D4E5\",7\r\n\r\nOK\r\n"},
		{"AT+COPS?", "\r\n+COPS: 0,0,\"Beacon Mobile\",7\r\n\r\nOK\r\n"},
		{"AT+CGSN", "\r\n490154203237518\r\n\r\nOK\r\n"},
		{"AT+CCID", "\r\n+CCID: 8944500102198304826\r\n\r\nOK\r\n"},
		{"AT+ICCID", "\r\nICCID: 8944500102198304826\r\n\r\nOK\r\n"},
		{"ATI", "\r\nbeaconvend\r\nSIM-AT\r\nRevision: SIMAT01R01\r\n\r\nOK\r\n"},
		{"AT+FOO", "\r\nERROR\r\n"},
		{"AT+CREG=7", "\r\n+CME ERROR: 50\r\n"},
		{"ATE1", "\r\nOK\r\n"},
		{"at+csq", "at+csq\r\r\n+CSQ: 20,0\r\n\r\nOK\r\n"},
	}
	for _, s := range steps {
		d.send(s.cmd)
		if got := d.until(s.want[len(s.want)-4:]); got != s.want {
			t.Errorf("%s → %q, want %q", s.cmd, got, s.want)
		}
	}
	if n := m.Count("AT+CSQ"); n != 2 {
		t.Errorf("Count(AT+CSQ) = %d, want 2", n)
	}
}

func TestControls(t *testing.T) {
	m, d := open(t, &sim.Opts{NoEcho: true, IMEI: "356938035643809", Operator: "Test Net"})
	d.send("AT+CREG=1")
	d.until("OK\r\n")
	d.send("AT+CEREG=2")
	d.until("OK\r\n")

	m.LoseSignal()
	if got := d.until("+CEREG: 2\r\n"); !strings.Contains(got, "+CREG: 2\r\n") {
		t.Errorf("LoseSignal URCs = %q, want +CREG: 2 and +CEREG: 2", got)
	}
	d.send("AT+CSQ")
	if got := d.until("OK\r\n"); !strings.Contains(got, "+CSQ: 99,99") {
		t.Errorf("CSQ without signal = %q", got)
	}
	d.send("AT+COPS?")
	if got := d.until("OK\r\n"); !strings.Contains(got, "+COPS: 0\r\n") {
		t.Errorf("COPS without signal = %q", got)
	}
	m.Register(true)
	if got := d.until("+CEREG: 5,\"1A2B\",\"01C3D4E5\",7\r\n"); !strings.Contains(got, "+CREG: 5\r\n") {
		t.Errorf("roaming URCs = %q", got)
	}
	m.SetSignal(31)
	d.send("AT+CSQ")
	d.until("+CSQ: 31,0")
	d.send("AT+CGSN")
	d.until("356938035643809")
	d.send("AT+COPS?")
	d.until(`"Test Net"`)

	m.Silent(true)
	d.send("AT")
	if got := d.quiet(300 * time.Millisecond); got != "" {
		t.Errorf("silent modem sent %q", got)
	}
	m.Silent(false)
	m.SlowReply(200 * time.Millisecond)
	start := time.Now()
	d.send("AT")
	d.until("OK\r\n")
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("slow reply after %v, want ≥ 200ms", el)
	}
	m.SlowReply(0)

	m.Garbage(64)
	if got := d.quiet(200 * time.Millisecond); len(got) != 64 {
		t.Errorf("Garbage(64) sent %d bytes", len(got))
	}
	m.URC("RING")
	d.until("\r\nRING\r\n")
}

func TestCloseUnplugs(t *testing.T) {
	m, d := open(t, nil)
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	b := make([]byte, 16)
	for {
		if _, err := d.port.Read(b); err != nil {
			return // the driver sees the port go away
		}
		if time.Now().After(deadline) {
			t.Fatal("driver did not see the closed pty")
		}
	}
}

func TestBadOpts(t *testing.T) {
	for _, o := range []sim.Opts{{CSQ: 40}, {Act: 14}} {
		if m, err := sim.New(&o); err == nil {
			m.Close()
			t.Errorf("sim.New(%+v) succeeded", o)
		}
	}
}
