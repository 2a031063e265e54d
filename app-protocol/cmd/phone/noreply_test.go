package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// fakeAPI is a hand-written phone API for the start-without-reply path:
// StartSession answers 503 device.no_reply with the pending session; the
// event stream shows it pending, then ends in final (after a stop when
// waitStop is set); it records the stops.
type fakeAPI struct {
	mu       sync.Mutex
	final    phoneapi.SessionState
	waitStop bool
	stops    int
	stopped  chan struct{}
	sess     phoneapi.Session
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/wallet":
		json.NewEncoder(w).Encode(phoneapi.Wallet{Available: vend.Amount{Minor: 900, Currency: "EUR"}, Held: vend.Amount{Minor: 100, Currency: "EUR"}})
	case r.Method == "POST" && r.URL.Path == "/v1/sessions":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(503)
		s := f.sess
		json.NewEncoder(w).Encode(phoneapi.ErrorResponse{Error: phoneapi.ErrorBody{Kind: vend.Transient, Code: "device.no_reply",
			Message: "sessions: the device did not answer the grant in time", Session: &s}})
	case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/stop"):
		f.mu.Lock()
		f.stops++
		if f.stops == 1 {
			close(f.stopped)
		}
		f.mu.Unlock()
		json.NewEncoder(w).Encode(f.sess)
	case r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/events"):
		w.Header().Set("Content-Type", "text/event-stream")
		ev := func(id int, typ string, s phoneapi.Session) {
			b, _ := json.Marshal(s)
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, typ, b)
			w.(http.Flusher).Flush()
		}
		ev(1, "state", f.sess)
		if f.waitStop {
			select {
			case <-f.stopped:
			case <-r.Context().Done():
				return
			}
		} else {
			time.Sleep(100 * time.Millisecond)
		}
		end := f.sess
		end.State = f.final
		ev(2, "ended", end)
	default:
		http.Error(w, "not in the fake", 404)
	}
}

func (f *fakeAPI) stopCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stops
}

func runNoReply(t *testing.T, f *fakeAPI, cancel bool) (string, error) {
	t.Helper()
	f.stopped = make(chan struct{})
	f.sess = phoneapi.Session{ID: vend.NewSessionID(), Device: "wd-1", Machine: "tap1", State: phoneapi.StatePending, Unit: vend.UnitML,
		Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR", Source: "wallet", Hold: vend.Amount{Minor: 100, Currency: "EUR"},
		CapUnits: 2000, Amount: vend.Amount{Currency: "EUR"}, CreatedAt: time.Now().UTC()}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var out bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &out, API: srv.URL, CapUnits: 2000, CancelNoReply: cancel, Progress: "lines", Timeout: 10 * time.Second}
	m.defaults()
	m.client = phoneapi.New(srv.URL, nil)
	mach := phoneapi.Machine{ID: "tap1", Kind: vend.KindWater, Name: "tap", Unit: vend.UnitML, Currency: "EUR", Price: vend.Price{Minor: 50, Per: 1000}, State: phoneapi.MachineIdle}
	n := Nearby{Device: phoneapi.Device{ID: "wd-1", Name: "w", State: phoneapi.DeviceIdle}, Machines: []phoneapi.Machine{mach}, ProximityID: "0011223344556677"}
	err := m.buy(context.Background(), target{n: &n, m: &n.Machines[0]})
	return out.String(), err
}

// device.no_reply is not "nothing was charged": the client waits for the
// machine and says nothing was charged only once the session is final
// without a charge.
func TestNoReplyWaitsForTheMachine(t *testing.T) {
	f := &fakeAPI{final: phoneapi.StateExpired}
	out, err := runNoReply(t, f, false)
	if !strings.Contains(out, "waiting for the machine") {
		t.Fatalf("output does not say it waits for the machine:\n%s", out)
	}
	if err == nil || !strings.Contains(err.Error(), "ended expired") || !strings.Contains(err.Error(), "nothing was charged") {
		t.Fatalf("buy = %v, want the expired session reported as not charged", err)
	}
	if strings.Contains(out, "nothing was charged") {
		t.Fatalf("said nothing was charged before the session was final:\n%s", out)
	}
	if n := f.stopCount(); n != 0 {
		t.Fatalf("stopped %d times without being asked", n)
	}
}

// -cancel-if-no-reply cancels the pending session (StopSession) and still
// follows it until the board's refusal makes it final.
func TestNoReplyCancel(t *testing.T) {
	f := &fakeAPI{final: phoneapi.StateFailed, waitStop: true}
	out, err := runNoReply(t, f, true)
	if n := f.stopCount(); n != 1 || !strings.Contains(out, "cancel sent") {
		t.Fatalf("stops %d, output:\n%s", n, out)
	}
	if err == nil || !strings.Contains(err.Error(), "ended failed") || !strings.Contains(err.Error(), "nothing was charged") {
		t.Fatalf("buy = %v", err)
	}
}
