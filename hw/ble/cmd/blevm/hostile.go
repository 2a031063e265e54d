package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"strconv"
	"time"

	goble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/gatt"
	"beaconvend/hw/ble/goble/linux/hci"
)

// hostilePDU is one malformed or abusive ATT request and what a sound
// server answers: the response opcode, or an Error Response (0x01) with
// this error code (0 = any).
type hostilePDU struct {
	name    string
	pdu     []byte
	rspOp   byte // the expected response opcode; 0x01 for an error
	errCode byte // with rspOp 0x01: the expected error, 0 for any
}

// hostileSet is what blevm hostile sends, in order: the malformed PDUs
// that crashed or hung upstream go-ble (Execute Write on an empty queue,
// a 1-byte CCCD write, a read past a value's end, unbounded and gapped
// long writes) and a few more, then the relay's own refusals.
func hostileSet(grant, cccd, info uint16) []hostilePDU {
	le := func(h uint16) []byte { return []byte{byte(h), byte(h >> 8)} }
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	prep := func(h, off uint16, n int) []byte {
		return cat([]byte{0x16}, le(h), le(off), make([]byte, n))
	}
	set := []hostilePDU{
		{"execute-write-empty-queue", []byte{0x18, 0x01}, 0x19, 0},
		{"execute-write-short", []byte{0x18}, 0x01, 0x04},
		{"write-cccd-1-byte", cat([]byte{0x12}, le(cccd), []byte{0x01}), 0x01, 0x0d},
		{"write-no-handle", []byte{0x12}, 0x01, 0x04},
		{"prepare-write-short", []byte{0x16, 0x01}, 0x01, 0x04},
		{"read-blob-past-end", cat([]byte{0x0c}, le(info), le(0xfff0)), 0x01, 0x07},
		{"read-handle-0", []byte{0x0a, 0x00, 0x00}, 0x01, 0x01},
		{"unknown-request", []byte{0x3f, 0xaa}, 0x01, 0x06},
	}
	// A long write over 512 bytes: three 180-byte parts, then execute.
	for i := range 3 {
		set = append(set, hostilePDU{"long-write-part-" + strconv.Itoa(i), prep(grant, uint16(180*i), 180), 0x17, 0})
	}
	set = append(set, hostilePDU{"long-write-over-512-execute", []byte{0x18, 0x01}, 0x01, 0x0d})
	// A long write with a gap: offsets 0 and 100 for a 10-byte first part.
	set = append(set,
		hostilePDU{"gapped-part-0", prep(grant, 0, 10), 0x17, 0},
		hostilePDU{"gapped-part-100", prep(grant, 100, 10), 0x17, 0},
		hostilePDU{"gapped-execute", []byte{0x18, 0x01}, 0x01, 0x07},
		// The relay's own: a chunk shorter than its header, a chunk out of step.
		hostilePDU{"grant-chunk-short", cat([]byte{0x12}, le(grant), []byte{0x00, 0x00, 0x01}), 0x01, 0},
		hostilePDU{"grant-chunk-out-of-step", cat([]byte{0x12}, le(grant), []byte{0x00, 0x05, 0x00, 0x06, 0xaa}), 0x01, 0},
	)
	return set
}

// hostile connects to addr from adapter hci<idx> as a central and sends
// hostileSet, one request at a time, printing one HOSTILE line per PDU
// with the answer and whether it is the sound one; then it subscribes to
// the CCCD's notifications and disconnects at once, in the middle of the
// notification a subscription starts.
func hostile(args []string) error {
	fs := flag.NewFlagSet("hostile", flag.ExitOnError)
	idx := fs.Int("hci", 2, "adapter index")
	addr := fs.String("addr", "", "the peripheral's public address")
	grant := fs.String("grant", "", "the Grant characteristic's value handle (0x…)")
	cccd := fs.String("cccd", "", "a CCCD handle (0x…)")
	info := fs.String("info", "", "a readable characteristic's value handle (0x…)")
	random := fs.Bool("random", true, "addr is a random address (boards advertise from one); false: public")
	fs.Parse(args)
	hs := make([]uint16, 3)
	for i, s := range []string{*grant, *cccd, *info} {
		v, err := strconv.ParseUint(s, 0, 16)
		if err != nil {
			return fmt.Errorf("hostile: handle %q: %w", s, err)
		}
		hs[i] = uint16(v)
	}
	dev, err := hci.NewHCI(goble.OptDeviceID(*idx))
	if err != nil {
		return err
	}
	if err := dev.Init(); err != nil {
		return err
	}
	defer dev.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var a goble.Addr = goble.NewAddr(*addr)
	if *random {
		a = hci.RandomAddress{Addr: a}
	}
	cl, err := dev.Dial(ctx, a)
	if err != nil {
		return fmt.Errorf("hostile: dial %s: %w", *addr, err)
	}
	gc, ok := cl.(*gatt.Client)
	if !ok {
		return fmt.Errorf("hostile: client %T", cl)
	}
	if _, err := gc.ExchangeMTU(247); err != nil {
		fmt.Printf("BLEVM HOSTILE mtu err=%q\n", err.Error())
	}
	sound := 0
	set := hostileSet(hs[0], hs[1], hs[2])
	for _, h := range set {
		rsp, err := gc.ATT().Request(h.pdu)
		ok := err == nil && len(rsp) > 0 && rsp[0] == h.rspOp &&
			(h.rspOp != 0x01 || h.errCode == 0 || len(rsp) == 5 && rsp[4] == h.errCode)
		if ok {
			sound++
		}
		fmt.Printf("BLEVM HOSTILE name=%s pdu=%s rsp=%s err=%v sound=%t\n", h.name, hex.EncodeToString(h.pdu), hex.EncodeToString(rsp), err, ok)
		if err != nil {
			break // the link is gone: the rest cannot be asked
		}
	}
	// Last: subscribe to notifications with a Write Command (no answer to
	// wait for) and drop the link at once, while the board's first
	// notification (sent on subscribe) is on its way: the disconnection in
	// the middle of a notification that deadlocked upstream go-ble.
	werr := gc.ATT().WriteCommand(hs[1], []byte{0x01, 0x00})
	cerr := cl.CancelConnection()
	fmt.Printf("BLEVM HOSTILE name=subscribe-then-drop write=%v disconnect=%v\n", werr, cerr)
	fmt.Printf("BLEVM HOSTILEEND sent=%d sound=%d\n", len(set), sound)
	return nil
}
