package modem_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.bug.st/serial"

	"beaconvend/hw/modem"
	"beaconvend/hw/modem/sim"
)

// fast are monitor options for tests: quick polls, short timeouts.
func fast() *modem.Opts {
	o := modem.DefaultOpts
	o.Interval = 100 * time.Millisecond
	o.Timeout = 300 * time.Millisecond
	return &o
}

func mustSim(tb testing.TB, opts *sim.Opts) *sim.Modem {
	tb.Helper()
	s, err := sim.New(opts)
	if err != nil {
		tb.Fatalf("sim.New: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// run starts m.Run and registers a cleanup that closes m and checks that Run returned.
func run(tb testing.TB, m *modem.Monitor) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Logf("Close: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run returned %v after Close, want nil", err)
			}
		case <-time.After(5 * time.Second):
			tb.Errorf("Run did not return within 5 s of Close")
		}
	})
}

func mustOpen(tb testing.TB, s *sim.Modem, opts *modem.Opts) *modem.Monitor {
	tb.Helper()
	m, err := modem.Open(s.Path(), opts)
	if err != nil {
		tb.Fatalf("modem.Open(%s): %v", s.Path(), err)
	}
	run(tb, m)
	return m
}

// waitFor polls m.Status until cond holds, for up to 10 s.
func waitFor(tb testing.TB, m *modem.Monitor, what string, cond func(modem.Status) bool) modem.Status {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := m.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waiting for %s: last status %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMonitorWithSim(t *testing.T) {
	s := mustSim(t, nil)
	m := mustOpen(t, s, fast())

	st := waitFor(t, m, "first complete poll", func(st modem.Status) bool {
		return st.OK && st.IMEI != "" && st.ICCID != "" && st.Operator != ""
	})
	want := modem.Status{
		OK: true, SignalDBm: -73, CSQ: 20, BER: 0, RSRP: -98, RSRQ: -100,
		Registration: modem.RegHome, Tech: modem.TechLTE, Operator: "Beacon Mobile",
		LAC: "1A2B", CellID: "01C3D4E5", IMEI: "490154203237518", ICCID: "8944500102198304826",
	}
	got := st
	got.Quality, got.Updated, got.RegUpdated, got.Failures, got.Err, got.Reopens = modem.CESQ{}, time.Time{}, time.Time{}, 0, "", 0
	if got != want {
		t.Errorf("status after start:\n got %+v\nwant %+v", got, want)
	}
	if st.Updated.IsZero() || st.Failures != 0 || st.Err != "" {
		t.Errorf("status after start: updated %v failures %d err %q", st.Updated, st.Failures, st.Err)
	}

	t.Run("signal change", func(t *testing.T) {
		s.SetSignal(10)
		waitFor(t, m, "CSQ 10", func(st modem.Status) bool { return st.CSQ == 10 && st.SignalDBm == -93 && st.OK })
	})
	t.Run("loss of signal", func(t *testing.T) {
		s.LoseSignal()
		st := waitFor(t, m, "searching", func(st modem.Status) bool {
			return st.Registration == modem.RegSearching && st.CSQ == 99
		})
		if st.SignalDBm != 0 || st.Tech != "" {
			t.Errorf("without signal: SignalDBm %v Tech %q, want 0 and empty", st.SignalDBm, st.Tech)
		}
		waitFor(t, m, "operator cleared", func(st modem.Status) bool { return st.Operator == "" && st.OK })
	})
	t.Run("roaming", func(t *testing.T) {
		s.Register(true)
		waitFor(t, m, "roaming", func(st modem.Status) bool {
			return st.Registration == modem.RegRoaming && st.CSQ == 20 && st.Tech == modem.TechLTE && st.Operator != ""
		})
		s.Register(false)
		waitFor(t, m, "home", func(st modem.Status) bool { return st.Registration == modem.RegHome })
	})
	t.Run("garbage and URCs tolerated", func(t *testing.T) {
		for range 5 {
			s.Garbage(300)
			s.URC("RING")
			s.URC(`+CMTI: "SM",3`)
			s.URC("^SYSINFO: 2,3,0,5,1")
			time.Sleep(30 * time.Millisecond)
		}
		s.SetSignal(25)
		since := time.Now()
		waitFor(t, m, "good polls after garbage", func(st modem.Status) bool {
			return st.OK && st.CSQ == 25 && st.Updated.After(since) && st.Registration == modem.RegHome
		})
	})
	t.Run("silent modem", func(t *testing.T) {
		s.Silent(true)
		st := waitFor(t, m, "failures counted", func(st modem.Status) bool { return !st.OK && st.Failures >= 2 })
		if st.Err == "" {
			t.Errorf("silent modem: Err empty")
		}
		stale := st.Updated
		// Open's monitor reopens the port after ReopenAfter (3) failed polls.
		st = waitFor(t, m, "reopen", func(st modem.Status) bool { return st.Reopens >= 1 })
		if !st.Updated.Equal(stale) {
			t.Errorf("Updated moved while silent: %v → %v", stale, st.Updated)
		}
		if st.CSQ != 25 || st.IMEI == "" {
			t.Errorf("values not kept while silent: %+v", st)
		}
		s.Silent(false)
		waitFor(t, m, "recovery", func(st modem.Status) bool {
			return st.OK && st.Failures == 0 && st.Err == "" && st.Updated.After(stale) && st.IMEI != ""
		})
	})
	t.Run("slow replies", func(t *testing.T) {
		s.SlowReply(time.Second) // beyond the 300 ms timeout
		waitFor(t, m, "timeouts", func(st modem.Status) bool { return st.Failures >= 1 })
		s.SlowReply(20 * time.Millisecond)
		waitFor(t, m, "recovery", func(st modem.Status) bool { return st.OK && st.Failures == 0 })
	})
}

// Registration URCs are applied between polls, not only at the next poll.
func TestMonitorURC(t *testing.T) {
	s := mustSim(t, nil)
	o := fast()
	o.Interval = time.Hour
	m := mustOpen(t, s, o)
	waitFor(t, m, "first poll", func(st modem.Status) bool { return st.OK && st.Registration == modem.RegHome })
	polls := s.Count("AT+CSQ")
	s.LoseSignal()
	waitFor(t, m, "searching by URC", func(st modem.Status) bool { return st.Registration == modem.RegSearching })
	s.Register(true)
	st := waitFor(t, m, "roaming by URC", func(st modem.Status) bool { return st.Registration == modem.RegRoaming })
	if st.LAC != "1A2B" || st.Tech != modem.TechLTE {
		t.Errorf("roaming URC: LAC %q Tech %q, want 1A2B lte", st.LAC, st.Tech)
	}
	if n := s.Count("AT+CSQ"); n != polls {
		t.Errorf("AT+CSQ sent %d times, want %d (no poll in between)", n, polls)
	}
}

// With NoSetup the modem keeps echoing and sends no URCs; the monitor
// still reads everything.
func TestMonitorEchoNoSetup(t *testing.T) {
	s := mustSim(t, nil)
	o := fast()
	o.NoSetup = true
	m := mustOpen(t, s, o)
	waitFor(t, m, "complete status with echo on", func(st modem.Status) bool {
		return st.OK && st.IMEI == "490154203237518" && st.ICCID != "" && st.Registration == modem.RegHome && st.CSQ == 20
	})
	for _, c := range []string{"ATE0", "AT+CREG=2", "AT+CEREG=2"} {
		if n := s.Count(c); n != 0 {
			t.Errorf("NoSetup: %s sent %d times", c, n)
		}
	}
}

// A modem without +CESQ is asked once; the ICCID is found with the third
// vendor command.
func TestMonitorFallbacks(t *testing.T) {
	s := mustSim(t, &sim.Opts{NoCESQ: true, NoCEREG: true, CCIDCommand: "AT+QCCID", Act: -1, ICCID: "8986031644208312345F"})
	o := fast()
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	o.Now = func() time.Time { return clock }
	m := mustOpen(t, s, o)
	st := waitFor(t, m, "status", func(st modem.Status) bool { return st.OK && st.ICCID != "" && st.Operator != "" })
	if !st.Updated.Equal(clock) || !st.RegUpdated.Equal(clock) {
		t.Errorf("Updated %v RegUpdated %v, want the injected clock %v", st.Updated, st.RegUpdated, clock)
	}
	if st.ICCID != "8986031644208312345" || st.Tech != modem.TechGSM || st.Quality != modem.UnknownCESQ || st.RSRP != 0 {
		t.Errorf("status = %+v, want ICCID 8986031644208312345, gsm, unknown quality", st)
	}
	polls := s.Count("AT+CSQ")
	waitFor(t, m, "more polls", func(modem.Status) bool { return s.Count("AT+CSQ") >= polls+3 })
	if n := s.Count("AT+CESQ"); n != 1 {
		t.Errorf("AT+CESQ sent %d times, want 1", n)
	}
	if n := s.Count("AT+CEREG?"); n != 1 {
		t.Errorf("AT+CEREG? sent %d times, want 1", n)
	}
	if n := s.Count("AT+QCCID"); n != 1 {
		t.Errorf("AT+QCCID sent %d times, want 1", n)
	}
}

// A monitor from New cannot reopen: when the port dies it counts failures
// and still closes cleanly.
func TestMonitorNewPortDies(t *testing.T) {
	s := mustSim(t, nil)
	p, err := serial.Open(s.Path(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	m := modem.New(p, fast())
	run(t, m)
	waitFor(t, m, "first poll", func(st modem.Status) bool { return st.OK })
	s.Close() // the "USB modem" is unplugged
	st := waitFor(t, m, "failures", func(st modem.Status) bool { return st.Failures >= 3 })
	if st.OK || st.Reopens != 0 || st.Err == "" {
		t.Errorf("after the port died: %+v", st)
	}
}

func TestMonitorLifecycle(t *testing.T) {
	s := mustSim(t, nil)
	m, err := modem.Open(s.Path(), fast())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor(t, m, "first poll", func(st modem.Status) bool { return st.OK })
	if err := m.Run(ctx); !errors.Is(err, modem.ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run after cancel = %v, want context.Canceled", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := m.Run(context.Background()); !errors.Is(err, modem.ErrRunning) {
		t.Errorf("Run after Close = %v, want ErrRunning", err)
	}
	if _, err := modem.Open("/nonexistent/tty", nil); !errors.Is(err, modem.ErrClosed) {
		t.Errorf("Open(nonexistent) = %v, want ErrClosed", err)
	}
}
