package httpapi

import (
	"bytes"
	"net/http"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/service"
	"beaconvend/cloud/stickers"

	pb "beaconvend/app-protocol/provision"
)

// Remote operations and inventory of the operator API (bearer token as
// for the other operator routes; the roles of service.Perm apply, and
// every change is audited by the service), in openapi.yaml:
//
//	POST /v1/operator/devices/{device}/machines/{machine}/test-output    OperatorTestOutputRequest → OperatorCommandReply (technician+)
//	POST /v1/operator/devices/{device}/reboot                            OperatorRebootRequest → OperatorCommandReply (technician+)
//	POST /v1/operator/devices                                            OperatorAddDeviceRequest → OperatorProvisioned (manager+)
//	POST /v1/operator/bundles/{token}                                    the new device's bundle.json, once (manager+)
//	GET  /v1/operator/devices/{device}/stickers/{format}?machine=        svg, png or pdf QR stickers (manager+)
//	GET  /v1/operator/inventory?device=                                  OperatorInventory
//	PUT  /v1/operator/devices/{device}/machines/{machine}/slots/{slot}/stock  OperatorRestockRequest → OperatorSlotStock (technician+)
//
// A command's answer is the device's: status accepted, refused (with the
// device's code, e.g. machine.busy, output.unknown) or timeout (no answer
// within the reply timeout: the command may still act). A command to an
// offline device is refused at once with machine.offline, an output test
// on a machine with a live session with machine.busy.
type (
	// OperatorCommandReply is a device's answer to an operator's command.
	OperatorCommandReply = service.CommandResult
	// OperatorTestOutputRequest switches one output ON for DurationMS.
	OperatorTestOutputRequest struct {
		Output     string `json:"output"`      // the output's name in the board's wiring, e.g. relay1
		DurationMS int64  `json:"duration_ms"` // 100-10000
	}
	// OperatorRebootRequest reboots a device after DelayS seconds, once idle.
	OperatorRebootRequest struct {
		DelayS int64 `json:"delay_s"` // 0-3600
	}
	// OperatorAddDeviceRequest adds a device (`cloud device add`).
	OperatorAddDeviceRequest struct {
		ID       string           `json:"id"`
		Name     string           `json:"name,omitempty"`
		Kind     vend.MachineKind `json:"kind"`               // water, washer, dryer or vending
		Machines int              `json:"machines,omitempty"` // machines of that kind (not vending); 0: 1
		Price    *vend.Price      `json:"price,omitempty"`    // nil: the kind's default
		Currency vend.Currency    `json:"currency"`
		Slots    []pb.Slot        `json:"slots,omitempty"` // vending; nil: two default slots
		K        int              `json:"k"`               // proximity-ID rotation exponent, 0-15
	}
	// OperatorProvisioned answers an added device: its bundle is fetched
	// once with POST /v1/operator/bundles/{bundle_token} before
	// bundle_until, from the same cloud instance.
	OperatorProvisioned = service.ProvisionedDevice
	// OperatorSlotStock is a vending slot with its count.
	OperatorSlotStock = service.SlotInventory
	// OperatorInventory lists vending slots with their counts.
	OperatorInventory struct {
		Slots []OperatorSlotStock `json:"slots"`
	}
	// OperatorRestockRequest sets a slot's count and low-stock threshold.
	OperatorRestockRequest struct {
		Stock uint64 `json:"stock"`  // items now in the slot, 0-10000
		LowAt uint64 `json:"low_at"` // alert at or below; 0: none
	}
)

// opsRoutes registers the routes above on m.
func (s *Server) opsRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /v1/operator/devices/{device}/machines/{machine}/test-output", s.operator(s.opTestOutput))
	m.HandleFunc("POST /v1/operator/devices/{device}/reboot", s.operator(s.opReboot))
	m.HandleFunc("POST /v1/operator/devices", s.operator(s.opAddDevice))
	m.HandleFunc("POST /v1/operator/bundles/{token}", s.operator(s.opBundle))
	m.HandleFunc("GET /v1/operator/devices/{device}/stickers/{format}", s.operator(s.opStickers))
	m.HandleFunc("GET /v1/operator/inventory", s.operator(s.opInventory))
	m.HandleFunc("PUT /v1/operator/devices/{device}/machines/{machine}/slots/{slot}/stock", s.operator(s.opRestock))
}

func (s *Server) opTestOutput(w http.ResponseWriter, r *http.Request) {
	var req OperatorTestOutputRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ot, err := s.svc.TestOutput(r.Context(), r.PathValue("device"), r.PathValue("machine"), req.Output, time.Duration(req.DurationMS)*time.Millisecond)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ot.Reply)
}

func (s *Server) opReboot(w http.ResponseWriter, r *http.Request) {
	var req OperatorRebootRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	rr, err := s.svc.Reboot(r.Context(), r.PathValue("device"), time.Duration(req.DelayS)*time.Second)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rr.Reply)
}

func (s *Server) opAddDevice(w http.ResponseWriter, r *http.Request) {
	var req OperatorAddDeviceRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.K < 0 || req.K > 15 {
		s.fail(w, r, vend.Errorf(ErrField, "k %d: want 0-15", req.K))
		return
	}
	pd, err := s.svc.ProvisionDevice(r.Context(), provision.DeviceRequest{ID: req.ID, Name: req.Name, Kind: req.Kind, Machines: req.Machines,
		Price: req.Price, Currency: req.Currency, Slots: req.Slots, K: uint8(req.K)})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, pd)
}

func (s *Server) opBundle(w http.ResponseWriter, r *http.Request) {
	dev, data, err := s.svc.TakeBundle(r.Context(), r.PathValue("token"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="`+dev+`-`+provision.BundleFile+`"`)
	_, _ = w.Write(data)
}

func (s *Server) opStickers(w http.ResponseWriter, r *http.Request) {
	format := r.PathValue("format")
	write := map[string]func(*bytes.Buffer, []stickers.Sticker) error{
		"svg": func(b *bytes.Buffer, ss []stickers.Sticker) error { return stickers.WriteSVG(b, ss) },
		"png": func(b *bytes.Buffer, ss []stickers.Sticker) error { return stickers.WritePNG(b, ss) },
		"pdf": func(b *bytes.Buffer, ss []stickers.Sticker) error { return stickers.WritePDF(b, ss) },
	}[format]
	if write == nil {
		s.fail(w, r, vend.Errorf(ErrField, "format %q: want svg, png or pdf", format))
		return
	}
	ss, err := s.svc.Stickers(r.Context(), r.PathValue("device"), r.URL.Query().Get("machine"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var b bytes.Buffer
	if err := write(&b, ss); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", map[string]string{"svg": "image/svg+xml", "png": "image/png", "pdf": "application/pdf"}[format])
	_, _ = w.Write(b.Bytes())
}

func (s *Server) opInventory(w http.ResponseWriter, r *http.Request) {
	slots, err := s.svc.Inventory(r.Context(), r.URL.Query().Get("device"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OperatorInventory{Slots: slots})
}

func (s *Server) opRestock(w http.ResponseWriter, r *http.Request) {
	var req OperatorRestockRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	dev, mach, slot := r.PathValue("device"), r.PathValue("machine"), r.PathValue("slot")
	if _, err := s.svc.Restock(r.Context(), dev, mach, slot, req.Stock, req.LowAt); err != nil {
		s.fail(w, r, err)
		return
	}
	slots, err := s.svc.Inventory(r.Context(), dev)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, si := range slots {
		if si.Machine == mach && si.Slot == slot {
			writeJSON(w, http.StatusOK, si)
			return
		}
	}
	s.fail(w, r, vend.Errorf(ErrField, "slot %s/%s/%s vanished", dev, mach, slot))
}
