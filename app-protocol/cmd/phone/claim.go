package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/hw/ble"
)

// ErrClaim: a claim did not complete (the board refused its bundle, it is
// claimed already, or another board answered than the one heard).
var ErrClaim = vend.E(vend.Conflict, "phone.claim", "phone: claim failed")

// ClaimResult is what -claim did.
type ClaimResult struct {
	Device   string // the device ID the board now has
	Addr     string // the board's device address
	Tag      string // its claim tag, hex
	Replayed bool   // the cloud had this claim already and gave its bundle again
}

// unclaimed is a board in registration mode heard during a scan.
type unclaimed struct {
	addr string
	tag  [beacon.ClaimTagLen]byte
	rssi int
}

// claim claims a board in registration mode for the operator signed in
// with -email and -password (app-protocol/GATT.md, "Claim"): find it (an
// unclaimed frame, version 2, heard on the air, or -board-addr), connect,
// read ClaimInfo, check the claim tag heard is its sealing key's, post the
// key to POST /v1/operator/claims, write the sealed bundle to Bundle in
// chunks, and read ClaimInfo again to see it claimed.
func (m *Main) claim(ctx context.Context) error {
	dial := m.central()
	if dial == nil {
		return vend.Errorf(ErrNoCentral, "claiming a board connects to it over BLE (-ble hci)")
	}
	op := &operatorClient{base: strings.TrimRight(m.API, "/"), hc: m.HTTPClient}
	if op.hc == nil {
		op.hc = &http.Client{Timeout: 30 * time.Second}
	}
	if m.Email == "" || m.Password == "" {
		return errors.New("phone: -claim signs in as an operator: give -email and -password")
	}
	if err := op.logIn(ctx, m.Email, m.Password); err != nil {
		return fmt.Errorf("phone: operator log-in: %w", err)
	}

	addr, tag := m.BoardAddr, ""
	if addr == "" {
		found, err := m.scanUnclaimed(ctx)
		if err != nil {
			return err
		}
		i := 0
		if m.ClaimTag != "" {
			i = -1
			for j, u := range found {
				if hex.EncodeToString(u.tag[:]) == strings.ToLower(m.ClaimTag) {
					i = j
				}
			}
			if i < 0 {
				return vend.Errorf(ErrNoMachine, "no unclaimed board with claim tag %s heard (heard %d)", m.ClaimTag, len(found))
			}
		} else if len(found) > 1 {
			fmt.Fprintf(m.out, "%d unclaimed boards heard; claiming the strongest (give -claim-tag to pick):\n", len(found))
			for _, u := range found {
				fmt.Fprintf(m.out, "  tag %x at %s, %d dBm\n", u.tag, u.addr, u.rssi)
			}
		}
		addr, tag = found[i].addr, hex.EncodeToString(found[i].tag[:])
	}
	fmt.Fprintf(m.out, "connecting to the board at %s\n", addr)
	link, err := dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("phone: connect to %s: %w", addr, err)
	}
	board := ble.NewBoard(link)
	defer board.Close()
	info, err := board.ReadClaimInfo(ctx)
	if err != nil {
		return vend.Errorf(ErrClaim, "read claim info: %s", refusalText(err))
	}
	got := beacon.ClaimTag(info.SealKey)
	if tag != "" && hex.EncodeToString(got[:]) != tag {
		return vend.Errorf(ErrClaim, "the board at %s has claim tag %x, not the %s heard: another board answered", addr, got, tag)
	}
	tag = hex.EncodeToString(got[:])
	if info.State == gattapi.Claimed {
		return vend.Errorf(ErrClaim, "the board at %s is already device %s (claim.not_registration); factory-reset it to claim it again", addr, info.Device)
	}

	req := claimRequest{BoardKey: hex.EncodeToString(info.SealKey), ID: m.ClaimID, Name: m.ClaimName, Kind: vend.MachineKind(m.ClaimKind),
		Machines: m.ClaimMachines, Currency: vend.Currency(m.ClaimCurrency), K: m.ClaimK}
	cd, err := op.claim(ctx, req)
	if err != nil {
		return fmt.Errorf("phone: claim board %s as %s: %w", tag, m.ClaimID, err)
	}
	fmt.Fprintf(m.out, "the cloud made device %s for board %s; writing its sealed bundle (%d bytes)\n", cd.Device, tag, len(cd.Sealed))
	if err := board.WriteBundle(ctx, cd.Sealed); err != nil {
		return vend.Errorf(ErrClaim, "device %s exists in the cloud, but %s", cd.Device, refusalText(err))
	}
	after, err := board.ReadClaimInfo(ctx)
	if err != nil {
		return vend.Errorf(ErrClaim, "bundle written, but the claim info could not be read back: %s", refusalText(err))
	}
	if after.State != gattapi.Claimed || after.Device != cd.Device {
		return vend.Errorf(ErrClaim, "bundle written, but the board says state %d device %q", after.State, after.Device)
	}
	m.Claimed = &ClaimResult{Device: cd.Device, Addr: addr, Tag: tag, Replayed: cd.Replayed}
	fmt.Fprintf(m.out, "claimed: board %s is device %s\n", tag, cd.Device)
	return nil
}

// scanUnclaimed listens for m.ScanFor and returns the unclaimed boards
// heard, strongest first.
func (m *Main) scanUnclaimed(ctx context.Context) ([]unclaimed, error) {
	s, err := m.scanner()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(m.out, "listening for unclaimed boards (%s, %s)...\n", m.airName(), m.ScanFor)
	var mu sync.Mutex
	byAddr := map[string]*unclaimed{}
	sctx, cancel := context.WithTimeout(ctx, m.ScanFor)
	defer cancel()
	err = s.Scan(sctx, func(r ble.Report) {
		u, err := beacon.DecodeUnclaimed(r.Data, uint16(m.CompanyID))
		if err != nil {
			return
		}
		mu.Lock()
		byAddr[r.Addr] = &unclaimed{addr: r.Addr, tag: u.Tag, rssi: r.RSSI}
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
	out := make([]unclaimed, 0, len(byAddr))
	for _, u := range byAddr {
		out = append(out, *u)
	}
	if len(out) == 0 {
		return nil, vend.Errorf(ErrNoMachine, "no unclaimed board heard in %s on %s", m.ScanFor, m.airName())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].rssi != out[j].rssi {
			return out[i].rssi > out[j].rssi
		}
		return out[i].addr < out[j].addr
	})
	return out, nil
}

// claimRequest is the body of POST /v1/operator/claims
// (cloud/httpapi.OperatorClaimRequest).
type claimRequest struct {
	BoardKey string           `json:"board_key"`
	ID       string           `json:"id"`
	Name     string           `json:"name,omitempty"`
	Kind     vend.MachineKind `json:"kind"`
	Machines int              `json:"machines,omitempty"`
	Currency vend.Currency    `json:"currency"`
	K        int              `json:"k"`
}

// claimed answers it (cloud/service.ClaimedDevice).
type claimed struct {
	Device   string `json:"device"`
	Sealed   []byte `json:"sealed_bundle"`
	Replayed bool   `json:"replayed"`
}

// operatorClient is the little of the operator API the installer's phone
// uses: log in, claim. Errors are *phoneapi.APIError (the two APIs share
// their error body).
type operatorClient struct {
	base  string
	hc    *http.Client
	token string
}

func (c *operatorClient) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "beaconvend-phone/1")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: POST %s: %w", phoneapi.ErrTransport, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, phoneapi.MaxResponseBytes))
	if err != nil {
		return fmt.Errorf("%w: POST %s: %w", phoneapi.ErrTransport, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return phoneapi.DecodeError(resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return vend.Errorf(phoneapi.ErrResponse, "POST %s: %v", path, err)
	}
	return nil
}

func (c *operatorClient) logIn(ctx context.Context, email, password string) error {
	var tok struct {
		Token string `json:"token"`
	}
	if err := c.post(ctx, "/v1/operator/auth/login", map[string]string{"email": email, "password": password}, &tok); err != nil {
		return err
	}
	c.token = tok.Token
	return nil
}

// claim posts the claim, retrying transient failures: the same claim
// again gets the same bundle (replayed), so a lost answer is not a second
// device.
func (c *operatorClient) claim(ctx context.Context, req claimRequest) (*claimed, error) {
	return retry(ctx, func(ctx context.Context) (*claimed, error) {
		var out claimed
		if err := c.post(ctx, "/v1/operator/claims", req, &out); err != nil {
			return nil, err
		}
		return &out, nil
	})
}
