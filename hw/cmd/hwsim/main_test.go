package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"beaconvend/hw/emu"
	"beaconvend/hw/modbus"
)

// lineSink hands each write to the test over a channel.
type lineSink struct {
	ch chan []byte
}

func (b *lineSink) Write(p []byte) (int, error) {
	b.ch <- append([]byte(nil), p...)
	return len(p), nil
}

func TestMainJSONLineAndEndToEnd(t *testing.T) {
	out := &lineSink{ch: make(chan []byte, 16)}
	var errBuf bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = out, &errBuf
	if err := m.ParseFlags([]string{"-sim", "water", "-json", "-modem", "-comm-timeout", "5s"}); err != nil {
		t.Fatal(err)
	}
	m.Stderr = os.Stderr // logs after ParseFlags go through m.Logger
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	var line []byte
	select {
	case line = <-out.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no JSON line")
	}
	var paths Paths
	if err := json.Unmarshal(line, &paths); err != nil {
		t.Fatalf("JSON line %q: %v", line, err)
	}
	if !strings.HasPrefix(paths.Board, "/dev/pts/") || !strings.HasPrefix(paths.Modem, "/dev/pts/") || !strings.HasSuffix(paths.Control, ".sock") {
		t.Fatalf("paths = %+v", paths)
	}

	// The board: open the valve with a raw frame.
	port, err := serial.Open(paths.Board, &serial.Mode{BaudRate: 19200, Parity: serial.EvenParity})
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	req := modbus.AppendCRC([]byte{1, modbus.FuncWriteSingleCoil, 0, 0, 0xFF, 0})
	if _, err := port.Write(req); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, port, len(req)); !bytes.Equal(got, req) {
		t.Fatalf("write coil reply % x, want % x", got, req)
	}

	// The truth through the control socket.
	ctl, err := emu.Dial(paths.Control)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	st, err := ctl.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Board != "pulse-io-4" || !st.Coils["out1"] || len(st.Machines) != 1 || !st.Machines[0].Water.ValveOpen || st.CommTimeoutMS != 5000 {
		t.Fatalf("status = %+v", st)
	}

	// The modem, and a modem fault through the same socket.
	if _, err := ctl.Do(emu.Request{Cmd: "modem_signal", Value: new(12)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Do(emu.Request{Cmd: "modem_signal"}); !errors.Is(err, emu.ErrRequest) {
		t.Errorf("modem_signal without value: %v", err)
	}
	mp, err := serial.Open(paths.Modem, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Close()
	if _, err := mp.Write([]byte("AT+CSQ\r")); err != nil {
		t.Fatal(err)
	}
	if got := readUntil(t, mp, "OK\r\n"); !strings.Contains(got, "+CSQ: 12,") {
		t.Errorf("AT+CSQ → %q", got)
	}
}

func readN(t *testing.T, p serial.Port, n int) []byte {
	t.Helper()
	p.SetReadTimeout(50 * time.Millisecond)
	var got []byte
	buf := make([]byte, 64)
	for deadline := time.Now().Add(5 * time.Second); len(got) < n && time.Now().Before(deadline); {
		k, err := p.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:k]...)
	}
	return got
}

func readUntil(t *testing.T, p serial.Port, suffix string) string {
	t.Helper()
	p.SetReadTimeout(50 * time.Millisecond)
	var got []byte
	buf := make([]byte, 256)
	for deadline := time.Now().Add(5 * time.Second); !strings.HasSuffix(string(got), suffix) && time.Now().Before(deadline); {
		k, err := p.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:k]...)
	}
	return string(got)
}

func TestParseFlags(t *testing.T) {
	var errBuf bytes.Buffer
	m := NewMain()
	m.Stderr = &errBuf
	if err := m.ParseFlags([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	help := errBuf.String()
	for _, want := range []string{"-profile", "-sim", "-comm-timeout", "-json", "-modem", "corrupt_crc", "stuck_input", "expire_lease", "k_factor", "pulse-io-4", "washers"} {
		if !strings.Contains(help, want) {
			t.Errorf("-h does not mention %q", want)
		}
	}
	if err := NewMain().ParseFlags([]string{"extra"}); err == nil {
		t.Error("stray argument accepted")
	}
	m = NewMain()
	m.Stderr = &errBuf
	if err := m.ParseFlags([]string{"-sim", "nope"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "no built-in sim config") {
		m.Close()
		t.Errorf("-sim nope: %v", err)
	}
}
