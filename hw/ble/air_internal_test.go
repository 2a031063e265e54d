package ble

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// TestAirScannerDropsMalformed sends junk on the air, which only code in the
// package can (dialAir), and checks the scanner counts it, keeps going and
// still hears a good datagram.
func TestAirScannerDropsMalformed(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	g, err := AirGroup(fmt.Sprintf("239.255.%d.%d:%d", rand.IntN(256), 1+rand.IntN(254), port))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewAirScanner(&AirOpts{Group: g.String()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got := make(chan Report, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- s.Scan(ctx, func(r Report) {
			select {
			case got <- r:
			default:
			}
		})
	}()
	time.Sleep(50 * time.Millisecond)
	tx, err := dialAir(g)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	good, _ := Datagram{Addr: [6]byte{0xC0, 0, 0, 0, 0, 9}, RSSI: -40, Adv: []byte{2, 1, 6}}.MarshalBinary()
	for _, b := range [][]byte{{}, {0xFF}, []byte("BV\x01\x00garbage"), make([]byte, 4000), good} {
		if _, err := tx.WriteToUDPAddrPort(b, g); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-got:
		if r.Addr != "c0:00:00:00:00:09" || r.RSSI != -40 || string(r.Data) != "\x02\x01\x06" || r.ScanResp != nil {
			t.Errorf("report %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("no report for the good datagram")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Scan() = %v", err)
	}
	if st := s.Stats(); st.Malformed != 4 || st.Received != 1 {
		t.Errorf("Stats() = %+v, want 4 malformed, 1 received", st)
	}
}
