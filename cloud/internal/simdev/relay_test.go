package simdev

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// The relay rig end to end: the real cloud and two real controllers as
// processes, their boards emulated in this process, the embedded broker
// and SQLite. A phone's StartSession on each device switches its valve ON
// within a few seconds and the session settles the capped amount.
func TestRelayTapToValve(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cloud and controller programs and runs them; not with -short")
	}
	dir := t.TempDir()
	bin := relayBuild(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data := filepath.Join(dir, "data")
	dsn := "sqlite:" + filepath.Join(dir, "cloud.db")

	r, err := ProvisionRelay(ctx, RelayConfig{
		CloudBin: filepath.Join(bin, "cloud"), ControllerBin: filepath.Join(bin, "controller"),
		DataDir: data, DSN: dsn, Dir: filepath.Join(dir, "relay"), N: 2, Log: t.Output(),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, toks, err := provision(ctx, dsn, "relay", 0, 1) // a funded phone user, before the cloud starts
	if err != nil {
		t.Fatal(err)
	}
	tok := toks[0]

	cloudLog := filepath.Join(dir, "cloud.log")
	proc, err := startCloud(filepath.Join(bin, "cloud"), cloudLog, "-data", data, "-db", dsn, "-http", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the controllers stop (reports sent) while
	// the cloud still runs.
	t.Cleanup(func() {
		if err := proc.stop(15 * time.Second); err != nil {
			t.Errorf("cloud serve: %v", err)
		}
	})
	urls := proc.urls
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("--- cloud.log\n%s", relayTail(cloudLog))
			for _, d := range r.Devices {
				t.Logf("--- %s controller.log\n%s", d.ID, relayTail(d.logPath))
			}
		}
	})
	if err := r.Start(ctx, urls["mqtt"], urls["http"]); err != nil {
		t.Fatal(err)
	}

	phone := phoneapi.New(urls["http"], &phoneapi.Opts{Token: tok})
	const capML = 150
	for i, d := range r.Devices {
		t0 := time.Now()
		s, err := phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), d.StartRequest(t0, capML))
		authz := time.Since(t0)
		if err != nil {
			t.Fatalf("%s: StartSession: %v", d.ID, err)
		}
		on, err := r.CoilOn(ctx, i, t0, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if lat := on.Sub(t0); lat <= 0 || lat > 5*time.Second {
			t.Errorf("%s: valve ON %s after the request, want within (0, 5s]", d.ID, lat)
		}
		end := relayWaitFinal(ctx, t, phone, s.ID)
		if end.State != phoneapi.StateSettled || end.Units != capML || end.Outcome != vend.OutcomeCapReached {
			t.Errorf("%s: session ended %s with %d ml (%s), want settled with %d ml (cap_reached)", d.ID, end.State, end.Units, end.Outcome, capML)
		}
		if st := d.Emulator.Board.Status(); st.Coils[relayValve] {
			t.Errorf("%s: valve still ON after the session: %v", d.ID, st.Coils)
		}
		t.Logf("%s: tap-to-relay %s (StartSession answered after %s), settled %d ml for %d minor in %s",
			d.ID, on.Sub(t0).Round(time.Microsecond), authz.Round(time.Microsecond), end.Units, end.Amount.Minor, end.EndedAt.Sub(end.CreatedAt).Round(time.Millisecond))
	}

	// Nothing switched the valve on after the sessions.
	if at, err := r.CoilOn(ctx, 0, time.Now(), 200*time.Millisecond); err == nil {
		t.Errorf("CoilOn after the sessions = %v, want a timeout", at)
	}
	if _, err := r.CoilOn(ctx, len(r.Devices), time.Time{}, time.Second); err == nil {
		t.Errorf("CoilOn(%d) of %d devices: no error", len(r.Devices), len(r.Devices))
	}
}

// relayBuild builds the cloud and controller programs into dir/bin.
func relayBuild(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	// Bounded, so a stuck build fails here with its output instead of
	// running into the package's test timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator), "./cloud/cmd/cloud", "./controller/cmd/controller")
	cmd.Dir = filepath.Join("..", "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// relayWaitFinal polls the session until its state is final (30 s at most).
func relayWaitFinal(ctx context.Context, t *testing.T, c *phoneapi.Client, id phoneapi.SessionID) *phoneapi.Session {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := c.GetSession(ctx, id)
		if err == nil && s.State.Final() {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s not final within 30 s: %+v, %v", id, s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
