package httpapi

import (
	"encoding/hex"
	"net/http"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/service"

	pb "beaconvend/app-protocol/provision"
)

// The phone as relay, and boards claimed in the field (app-protocol/GATT.md),
// in openapi.yaml:
//
//	POST /v1/sessions/{session}/usage                 phoneapi.UsageUpload → phoneapi.UsageAccepted (Idempotency-Key)
//	POST /v1/operator/claims                          OperatorClaimRequest → OperatorClaimed (manager+)
//	PUT  /v1/operator/devices/{device}/relay-always   OperatorRelayAlwaysRequest → OperatorRelayAlways (manager+)
type (
	// OperatorClaimRequest claims a board in registration mode: its
	// X25519 sealing public key and the device to make of it, as for
	// OperatorAddDeviceRequest.
	OperatorClaimRequest struct {
		BoardKey string           `json:"board_key"` // 64 hex digits: the board's X25519 public key (ClaimInfo)
		ID       string           `json:"id"`
		Name     string           `json:"name,omitempty"`
		Kind     vend.MachineKind `json:"kind"`               // water, washer, dryer or vending
		Machines int              `json:"machines,omitempty"` // machines of that kind (not vending); 0: 1
		Price    *vend.Price      `json:"price,omitempty"`    // nil: the kind's default
		Currency vend.Currency    `json:"currency"`
		Slots    []pb.Slot        `json:"slots,omitempty"` // vending; nil: two default slots
		K        int              `json:"k"`               // proximity-ID rotation exponent, 0-15
	}
	// OperatorClaimed answers a claim with the bundle sealed to the board.
	OperatorClaimed = service.ClaimedDevice
	// OperatorRelayAlwaysRequest sets relay-always on a device, or on one
	// of its machines.
	OperatorRelayAlwaysRequest struct {
		On      *bool  `json:"on"`
		Machine string `json:"machine,omitempty"` // "": the whole device
	}
	// OperatorRelayAlways is the switch as it now is.
	OperatorRelayAlways struct {
		Device  string `json:"device"`
		Machine string `json:"machine,omitempty"`
		On      bool   `json:"on"`
	}
)

func (s *Server) relayRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /v1/sessions/{session}/usage", s.user(s.idempotent("usage", func() any { return &phoneapi.UsageUpload{} }, s.uploadUsage)))
	m.HandleFunc("POST /v1/operator/claims", s.operator(s.opClaim))
	m.HandleFunc("PUT /v1/operator/devices/{device}/relay-always", s.operator(s.opRelayAlways))
}

func (s *Server) uploadUsage(w http.ResponseWriter, r *http.Request, _ string, body []byte) {
	var req phoneapi.UsageUpload
	if err := s.decodeBytes(body, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.svc.UploadUsage(r.Context(), userOf(r).ID, id, req.Report)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) opClaim(w http.ResponseWriter, r *http.Request) {
	var req OperatorClaimRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	key, err := hex.DecodeString(req.BoardKey)
	if err != nil || len(key) != 32 {
		s.fail(w, r, vend.Errorf(ErrField, "board_key: want 64 hex digits (the board's X25519 public key)"))
		return
	}
	if req.K < 0 || req.K > 15 {
		s.fail(w, r, vend.Errorf(ErrField, "k %d: want 0-15", req.K))
		return
	}
	cd, err := s.svc.ClaimDevice(r.Context(), key, provision.DeviceRequest{ID: req.ID, Name: req.Name, Kind: req.Kind, Machines: req.Machines,
		Price: req.Price, Currency: req.Currency, Slots: req.Slots, K: uint8(req.K)})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st := http.StatusCreated
	if cd.Replayed {
		st = http.StatusOK
	}
	writeJSON(w, st, cd)
}

func (s *Server) opRelayAlways(w http.ResponseWriter, r *http.Request) {
	var req OperatorRelayAlwaysRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.On == nil {
		s.fail(w, r, vend.Errorf(ErrField, "on: required"))
		return
	}
	dev := r.PathValue("device")
	if err := s.svc.SetRelayAlways(r.Context(), dev, req.Machine, *req.On); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OperatorRelayAlways{Device: dev, Machine: req.Machine, On: *req.On})
}
