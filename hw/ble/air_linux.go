package ble

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// loopbackIndex returns the interface index of the loopback interface.
func loopbackIndex() (int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 {
			return i.Index, nil
		}
	}
	return 0, fmt.Errorf("no loopback interface is up")
}

// listenAir opens a socket bound to the group address itself (so that
// unicast datagrams to the port, from this host or any other, are not
// delivered) and joins the group on the loopback interface. SO_REUSEADDR
// lets any number of sockets bind the same group and port; the kernel
// delivers each multicast datagram to all of them (unlike unicast with
// SO_REUSEPORT, which picks one). IP_MULTICAST_ALL off keeps a socket from
// hearing other groups that other sockets joined on the same port.
func listenAir(g netip.AddrPort) (net.PacketConn, error) {
	lo, err := loopbackIndex()
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	ga := g.Addr().As4()
	steps := []struct {
		name string
		fn   func() error
	}{
		{"SO_REUSEADDR", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) }},
		{"IP_MULTICAST_ALL", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0) }},
		{"bind", func() error { return unix.Bind(fd, &unix.SockaddrInet4{Port: int(g.Port()), Addr: ga}) }},
		{"IP_ADD_MEMBERSHIP", func() error {
			return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
				&unix.IPMreqn{Multiaddr: ga, Address: [4]byte{127, 0, 0, 1}, Ifindex: int32(lo)})
		}},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			unix.Close(fd)
			return nil, os.NewSyscallError(s.name, err)
		}
	}
	return filePacketConn(fd)
}

// dialAir opens a sending socket bound to 127.0.0.1 whose multicast leaves
// through the loopback interface only (IP_MULTICAST_IF), loops back to this
// host's listeners (IP_MULTICAST_LOOP) and never crosses a router
// (IP_MULTICAST_TTL 0). It works although lo has no MULTICAST flag.
func dialAir(g netip.AddrPort) (*net.UDPConn, error) {
	lo, err := loopbackIndex()
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		f := int(fd)
		if serr = unix.SetsockoptIPMreqn(f, unix.IPPROTO_IP, unix.IP_MULTICAST_IF,
			&unix.IPMreqn{Address: [4]byte{127, 0, 0, 1}, Ifindex: int32(lo)}); serr != nil {
			serr = os.NewSyscallError("IP_MULTICAST_IF", serr)
			return
		}
		if serr = unix.SetsockoptInt(f, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 1); serr != nil {
			serr = os.NewSyscallError("IP_MULTICAST_LOOP", serr)
			return
		}
		if serr = unix.SetsockoptInt(f, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 0); serr != nil {
			serr = os.NewSyscallError("IP_MULTICAST_TTL", serr)
		}
	})
	if err := firstErr(cerr, serr); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func filePacketConn(fd int) (net.PacketConn, error) {
	f := os.NewFile(uintptr(fd), "ble-air")
	defer f.Close()
	return net.FilePacketConn(f)
}
