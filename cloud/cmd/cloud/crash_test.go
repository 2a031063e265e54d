package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/store"
)

const (
	crashDevices = 20
	crashPhones  = 8
	crashKills   = 6
	crashTopUp   = 50000 // minor units per top-up (the sandbox card's limit)
	crashTopUps  = 2
)

// TestCrashSettlement is the issue's "kill -9 the cloud at random during a
// storm of settlements; restart; every session settled exactly once".
//
// The cloud runs as a process (`cloud serve -broker tcp://…`) against an
// embedded broker that lives in this test process, so the broker, the
// devices' connections and their retained state survive every kill.
// Devices (package simdev) answer Authorize and report signed usage from an
// outbox they publish again until the cloud's Ack; phones start sessions
// through the phone API and, when the cloud does not answer, retry with the
// same idempotency key. The cloud is killed with SIGKILL at random moments
// crashKills times and restarted each time; then the store is opened and
// every session is checked against what its device reported.
func TestCrashSettlement(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts the cloud process")
	}
	bin := buildCloud(t)
	t.Run("sqlite", func(t *testing.T) {
		data := t.TempDir()
		crashRun(t, bin, data, "sqlite:"+filepath.Join(data, "cloud.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgScratchDSN(t)
		crashRun(t, bin, t.TempDir(), dsn)
	})
}

// cliRun runs the cloud binary's CLI and decodes its JSON line.
func cliRun(t *testing.T, bin string, args ...string) map[string]string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("cloud %s: %v\n%s", strings.Join(args, " "), err, errb.Bytes())
	}
	var res map[string]string
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("cloud %s printed %q", strings.Join(args, " "), out.String())
	}
	return res
}

// provisionFleet adds an operator and n water devices with the CLI and
// returns the device directories and a broker.Credentials over the hashes
// the CLI stored, plus the hash of the cloud's own MQTT secret.
func provisionFleet(t *testing.T, bin, data, dsn string, n int) ([]string, broker.CredentialsFunc, string) {
	t.Helper()
	common := []string{"-data", data, "-db", dsn}
	op := cliRun(t, bin, append([]string{"operator", "add", "-name", "Crash Co", "-email", "ops@crash.example", "-password-file", passwordFile(t, "crash-password-1")}, common...)...)
	out := t.TempDir()
	var dirs []string
	for i := range n {
		id := fmt.Sprintf("wd-%02d", i)
		dir := filepath.Join(out, id)
		cliRun(t, bin, append([]string{"device", "add", "-id", id, "-operator", op["operator"], "-kind", "water", "-out", dir, "-mqtt-url", "tcp://127.0.0.1:1883"}, common...)...)
		dirs = append(dirs, dir)
	}
	st, err := store.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hashes := map[string]string{}
	for _, dir := range dirs {
		id := filepath.Base(dir)
		d, err := st.GetDevice(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		hashes[id] = d.MQTTHash
	}
	creds := broker.CredentialsFunc(func(_ context.Context, id string) (broker.Credential, error) {
		h, ok := hashes[id]
		if !ok {
			return broker.Credential{}, store.ErrDeviceNotFound
		}
		return broker.Credential{PasswordHash: h, Enabled: true}, nil
	})
	secret, err := os.ReadFile(filepath.Join(data, "mqtt-cloud.secret"))
	if err != nil {
		t.Fatal(err)
	}
	cloudHash, err := broker.HashPassword(strings.TrimSpace(string(secret)))
	if err != nil {
		t.Fatal(err)
	}
	return dirs, creds, cloudHash
}

// phoneStart starts a session with one idempotency key, sending the same
// request again while the cloud does not answer or answers 5xx, as a phone
// app does; it gives up at deadline.
func phoneStart(ctx context.Context, p *phoneapi.Client, d *simdev.Device, capUnits uint64, deadline time.Time, retries *atomic.Int64) (*phoneapi.Session, error) {
	key := phoneapi.NewIdempotencyKey()
	req := &phoneapi.StartSessionRequest{Device: phoneapi.DeviceID(d.ID), Machine: "tap1", ProximityID: d.ProximityID(time.Now()),
		Cap: phoneapi.Cap{Units: capUnits}, Source: "wallet"}
	for {
		s, err := p.StartSession(ctx, key, req)
		if err == nil {
			return s, nil
		}
		if c := vend.CodeOf(err); c == "proximity.expired" {
			req.ProximityID = d.ProximityID(time.Now()) // retried across a window rotation
		} else if !retryable(err) {
			return nil, err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("gave up: %w", err)
		}
		retries.Add(1)
		time.Sleep(time.Duration(50+rand.IntN(150)) * time.Millisecond)
	}
}

func crashRun(t *testing.T, bin, data, dsn string) {
	began := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dirs, creds, cloudHash := provisionFleet(t, bin, data, dsn, crashDevices)

	// The broker outlives the cloud process: it runs here.
	b := brokertest.NewEmbedded(t, brokertest.NewAccounts(t), broker.Options{Credentials: creds, CloudPasswordHash: cloudHash})
	httpAddr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	proc := newCloudProc(t, bin, "-data", data, "-db", dsn, "-http", httpAddr, "-broker", b.URL())
	proc.start()

	var devs []*simdev.Device
	var dwg sync.WaitGroup
	defer dwg.Wait()
	defer cancel()
	for _, dir := range dirs {
		id, err := simdev.IdentityFromDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		d := simdev.New(id, simdev.Options{
			ResendAfter: 700 * time.Millisecond,
			UsageDelay:  func() time.Duration { return time.Duration(rand.IntN(300)) * time.Millisecond },
			Events:      true,
		})
		if err := d.Connect(b.URL()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		dwg.Add(1)
		go func() { defer dwg.Done(); d.Run(ctx) }()
		devs = append(devs, d)
	}

	hc := &http.Client{Timeout: 15 * time.Second}
	var phones []*phoneapi.Client
	for i := range crashPhones {
		p := phoneapi.New(proc.HTTPURL, &phoneapi.Opts{HTTPClient: hc})
		if _, err := p.SignUp(ctx, &phoneapi.SignUpRequest{Email: fmt.Sprintf("phone%d@crash.example", i), Password: "correct-horse-battery"}); err != nil {
			t.Fatal(err)
		}
		for range crashTopUps {
			if _, err := p.TopUp(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: crashTopUp, Currency: "EUR"}, Source: "card_sandbox"}); err != nil {
				t.Fatal(err)
			}
		}
		phones = append(phones, p)
	}
	for _, d := range devs {
		eventually(t, d.ID+" online", func() bool {
			r, err := phones[0].GetDevice(ctx, phoneapi.DeviceID(d.ID))
			return err == nil && r.Device.State == phoneapi.DeviceIdle
		})
	}

	// The storm: each phone takes an idle device, starts a session and
	// waits until the device's usage report for it is acknowledged
	// (settled in the store) before giving the device back.
	pool := make(chan *simdev.Device, len(devs))
	for _, d := range devs {
		pool <- d
	}
	stopStorm := make(chan struct{})
	var (
		mu       sync.Mutex
		sessions = map[vend.SessionID]*simdev.Device{}
		retries  atomic.Int64
		failures []string
		pwg      sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for _, p := range phones {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for {
				var d *simdev.Device
				select {
				case <-stopStorm:
					return
				case d = <-pool:
				}
				s, err := phoneStart(ctx, p, d, uint64(200+rand.IntN(2800)), time.Now().Add(40*time.Second), &retries)
				if err != nil {
					fail("start on %s: %v", d.ID, err)
					pool <- d
					continue
				}
				mu.Lock()
				sessions[s.ID] = d
				mu.Unlock()
				for end := time.Now().Add(40 * time.Second); ; {
					if r, ok := d.Record(s.ID); ok && r.Acked {
						break
					}
					if time.Now().After(end) {
						fail("session %s on %s: usage not acknowledged within 40 s", s.ID, d.ID)
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				pool <- d
			}
		}()
	}

	var downtime time.Duration
	for k := range crashKills {
		time.Sleep(time.Duration(200+rand.IntN(2300)) * time.Millisecond)
		proc.kill()
		t0 := time.Now()
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
		proc.start()
		downtime += time.Since(t0)
		mu.Lock()
		n := len(sessions)
		mu.Unlock()
		t.Logf("kill %d: %d sessions started so far", k+1, n)
	}
	time.Sleep(time.Second)
	close(stopStorm)
	pwg.Wait()
	eventually(t, "every outbox drained", func() bool {
		for _, d := range devs {
			if d.Pending() > 0 {
				return false
			}
		}
		return true
	})
	proc.stop()
	for _, f := range failures {
		t.Error(f)
	}

	rows, st := checkLedger(t, dsn)
	if len(rows) < 50 {
		t.Errorf("only %d sessions in the storm", len(rows))
	}
	var grants, resends, captured int
	for id, d := range sessions {
		r := rows[id.String()]
		if r == nil {
			t.Errorf("session %s (phone saw it) is not in the store", id)
			continue
		}
		rec, ok := d.Record(id)
		if !ok || !rec.Reported {
			t.Errorf("session %s: device %s never got its grant", id, d.ID)
			continue
		}
		grants += rec.Grants
		resends += rec.Resends
		if err := wantSettledOnce(r, rec.Units); err != nil {
			t.Errorf("session %s on %s: %v", id, d.ID, err)
		}
		captured += int(r.captured)
	}
	for id, r := range rows {
		sid, _ := vend.ParseSessionID(id)
		if _, ok := sessions[sid]; !ok {
			t.Errorf("session %s (state %s, device %s) in the store but no phone got it", id, r.state, r.device)
		}
	}
	// Wallets: every top-up minus exactly what was captured; nothing held.
	users := map[string]int64{}
	for _, r := range rows {
		users[r.user] += r.captured
	}
	for u, c := range users {
		w, err := st.Wallet(ctx, u, "EUR")
		if err != nil {
			t.Fatal(err)
		}
		h, err := st.Balance(ctx, store.UserHolds, u, "EUR")
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(crashTopUp*crashTopUps) - c; w.Minor != want || h.Minor != 0 {
			t.Errorf("user %s: wallet %d held %d, want %d and 0", u, w.Minor, h.Minor, want)
		}
	}
	t.Logf("%s: %d sessions settled exactly once across %d kills (%d starts, downtime %s), %d phone retries, %d Authorize deliveries, %d usage resends, %d captured; %s",
		filepath.Base(strings.SplitN(dsn, ":", 2)[0]), len(rows), crashKills, proc.Starts, downtime.Round(time.Millisecond), retries.Load(), grants, resends, captured, time.Since(began).Round(time.Millisecond))
}
