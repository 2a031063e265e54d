//go:build !linux

package ble

import (
	"net"
	"net/netip"
)

// listenAir joins the group on the loopback interface. Outside Linux this
// is best effort: the standard library cannot bind the group address or
// turn IP_MULTICAST_ALL off, so keep groups on different ports.
func listenAir(g netip.AddrPort) (net.PacketConn, error) {
	lo, err := loopback()
	if err != nil {
		return nil, err
	}
	return net.ListenMulticastUDP("udp4", lo, net.UDPAddrFromAddrPort(g))
}

// dialAir opens a sending socket on 127.0.0.1; the route to the group must
// lead to the loopback interface (it does on macOS and the BSDs when
// 224.0.0.0/4 is routed to lo0, else add that route).
func dialAir(netip.AddrPort) (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
}

func loopback() (*net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifs {
		if ifs[i].Flags&net.FlagLoopback != 0 {
			return &ifs[i], nil
		}
	}
	return nil, ErrUnsupported
}
