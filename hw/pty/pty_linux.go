package pty

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Pair is one pseudo-terminal: Master is the emulator's end; SlavePath
// (/dev/pts/N) is what a serial driver opens.
type Pair struct {
	Master    *os.File
	SlavePath string
	slave     *os.File // held open so Master reads do not fail with EIO while no driver has the slave
}

// Open allocates a pseudo-terminal pair with the slave in raw mode (no echo,
// no line editing, no CR/LF translation, 8 data bits), so that bytes pass
// unchanged even before a serial driver configures it.
func Open() (*Pair, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pty: open /dev/ptmx: %w", err)
	}
	fail := func(step string, err error) (*Pair, error) {
		m.Close()
		return nil, fmt.Errorf("pty: %s: %w", step, err)
	}
	rc, err := m.SyscallConn()
	if err != nil {
		return fail("syscall conn", err)
	}
	var n uint32
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr != nil {
			return
		}
		n, ierr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
	}); err != nil {
		return fail("control", err)
	}
	if ierr != nil {
		return fail("unlock/ptsname", ierr)
	}
	path := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	s, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("open "+path, err)
	}
	if err := MakeRaw(s); err != nil {
		s.Close()
		return fail("raw mode", err)
	}
	return &Pair{Master: m, SlavePath: path, slave: s}, nil
}

// MakeRaw puts a terminal in raw mode, as cfmakeraw(3) does.
func MakeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			ierr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		ierr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	return ierr
}

// Close closes both ends. A driver that still has the slave open then reads
// EOF or EIO, as when a USB adapter is unplugged.
func (p *Pair) Close() error {
	err1 := p.Master.Close()
	err2 := p.slave.Close()
	if err1 != nil {
		return err1
	}
	return err2
}
