package pty_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"go.bug.st/serial"

	"beaconvend/hw/pty"
)

// Bytes written by a go.bug.st/serial port on the slave arrive unchanged at
// the master, and the other way round: no echo, no CR/LF translation.
func TestPairCarriesRawBytes(t *testing.T) {
	p, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	port, err := serial.Open(p.SlavePath, &serial.Mode{BaudRate: 9600})
	if err != nil {
		t.Fatalf("serial.Open(%s): %v", p.SlavePath, err)
	}
	defer port.Close()
	msg := []byte{0x01, 0x03, 0x00, 0x0d, 0x0a, 0x11, 0x13, 0x03, 0xff, 0x00}
	if _, err := port.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	p.Master.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(p.Master, got); err != nil {
		t.Fatalf("master read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("slave→master = %x, want %x", got, msg)
	}
	if _, err := p.Master.Write(msg); err != nil {
		t.Fatal(err)
	}
	port.SetReadTimeout(100 * time.Millisecond)
	var back []byte
	deadline := time.Now().Add(2 * time.Second)
	buf := make([]byte, 64)
	for len(back) < len(msg) && time.Now().Before(deadline) {
		n, err := port.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, buf[:n]...)
	}
	if !bytes.Equal(back, msg) {
		t.Fatalf("master→slave = %x, want %x", back, msg)
	}
}
