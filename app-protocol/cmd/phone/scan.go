package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/hw/ble"
)

// Nearby is one device heard on the air and resolved by the cloud.
type Nearby struct {
	Device      phoneapi.Device
	Machines    []phoneapi.Machine
	ProximityID phoneapi.ProximityID // the newest ID heard from it: StartSession binds to it
	RSSI        int                  // mean received signal strength over the scan, dBm
	OnAir       beacon.State         // the state its beacon announced
	Name        string               // scan-response name, when one was heard
	Heard       int                  // advertisements received
	// Addr is the device address its newest beacon came from: where a
	// relay connects (BLE central).
	Addr string
	// OfflineCapable: its beacon says it takes grants relayed by the
	// phone (the start then says can_relay when this phone has a central).
	OfflineCapable bool
}

// rssiUnavailable is the RSSI an HCI controller reports when it has no
// measurement (127, Core Vol 4 Part E 7.7.65.2; the kernel's virtual
// controllers always do): not a signal strength, so it is left out of the
// mean and, with nothing else heard, out of the resolve request.
const rssiUnavailable = 127

// heard accumulates the reports of one proximity ID during a scan.
type heard struct {
	id      phoneapi.ProximityID
	rssiSum int // over the rssiN reports that carried a measurement
	rssiN   int
	n       int
	last    time.Time
	state   beacon.State
	name    string
	addr    string
	relay   bool // offline-capable bit of the newest frame
}

// collect folds one report into the per-ID table; reports that are not
// beaconvend frames for companyID are ignored (other devices share the air).
func collect(tab map[phoneapi.ProximityID]*heard, r ble.Report, companyID uint16) {
	f, err := r.Frame(companyID)
	if err != nil {
		return
	}
	id := phoneapi.ProximityID(f.ID.String())
	h := tab[id]
	if h == nil {
		h = &heard{id: id}
		tab[id] = h
	}
	if r.RSSI != rssiUnavailable {
		h.rssiSum += r.RSSI
		h.rssiN++
	}
	h.n++
	if !r.At.Before(h.last) {
		h.last, h.state, h.addr, h.relay = r.At, f.State, r.Addr, f.OfflineCapable
	}
	if name, err := beacon.DecodeScanResponse(r.ScanResp); err == nil && name != "" {
		h.name = name
	}
}

func (m *Main) scanner() (ble.Scanner, error) {
	if m.Scanner != nil {
		return m.Scanner, nil
	}
	s, err := ble.OpenScanner(ble.Config{Backend: m.BLE, HCI: m.HCI, Air: m.Air}, nil)
	if err != nil {
		return nil, fmt.Errorf("phone: open %s scanner: %w", m.BLE, err)
	}
	if c, ok := s.(interface{ Close() error }); ok {
		m.closers = append(m.closers, c.Close)
	}
	m.Scanner = s
	return s, nil
}

// listen scans for m.ScanFor and returns what it heard, per proximity ID.
func (m *Main) listen(ctx context.Context) (map[phoneapi.ProximityID]*heard, error) {
	s, err := m.scanner()
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	tab := map[phoneapi.ProximityID]*heard{}
	sctx, cancel := context.WithTimeout(ctx, m.ScanFor)
	defer cancel()
	err = s.Scan(sctx, func(r ble.Report) {
		mu.Lock()
		collect(tab, r, uint16(m.CompanyID))
		mu.Unlock()
	})
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("phone: scan: %w", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	return tab, nil
}

// scan listens, resolves every heard ID through the cloud (Resolve) and
// returns one entry per device, strongest signal first. IDs the cloud
// does not know (another operator's, or an expired window) are skipped.
// Errors: ErrNoMachine when nothing resolvable was heard.
func (m *Main) scan(ctx context.Context) ([]Nearby, error) {
	fmt.Fprintf(m.out, "listening for machines (%s, %s)...\n", m.airName(), m.ScanFor)
	tab, err := m.listen(ctx)
	if err != nil {
		return nil, err
	}
	var res []resolved
	for _, h := range tab {
		cid := uint16(m.CompanyID)
		req := &phoneapi.ResolveRequest{ProximityID: h.id, CompanyID: &cid}
		if h.rssiN > 0 {
			rssi := h.rssiSum / h.rssiN
			req.RSSI = &rssi
		}
		r, err := retry(ctx, func(ctx context.Context) (*phoneapi.ResolveResponse, error) { return m.client.Resolve(ctx, req) })
		switch vend.KindOf(err) {
		case "":
			res = append(res, resolved{h: h, r: r})
		case vend.NotFound, vend.Invalid: // proximity.unknown / expired: not ours, or stale
		default:
			return nil, fmt.Errorf("phone: resolve %s: %w", h.id, err)
		}
	}
	nearby := mergeNearby(res)
	if len(nearby) == 0 {
		return nil, vend.Errorf(ErrNoMachine, "heard %d beacon IDs in %s on %s, none known to the cloud", len(tab), m.ScanFor, m.airName())
	}
	return nearby, nil
}

func (m *Main) airName() string {
	if m.BLE == ble.BackendHCI {
		return fmt.Sprintf("hci%d", m.HCI)
	}
	if g, err := ble.AirGroup(m.Air); err == nil {
		return "air " + g.String()
	}
	return "air"
}

type resolved struct {
	h *heard
	r *phoneapi.ResolveResponse
}

// mergeNearby folds resolved IDs into one entry per device (a scan across
// a window boundary hears two IDs of one device): the newest ID, the mean
// RSSI over all its reports. The result is sorted by RSSI, strongest
// first, then by device ID.
func mergeNearby(res []resolved) []Nearby {
	byDev := map[phoneapi.DeviceID]*Nearby{}
	last := map[phoneapi.DeviceID]time.Time{}
	sum, measured := map[phoneapi.DeviceID]int{}, map[phoneapi.DeviceID]int{}
	for _, x := range res {
		id := x.r.Device.ID
		n := byDev[id]
		if n == nil {
			n = &Nearby{}
			byDev[id] = n
		}
		sum[id] += x.h.rssiSum
		measured[id] += x.h.rssiN
		n.Heard += x.h.n
		if x.h.name != "" {
			n.Name = x.h.name
		}
		if x.h.last.After(last[id]) || n.ProximityID == "" {
			last[id] = x.h.last
			n.Device, n.Machines, n.ProximityID, n.OnAir = x.r.Device, x.r.Machines, x.h.id, x.h.state
			n.Addr, n.OfflineCapable = x.h.addr, x.h.relay
		}
	}
	out := make([]Nearby, 0, len(byDev))
	for id, n := range byDev {
		n.RSSI = -127 // nothing measured: the weakest, for ordering
		if measured[id] > 0 {
			n.RSSI = sum[id] / measured[id]
		}
		out = append(out, *n)
	}
	sortNearby(out)
	return out
}

// sortNearby orders by RSSI, strongest first, then by device ID.
func sortNearby(n []Nearby) {
	sort.SliceStable(n, func(i, j int) bool {
		if n[i].RSSI != n[j].RSSI {
			return n[i].RSSI > n[j].RSSI
		}
		return n[i].Device.ID < n[j].Device.ID
	})
}
