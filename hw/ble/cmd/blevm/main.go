// Command blevm exercises the hw/ble HCI backend on a real Linux Bluetooth
// stack: scripts/ble-vm-test.sh runs it inside a qemu VM whose btvirt
// virtual controllers share one simulated radio (see hw/ble/VM.md). Built
// static (CGO_ENABLED=0) so that it needs nothing in the VM's initrd.
//
// Modes, each printing machine-readable lines that start with "BLEVM ":
//
//	blevm advertise [-hci 0] [-key HEX] [-k 2] [-busy-after 2] [-duration 20s]
//	    the real Beacon (NewBeacon over OpenAdvertiser hci) advertising a
//	    fixed test identity with short windows; idle at first, busy half a
//	    window into the (busy-after+1)-th window it puts on air.
//	blevm scan [-hci 1] [-duration 20s]
//	    the product's scanner (OpenScanner hci), frames decoded with
//	    beacon.Decode: one line per distinct frame, then a summary per frame.
//	blevm ids [-key HEX] [-k 2] -from UNIX -to UNIX
//	    the expected proximity IDs for every window overlapping [from, to].
//	blevm gatt [-hci 0] [-key HEX] [-k 2] [-idle 4s] [-duration 30s]
//	    the real Beacon and GATTHost with ble.TestService on the adapter's
//	    public address: connectable while waiting, non-connectable busy
//	    while a central is connected. Prints the service's handles
//	    (GATTHANDLES), every change on air with the link (GATTAIR), and a
//	    summary (GATTEND) with the host's counters and the service's value.
//	blevm hostile [-hci 2] -addr ADDR [-random=false] -grant 0x… -cccd 0x… -info 0x…
//	    a hostile central on go-ble's HCI (the fork's raw ATT requests):
//	    connects, exchanges MTU 247 and sends the malformed PDUs that
//	    crashed or hung upstream go-ble (hostileSet), one HOSTILE line per
//	    PDU with the answer and whether it is the sound one, then a
//	    summary (HOSTILEEND).
//	blevm perms [-hci 0] [-uid 65534]
//	    opens the adapter as root, as an unprivileged uid, and as that uid
//	    with ambient CAP_NET_ADMIN+CAP_NET_RAW, and reports each outcome.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/proxid"
	"beaconvend/hw/ble"
)

// TestKey is the fixed identity key of the VM test (never a real device's).
const TestKey = "000102030405060708090a0b0c0d0e0f"

func main() {
	log.SetFlags(log.Lmicroseconds) // go-ble's own log lines
	if len(os.Args) < 2 {
		usage()
	}
	mode, args := os.Args[1], os.Args[2:]
	var err error
	switch mode {
	case "advertise":
		err = advertise(args)
	case "scan":
		err = scan(args)
	case "ids":
		err = ids(args)
	case "gatt":
		err = serveGATT(args)
	case "hostile":
		err = hostile(args)
	case "perms":
		err = perms(args)
	case "perm-child":
		err = permChild(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Printf("BLEVM ERROR mode=%s err=%q\n", mode, err.Error())
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: blevm advertise|scan|gatt|hostile|ids|perms [flags] (see go doc beaconvend/hw/ble/cmd/blevm)")
	os.Exit(2)
}

func unixMilli(t time.Time) string { return fmt.Sprintf("%.3f", float64(t.UnixMilli())/1000) }

func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func signalContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); stop() }
}

func advertise(args []string) error {
	fs := flag.NewFlagSet("advertise", flag.ExitOnError)
	idx := fs.Int("hci", 0, "adapter index")
	keyHex := fs.String("key", TestKey, "identity key, 32 hex digits")
	k := fs.Uint("k", 2, "rotation exponent: windows of 2^k s")
	busyAfter := fs.Int("busy-after", 2, "windows on air before the state turns busy")
	dur := fs.Duration("duration", 20*time.Second, "how long to advertise")
	fs.Parse(args)
	key, err := proxid.ParseKey(*keyHex)
	if err != nil {
		return err
	}
	adv, err := ble.OpenAdvertiser(ble.Config{Backend: ble.BackendHCI, HCI: *idx}, logger())
	if err != nil {
		return err
	}
	o := ble.DefaultBeaconOpts()
	o.State = beacon.Idle
	o.Logger = logger()
	b, err := ble.NewBeacon(adv, &proxid.Rotator{Key: key, K: uint8(*k)}, o)
	if err != nil {
		adv.Close()
		return err
	}
	fmt.Printf("BLEVM ADVSTART at=%s hci=%d k=%d busy_after=%d duration=%s\n", unixMilli(time.Now()), *idx, *k, *busyAfter, *dur)

	ctx, cancel := signalContext(*dur)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx) }()

	window := time.Duration(1<<*k) * time.Second
	var (
		last     []byte
		ids      = map[proxid.ID]bool{}
		busyAt   time.Time
		busyDone bool
	)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		f, on := b.OnAir()
		if on {
			enc, _ := f.Encode()
			if string(enc) != string(last) {
				last = enc
				now := time.Now()
				fmt.Printf("BLEVM ONAIR at=%s window=%d state=%s id=%s adv=%x\n", unixMilli(now), proxid.Window(now, uint8(*k)), f.State, hex.EncodeToString(f.ID[:]), enc)
				if !ids[f.ID] {
					ids[f.ID] = true
					if len(ids) == *busyAfter+1 && busyAt.IsZero() {
						busyAt = now.Add(window / 2)
					}
				}
			}
		}
		if !busyDone && !busyAt.IsZero() && time.Now().After(busyAt) {
			busyDone = true
			t0 := time.Now()
			err := b.SetState(beacon.Busy)
			fmt.Printf("BLEVM SETSTATE at=%s state=busy took=%s err=%v\n", unixMilli(t0), time.Since(t0).Round(time.Millisecond), err)
		}
	}
	err = <-runErr
	st := b.Stats()
	cerr := b.Close()
	fmt.Printf("BLEVM ADVEND at=%s updates=%d rotations=%d errors=%d lasterr=%q run=%v close=%v\n",
		unixMilli(time.Now()), st.Updates, st.Rotations, st.Errors, fmt.Sprint(st.LastErr), err, cerr)
	if st.Errors > 0 || cerr != nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("advertise: %d errors, last %v; run %v; close %v", st.Errors, st.LastErr, err, cerr)
	}
	return nil
}

func serveGATT(args []string) error {
	fs := flag.NewFlagSet("gatt", flag.ExitOnError)
	idx := fs.Int("hci", 0, "adapter index")
	keyHex := fs.String("key", TestKey, "identity key, 32 hex digits")
	k := fs.Uint("k", 2, "rotation exponent: windows of 2^k s")
	idle := fs.Duration("idle", 4*time.Second, "idle timeout of a silent central")
	dur := fs.Duration("duration", 30*time.Second, "how long to serve")
	fs.Parse(args)
	key, err := proxid.ParseKey(*keyHex)
	if err != nil {
		return err
	}
	ho := ble.DefaultHCIOpts()
	ho.RandomAddress = false // the reference central dials the public address
	ho.Logger = logger()
	h, err := ble.OpenHCI(*idx, ho)
	if err != nil {
		return err
	}
	o := ble.DefaultBeaconOpts()
	o.State = beacon.Idle
	o.Logger = logger()
	b, err := ble.NewBeacon(h, &proxid.Rotator{Key: key, K: uint8(*k)}, o)
	if err != nil {
		h.Close()
		return err
	}
	ts := ble.NewTestService()
	host, err := ble.NewGATTHost(h, b, ts.Service, &ble.GATTOpts{IdleTimeout: *idle, Logger: logger()})
	if err != nil {
		b.Close()
		return err
	}
	fmt.Printf("BLEVM GATTSTART at=%s hci=%d k=%d idle=%s duration=%s\n", unixMilli(time.Now()), *idx, *k, *idle, *dur)
	ctx, cancel := signalContext(*dur)
	defer cancel()
	runErr, hostErr := make(chan error, 1), make(chan error, 1)
	go func() { runErr <- b.Run(ctx) }()
	go func() { hostErr <- host.Run(ctx) }()

	var last string
	handles := false
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		if c := ts.Service.Characteristics; !handles && c[2].CCCD != nil && c[2].CCCD.Handle != 0 {
			handles = true
			fmt.Printf("BLEVM GATTHANDLES read=0x%04x write=0x%04x notify=0x%04x cccd=0x%04x static=0x%04x\n",
				c[0].ValueHandle, c[1].ValueHandle, c[2].ValueHandle, c[2].CCCD.Handle, c[3].ValueHandle)
		}
		f, on := b.OnAir()
		enc, _ := f.Encode()
		cur := fmt.Sprintf("link=%s on=%v state=%s id=%s", b.Link(), on, f.State, hex.EncodeToString(f.ID[:]))
		if on && cur != last {
			last = cur
			fmt.Printf("BLEVM GATTAIR at=%s %s adv=%x\n", unixMilli(time.Now()), cur, enc)
		}
	}
	herr := <-hostErr
	err = <-runErr
	st, gs := b.Stats(), h.GATTStats()
	cerr := b.Close()
	fmt.Printf("BLEVM GATTEND at=%s updates=%d rotations=%d errors=%d lasterr=%q connections=%d refused=%d idle_drops=%d writes=%d subscriptions=%d value=%q run=%v host=%v close=%v\n",
		unixMilli(time.Now()), st.Updates, st.Rotations, st.Errors, fmt.Sprint(st.LastErr), gs.Connections, gs.Refused, gs.IdleDrops,
		ts.Writes(), ts.Subscriptions(), ts.Value(), err, herr, cerr)
	ok := func(e error) bool { return errors.Is(e, context.DeadlineExceeded) || errors.Is(e, context.Canceled) }
	if st.Errors > 0 || cerr != nil || !ok(err) || !ok(herr) {
		return fmt.Errorf("gatt: %d errors, last %v; run %v; host %v; close %v", st.Errors, st.LastErr, err, herr, cerr)
	}
	return nil
}

type frameStat struct {
	f           beacon.Frame
	first, last time.Time
	n           int
	addrs       map[string]bool
	minGap      time.Duration
	prev        time.Time
}

func scan(args []string) error {
	fs := flag.NewFlagSet("scan", flag.ExitOnError)
	idx := fs.Int("hci", 1, "adapter index")
	company := fs.Uint("company", uint(beacon.DefaultCompanyID), "company ID to decode")
	dur := fs.Duration("duration", 20*time.Second, "how long to scan")
	fs.Parse(args)
	sc, err := ble.OpenScanner(ble.Config{Backend: ble.BackendHCI, HCI: *idx}, logger())
	if err != nil {
		return err
	}
	h := sc.(*ble.HCI)
	fmt.Printf("BLEVM SCANSTART at=%s hci=%d duration=%s\n", unixMilli(time.Now()), *idx, *dur)
	ctx, cancel := signalContext(*dur)
	defer cancel()

	var (
		mu       sync.Mutex
		reports  int
		other    int
		badFrame int
		frames   = map[string]*frameStat{}
		order    []string
	)
	err = sc.Scan(ctx, func(r ble.Report) {
		mu.Lock()
		defer mu.Unlock()
		reports++
		f, derr := beacon.Decode(r.Data, uint16(*company))
		if derr != nil {
			if len(r.Data) > 0 && strings.Contains(hex.EncodeToString(r.Data), "ffffbc") {
				badFrame++
				fmt.Printf("BLEVM BADFRAME at=%s data=%x err=%q\n", unixMilli(r.At), r.Data, derr.Error())
			} else {
				other++
			}
			return
		}
		key := string(r.Data)
		s := frames[key]
		if s == nil {
			s = &frameStat{f: f, first: r.At, addrs: map[string]bool{}}
			frames[key] = s
			order = append(order, key)
			fmt.Printf("BLEVM FRAME at=%s addr=%s rssi=%d state=%s offline_capable=%v tx=%d id=%s adv=%x\n",
				unixMilli(r.At), r.Addr, r.RSSI, f.State, f.OfflineCapable, f.TxPower, hex.EncodeToString(f.ID[:]), r.Data)
		} else if gap := r.At.Sub(s.prev); s.minGap == 0 || gap < s.minGap {
			s.minGap = gap
		}
		s.prev, s.last = r.At, r.At
		s.n++
		s.addrs[r.Addr] = true
	})
	cerr := h.Close()
	mu.Lock()
	defer mu.Unlock()
	sort.SliceStable(order, func(i, j int) bool { return frames[order[i]].first.Before(frames[order[j]].first) })
	for _, key := range order {
		s := frames[key]
		span := s.last.Sub(s.first)
		mean := time.Duration(0)
		if s.n > 1 {
			mean = span / time.Duration(s.n-1)
		}
		addrs := make([]string, 0, len(s.addrs))
		for a := range s.addrs {
			addrs = append(addrs, a)
		}
		sort.Strings(addrs)
		fmt.Printf("BLEVM FRAMESUM state=%s id=%s first=%s last=%s reports=%d mean_gap=%s min_gap=%s addrs=%s\n",
			s.f.State, hex.EncodeToString(s.f.ID[:]), unixMilli(s.first), unixMilli(s.last), s.n,
			mean.Round(time.Millisecond), s.minGap.Round(time.Millisecond), strings.Join(addrs, ","))
	}
	fmt.Printf("BLEVM SCANEND at=%s reports=%d frames=%d other=%d badframes=%d malformed=%d scan=%v close=%v\n",
		unixMilli(time.Now()), reports, len(frames), other, badFrame, h.Malformed(), err, cerr)
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
}

func ids(args []string) error {
	fs := flag.NewFlagSet("ids", flag.ExitOnError)
	keyHex := fs.String("key", TestKey, "identity key, 32 hex digits")
	k := fs.Uint("k", 2, "rotation exponent")
	from := fs.Int64("from", 0, "first second (Unix)")
	to := fs.Int64("to", 0, "last second (Unix)")
	fs.Parse(args)
	key, err := proxid.ParseKey(*keyHex)
	if err != nil {
		return err
	}
	if err := proxid.ValidateK(uint8(*k)); err != nil {
		return err
	}
	if *to < *from || *to-*from > 86400 {
		return fmt.Errorf("ids: want 0 ≤ to-from ≤ 1 day, got %d..%d", *from, *to)
	}
	step := int64(1) << *k
	for w := *from &^ (step - 1); w <= *to; w += step {
		id := proxid.Compute(key, uint32(w), uint8(*k))
		fmt.Printf("BLEVM EXPECT window_start=%d id=%s\n", w, hex.EncodeToString(id[:]))
	}
	return nil
}

// perms opens the adapter three ways, each in a child process so that
// credentials and capabilities are the kernel's to check.
func perms(args []string) error {
	fs := flag.NewFlagSet("perms", flag.ExitOnError)
	idx := fs.Int("hci", 0, "adapter index")
	uid := fs.Int("uid", 65534, "unprivileged uid and gid")
	fs.Parse(args)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	const capNetAdmin, capNetRaw = 12, 13
	cases := []struct {
		name string
		attr *syscall.SysProcAttr
	}{
		{"root", &syscall.SysProcAttr{}},
		{"uid", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(*uid), Gid: uint32(*uid)}}},
		{"uid+net_admin", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(*uid), Gid: uint32(*uid)}, AmbientCaps: []uintptr{capNetAdmin}}},
		{"uid+net_raw", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(*uid), Gid: uint32(*uid)}, AmbientCaps: []uintptr{capNetRaw}}},
		{"uid+net_admin+net_raw", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(*uid), Gid: uint32(*uid)}, AmbientCaps: []uintptr{capNetAdmin, capNetRaw}}},
	}
	for _, c := range cases {
		cmd := exec.Command(self, "perm-child", fmt.Sprint(*idx))
		cmd.SysProcAttr = c.attr
		out, err := cmd.CombinedOutput()
		res := strings.TrimSpace(string(out))
		if i := strings.LastIndex(res, "\n"); i >= 0 {
			res = res[i+1:]
		}
		fmt.Printf("BLEVM PERM as=%s exit=%v result=%q\n", c.name, err, res)
	}
	return nil
}

func permChild(args []string) error {
	var idx int
	if len(args) > 0 {
		fmt.Sscan(args[0], &idx)
	}
	h, err := ble.OpenHCI(idx, nil)
	if err != nil {
		fmt.Printf("open failed: %v\n", err)
		os.Exit(3)
	}
	err = h.Advertise(context.Background(), []byte{0x02, 0x01, 0x06}, nil)
	cerr := h.Close()
	fmt.Printf("open ok, advertise %v, close %v\n", err, cerr)
	return nil
}
