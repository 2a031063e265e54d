package claim_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/controller/claim"
	"beaconvend/hw/ble"
	goble "beaconvend/hw/ble/goble"
)

// fakeRadio records what goes on air; its ServeGATT reports a central that
// connects and goes, then waits for the end.
type fakeRadio struct {
	mu      sync.Mutex
	adv     [][]byte // frames advertised connectable
	stops   int
	served  *goble.Service
	advErr  error
	serving chan struct{}
}

var _ claim.Radio = (*fakeRadio)(nil)

func (f *fakeRadio) Advertise(ctx context.Context, adv, sr []byte) error {
	return errors.New("fake radio: non-connectable advertising not expected")
}

func (f *fakeRadio) AdvertiseConnectable(ctx context.Context, adv, sr []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.advErr != nil {
		return f.advErr
	}
	f.adv = append(f.adv, append([]byte(nil), adv...))
	return nil
}

func (f *fakeRadio) Stop() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops++
	return nil
}

func (f *fakeRadio) Close() error { return nil }

func (f *fakeRadio) ServeGATT(ctx context.Context, svc *goble.Service, o *ble.GATTOpts, link func(ble.Link)) error {
	f.mu.Lock()
	f.served = svc
	f.mu.Unlock()
	link(ble.LinkConnected)
	link(ble.LinkListening)
	close(f.serving)
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeRadio) state() (adv [][]byte, stops int, served *goble.Service) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.adv, f.stops, f.served
}

// Registration mode advertises the unclaimed frame (version 2, the claim
// tag of the board's key, the wiring's company ID and TX power)
// connectable, again after a central has come and gone, serves the claim
// service, and once claimed stops advertising and returns.
func TestServeUntilClaimed(t *testing.T) {
	r := newRig(t)
	b := r.open(t)
	s := claim.NewService(b, nil)
	f := &fakeRadio{serving: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- claim.Serve(context.Background(), f, b, s, claim.RadioOpts{CompanyID: 0x1234, TxPower: -60, Linger: 10 * time.Millisecond})
	}()
	select {
	case <-f.serving:
	case <-time.After(gwait):
		t.Fatal("not serving")
	}
	adv, stops, served := f.state()
	if served != s.Service || len(adv) != 3 || stops != 0 {
		t.Fatalf("served %v, %d advertisements, %d stops; want the claim service, 3 (start, connected, gone), 0", served, len(adv), stops)
	}
	for _, a := range adv {
		u, err := beacon.DecodeUnclaimed(a, 0x1234)
		if err != nil || u.Tag != beacon.ClaimTag(b.SealKey()) || u.TxPower != -60 || !bytes.Equal(a, adv[0]) {
			t.Fatalf("advertised % x: %+v, %v; want the unclaimed frame with the board's tag", a, u, err)
		}
	}
	_, sealed := sealedFor(t, b, "laundry-1")
	if _, err := b.Accept(sealed); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after the claim: %v", err)
		}
	case <-time.After(gwait):
		t.Fatal("Serve did not return after the claim")
	}
	if _, stops, _ := f.state(); stops == 0 {
		t.Error("advertising not stopped after the claim")
	}
}

// A cancelled context ends registration mode unclaimed; a radio that
// refuses to advertise is an error.
func TestServeEnds(t *testing.T) {
	r := newRig(t)
	b := r.open(t)
	s := claim.NewService(b, nil)
	f := &fakeRadio{serving: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- claim.Serve(ctx, f, b, s, claim.RadioOpts{}) }()
	<-f.serving
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve after cancel: %v", err)
	}
	if adv, stops, _ := f.state(); stops == 0 {
		t.Error("advertising not stopped")
	} else if _, err := beacon.DecodeUnclaimed(adv[0], beacon.DefaultCompanyID); err != nil {
		t.Errorf("default company ID: %v", err)
	}
	radio := errors.New("radio gone")
	f = &fakeRadio{serving: make(chan struct{}), advErr: radio}
	if err := claim.Serve(context.Background(), f, b, s, claim.RadioOpts{}); !errors.Is(err, radio) {
		t.Errorf("Serve on a failing radio: %v", err)
	}
}
