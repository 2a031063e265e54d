package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/stickers"
	"beaconvend/cloud/store"
)

// Remote operations: commands an operator sends to one device (a price
// change, an output test, a reboot) and the device's answer, and device
// provisioning. Each checks the actor's permission (Authorize), acts on
// the actor's own operator's devices only (another operator's device is
// device.not_found) and writes the audit log (Audit), so the console and
// the JSON operator API behave alike.

// Command outcomes (CommandResult.Status).
const (
	CommandAccepted = "accepted" // the device did it (a reboot: will do it once idle)
	CommandRefused  = "refused"  // the device refused; Code says why
	CommandTimeout  = "timeout"  // no answer within ReplyTimeout: the command may still arrive and act
)

// Bounds of the operations.
const (
	MinTestOutput = 100 * time.Millisecond                                    // shortest output test
	MaxTestOutput = mqttapi.MaxTestOutputMS * time.Millisecond                // longest output test (10 s)
	MaxRebootWait = mqttapi.MaxRebootDelayS * time.Second                     // longest reboot delay (1 h)
	bundleTTL     = 10 * time.Minute                                          // a provisioned bundle waits this long for its one download
	maxBundles    = 64                                                        // bundles waiting for a download on one instance
	sinceBundle   = "the bundle is shown once and kept on this instance only" // why a download can be gone
)

// Errors of the remote operations.
var (
	ErrOperatorRequired = vend.E(vend.Unauthorized, "auth.required", "operations: no operator in the request")
	ErrOpInput          = vend.E(vend.Invalid, "request.field", "operations: invalid field")
	ErrBundleGone       = vend.E(vend.NotFound, "bundle.gone", "provision: the bundle was downloaded already or has expired")
	ErrNoProvisioner    = vend.E(vend.Conflict, "provision.unavailable", "provision: this cloud was started without device provisioning")
)

// CommandResult is a device's answer to an operator's command.
type CommandResult struct {
	Command string `json:"command"`           // the command's message id
	Status  string `json:"status"`            // accepted, refused or timeout
	Code    string `json:"code,omitempty"`    // the device's reason code when refused, e.g. machine.busy
	Message string `json:"message,omitempty"` // the device's detail when refused
}

// operatorOf returns the acting operator's id after checking p.
func (s *Service) operatorOf(ctx context.Context, p Perm) (Actor, error) {
	if err := s.Authorize(ctx, p); err != nil {
		return Actor{}, err
	}
	a, ok := ActorFrom(ctx)
	if !ok || a.Operator == "" {
		return Actor{}, errf(ErrOperatorRequired, "no actor")
	}
	return a, nil
}

// ownDevice reads one of operator's devices.
func (s *Service) ownDevice(ctx context.Context, operator, device string) (store.Device, error) {
	d, err := s.st.GetDevice(ctx, device)
	if err != nil {
		return store.Device{}, err
	}
	if d.OperatorID != operator {
		return store.Device{}, errf(store.ErrDeviceNotFound, "%q", device)
	}
	return d, nil
}

// command publishes msg (its envelope set, its id the command id) to
// device and waits up to ReplyTimeout for the device's Reply, which may be
// saved by another instance (polled every ReplyPoll besides the in-process
// wake-up). No answer in time is a result (CommandTimeout), not an error;
// a command the broker would not take is ErrUnavailable.
func (s *Service) command(ctx context.Context, device string, msg mqttapi.Message) (CommandResult, error) {
	cmdID := msg.Head().ID
	res := CommandResult{Command: cmdID}
	wake := s.wait(cmdID)
	defer s.unwait(cmdID, wake)
	pctx, cancel := context.WithTimeout(ctx, s.opts.ReplyTimeout)
	defer cancel()
	if err := s.pub.Publish(pctx, device, msg); err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, errf(ErrUnavailable, "%s %s: %v", msg.TypeName(), device, err)
	}
	poll := time.NewTicker(s.opts.ReplyPoll)
	defer poll.Stop()
	for {
		select {
		case <-wake:
		case <-poll.C:
		case <-pctx.Done():
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			res.Status = CommandTimeout
			return res, nil
		}
		r, err := s.st.GetCommandReply(ctx, device, cmdID)
		if errors.Is(err, store.ErrCommandNotFound) {
			continue
		}
		if err != nil {
			return res, err
		}
		var rep mqttapi.Reply
		if err := json.Unmarshal([]byte(r.Body), &rep); err != nil {
			return res, fmt.Errorf("service: reply %s: %w", cmdID, err)
		}
		res.Status = CommandAccepted
		if !rep.OK {
			res.Status, res.Code, res.Message = CommandRefused, rep.Code, rep.Message
		}
		return res, nil
	}
}

// MachinePrices is a machine's price and its slots' prices.
type MachinePrices struct {
	Price vend.Price            `json:"price"`
	Slots map[string]vend.Price `json:"slots,omitempty"`
}

func pricesOf(m store.Machine) MachinePrices {
	p := MachinePrices{Price: m.Price}
	if len(m.Slots) > 0 {
		p.Slots = map[string]vend.Price{}
		for _, sl := range m.Slots {
			p.Slots[sl.ID] = sl.Price
		}
	}
	return p
}

// PriceChange is one price change: the machine's prices before and after
// and the device's answer to the new price table.
type PriceChange struct {
	Device  string        `json:"device"`
	Machine string        `json:"machine"`
	Before  MachinePrices `json:"before"`
	After   MachinePrices `json:"after"`
	Reply   CommandResult `json:"reply"`
}

// ChangePrice sets a machine's price and, for the slots named, the slots'
// prices on one of the actor's operator's devices (PermPrice), sends the
// device its whole new price table (mqttapi.SetPrices) and waits for its
// answer, and writes the audit log (price.set, before and after). The
// price is changed in the cloud even when the device refuses or does not
// answer: sessions are priced by the cloud's grant, and the table is sent
// again with the next change. Errors: auth.forbidden, device.not_found,
// machine.not_found, slot.not_found, vend.price, service.unavailable (the
// price is changed, the command not sent).
func (s *Service) ChangePrice(ctx context.Context, device, machine string, price vend.Price, slots map[string]vend.Price) (PriceChange, error) {
	a, err := s.operatorOf(ctx, PermPrice)
	if err != nil {
		return PriceChange{}, err
	}
	d, err := s.ownDevice(ctx, a.Operator, device)
	if err != nil {
		return PriceChange{}, err
	}
	m, ok := machineOf(d, machine)
	if !ok {
		return PriceChange{}, errf(store.ErrMachineNotFound, "%s/%s", device, machine)
	}
	pc := PriceChange{Device: device, Machine: machine, Before: pricesOf(m)}
	if err := s.st.SetPrices(ctx, a.Operator, device, machine, price, slots); err != nil {
		return pc, err
	}
	if d, err = s.st.GetDevice(ctx, device); err != nil {
		return pc, err
	}
	m, _ = machineOf(d, machine)
	pc.After = pricesOf(m)
	pc.Reply, err = s.command(ctx, device, s.pricesMsg(d))
	s.audited(ctx, a.Operator, "price.set", device+"/"+machine, pc.Before, map[string]any{"prices": pc.After, "reply": pc.Reply})
	return pc, err
}

// pricesMsg is the device's whole price table.
func (s *Service) pricesMsg(d store.Device) *mqttapi.SetPrices {
	msg := &mqttapi.SetPrices{Envelope: mqttapi.NewEnvelope(s.now())}
	for _, m := range d.Machines {
		if msg.Currency == "" {
			msg.Currency = m.Currency
		}
		if m.Currency != msg.Currency {
			s.log.Error("service: device machines in several currencies; skipped in set_prices", "device", d.ID, "machine", m.ID)
			continue
		}
		if len(m.Slots) == 0 {
			msg.Prices = append(msg.Prices, mqttapi.PriceEntry{Machine: m.ID, Unit: m.Unit, Price: m.Price})
		}
		for _, sl := range m.Slots {
			msg.Prices = append(msg.Prices, mqttapi.PriceEntry{Machine: m.ID, Slot: sl.ID, Unit: m.Unit, Price: sl.Price})
		}
	}
	return msg
}

// OutputTest is one output test and the device's answer.
type OutputTest struct {
	Device   string        `json:"device"`
	Machine  string        `json:"machine"`
	Output   string        `json:"output"`
	Duration time.Duration `json:"-"`
	Reply    CommandResult `json:"reply"`
}

// TestOutput has the device switch one output of an idle machine ON for d
// (MinTestOutput..MaxTestOutput) and OFF again, for a technician checking
// the wiring (PermOperate), and writes the audit log (output.test). The
// output is a name from the board's wiring (the device refuses an unknown
// one with output.unknown). Refused at once while a session is live on the
// machine (machine.busy) or the device is offline (machine.offline): a
// queued test must not fire later with nobody watching. Errors also:
// auth.forbidden, device.not_found, machine.not_found, request.field.
func (s *Service) TestOutput(ctx context.Context, device, machine, output string, d time.Duration) (OutputTest, error) {
	a, err := s.operatorOf(ctx, PermOperate)
	if err != nil {
		return OutputTest{}, err
	}
	ot := OutputTest{Device: device, Machine: machine, Output: output, Duration: d}
	if d < MinTestOutput || d > MaxTestOutput {
		return ot, errf(ErrOpInput, "duration %s: want %s to %s", d, MinTestOutput, MaxTestOutput)
	}
	msg := &mqttapi.TestOutput{Envelope: mqttapi.NewEnvelope(s.now()), Machine: machine, Output: output, DurationMS: uint32(d / time.Millisecond)}
	msg.V, msg.Type = mqttapi.Version, msg.TypeName() // as Encode will set them
	if err := msg.Validate(); err != nil {
		return ot, errf(ErrOpInput, "%v", err)
	}
	dev, err := s.ownDevice(ctx, a.Operator, device)
	if err != nil {
		return ot, err
	}
	if _, ok := machineOf(dev, machine); !ok {
		return ot, errf(store.ErrMachineNotFound, "%s/%s", device, machine)
	}
	if dev.State == store.DeviceDisabled || !dev.Online {
		return ot, errf(ErrMachineOffline, "device %s is offline", device)
	}
	if live, err := s.st.MachineLive(ctx, device, machine); err != nil {
		return ot, err
	} else if live {
		return ot, errf(store.ErrMachineBusy, "a session is live on %s/%s", device, machine)
	}
	ot.Reply, err = s.command(ctx, device, msg)
	after := map[string]any{"output": output, "duration_ms": msg.DurationMS, "reply": ot.Reply}
	s.audited(ctx, a.Operator, "output.test", device+"/"+machine, nil, after)
	return ot, err
}

// RebootRequest is one reboot and the device's answer.
type RebootRequest struct {
	Device string        `json:"device"`
	Delay  time.Duration `json:"-"`
	Reply  CommandResult `json:"reply"`
}

// Reboot asks a device to reboot after delay (0..MaxRebootWait) and after
// every running session has ended (never mid-session: the device decides
// that), with PermOperate, and writes the audit log (device.reboot). An
// accepted reply means the device will reboot; it goes offline and comes
// back on the fleet page. Errors: auth.forbidden, device.not_found,
// request.field, machine.offline (a queued reboot would fire at an
// unknown time).
func (s *Service) Reboot(ctx context.Context, device string, delay time.Duration) (RebootRequest, error) {
	a, err := s.operatorOf(ctx, PermOperate)
	if err != nil {
		return RebootRequest{}, err
	}
	rr := RebootRequest{Device: device, Delay: delay}
	if delay < 0 || delay > MaxRebootWait || delay%time.Second != 0 {
		return rr, errf(ErrOpInput, "delay %s: want whole seconds, 0 to %s", delay, MaxRebootWait)
	}
	dev, err := s.ownDevice(ctx, a.Operator, device)
	if err != nil {
		return rr, err
	}
	if dev.State == store.DeviceDisabled || !dev.Online {
		return rr, errf(ErrMachineOffline, "device %s is offline", device)
	}
	msg := &mqttapi.Reboot{Envelope: mqttapi.NewEnvelope(s.now()), DelayS: uint32(delay / time.Second)}
	rr.Reply, err = s.command(ctx, device, msg)
	s.audited(ctx, a.Operator, "device.reboot", device, nil, map[string]any{"delay_s": msg.DelayS, "reply": rr.Reply})
	return rr, err
}

// ProvisionFunc adds a device and writes its bundle:
// provision.Provisioner.AddDevice bound to this cloud's keys, broker URL
// and site broker files. The service fills OperatorID, MQTTURL and Out.
type ProvisionFunc func(ctx context.Context, req provision.DeviceRequest) (provision.Result, error)

// Provisioning is what UseProvisioner configures.
type Provisioning struct {
	Add     ProvisionFunc
	MQTTURL string // the broker URL written into bundles (what the boards dial)
	CAPEM   string // the broker's CA, PEM; empty: the system roots
	TempDir string // where bundles are written before they are read and removed; os.TempDir when empty
}

// opsState is the Service's state for remote operations: the
// provisioner and the bundles waiting for their one download.
type opsState struct {
	mu      sync.Mutex
	prov    *Provisioning
	bundles map[string]heldBundle // token → bundle
}

type heldBundle struct {
	device   string
	operator string
	data     []byte
	until    time.Time
}

// UseProvisioner enables device provisioning (ProvisionDevice) with p.
func (s *Service) UseProvisioner(p Provisioning) {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	s.ops.prov = &p
}

func (s *Service) provisioner() *Provisioning {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	return s.ops.prov
}

// ProvisionedDevice is a device just added: the token of its one bundle
// download, until when it is kept.
type ProvisionedDevice struct {
	Device      string    `json:"device"`
	BundleToken string    `json:"bundle_token"`
	BundleUntil time.Time `json:"bundle_until"`
}

// ProvisionDevice adds a device for the actor's operator (PermProvision)
// with provision.Provisioner.AddDevice (its checks, its registration, its
// broker files), reads the bundle it wrote into memory and removes the
// file: the bundle (the device's private keys and broker password) can be
// downloaded once, with the returned token, within 10 minutes, from this
// instance (TakeBundle). Audited as device.add (the request, never the
// keys). Errors: auth.forbidden, provision.input naming the field,
// device.exists, provision.unavailable.
func (s *Service) ProvisionDevice(ctx context.Context, req provision.DeviceRequest) (ProvisionedDevice, error) {
	a, err := s.operatorOf(ctx, PermProvision)
	if err != nil {
		return ProvisionedDevice{}, err
	}
	p := s.provisioner()
	if p == nil || p.Add == nil {
		return ProvisionedDevice{}, errf(ErrNoProvisioner, "start the cloud with a broker URL for devices")
	}
	dir, err := os.MkdirTemp(p.TempDir, "vend-provision-")
	if err != nil {
		return ProvisionedDevice{}, fmt.Errorf("provision: %w", err)
	}
	defer os.RemoveAll(dir)
	req.OperatorID, req.MQTTURL, req.CAPEM, req.Out = a.Operator, p.MQTTURL, p.CAPEM, filepath.Join(dir, "bundle")
	res, err := p.Add(ctx, req)
	if err != nil {
		return ProvisionedDevice{}, err
	}
	data, err := os.ReadFile(res.Bundle)
	if err != nil {
		return ProvisionedDevice{}, fmt.Errorf("provision: device %s registered, but its bundle could not be read: %w", req.ID, err)
	}
	var rnd [18]byte
	_, _ = rand.Read(rnd[:])
	tok := base64.RawURLEncoding.EncodeToString(rnd[:])
	out := ProvisionedDevice{Device: req.ID, BundleToken: tok, BundleUntil: s.now().Add(bundleTTL)}
	s.holdBundle(tok, heldBundle{device: req.ID, operator: a.Operator, data: data, until: out.BundleUntil})
	slots := []string{}
	for _, sl := range req.Slots {
		slots = append(slots, sl.ID)
	}
	sort.Strings(slots)
	after := map[string]any{"device": req.ID, "name": req.Name, "kind": req.Kind, "machines": req.Machines, "currency": req.Currency,
		"slots": strings.Join(slots, ","), "k": req.K, "mqtt_url": req.MQTTURL, "recovered": res.Recovered}
	s.audited(ctx, a.Operator, "device.add", req.ID, nil, after)
	return out, nil
}

func (s *Service) holdBundle(tok string, b heldBundle) {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	if s.ops.bundles == nil {
		s.ops.bundles = map[string]heldBundle{}
	}
	now := s.now()
	for k, v := range s.ops.bundles {
		if now.After(v.until) {
			delete(s.ops.bundles, k)
		}
	}
	for len(s.ops.bundles) >= maxBundles { // bounded: the oldest goes
		var oldest string
		for k, v := range s.ops.bundles {
			if oldest == "" || v.until.Before(s.ops.bundles[oldest].until) {
				oldest = k
			}
		}
		delete(s.ops.bundles, oldest)
	}
	s.ops.bundles[tok] = b
}

// TakeBundle returns a provisioned device's bundle (bundle.json) once:
// the token is spent by the first call (PermProvision, the same operator).
// Errors: auth.forbidden, bundle.gone (downloaded, expired, unknown, or
// made on another instance: sinceBundle).
func (s *Service) TakeBundle(ctx context.Context, token string) (device string, data []byte, err error) {
	a, err := s.operatorOf(ctx, PermProvision)
	if err != nil {
		return "", nil, err
	}
	s.ops.mu.Lock()
	b, ok := s.ops.bundles[token]
	if ok && b.operator == a.Operator {
		delete(s.ops.bundles, token)
	}
	s.ops.mu.Unlock()
	if !ok || b.operator != a.Operator || s.now().After(b.until) {
		return "", nil, errf(ErrBundleGone, "%s", sinceBundle)
	}
	s.audited(ctx, a.Operator, "device.bundle_download", b.device, nil, nil)
	return b.device, b.data, nil
}

// Stickers returns the QR stickers of a device's machines (all, or the one
// named), each holding the machine's web checkout address under the
// cloud's public URL (PermProvision: stickers go on machines one adds).
// Errors: auth.forbidden, device.not_found, machine.not_found,
// provision.unavailable (no public URL configured).
func (s *Service) Stickers(ctx context.Context, device, machine string) ([]stickers.Sticker, error) {
	a, err := s.operatorOf(ctx, PermProvision)
	if err != nil {
		return nil, err
	}
	d, err := s.ownDevice(ctx, a.Operator, device)
	if err != nil {
		return nil, err
	}
	if s.opts.PublicURL == "" {
		return nil, errf(ErrNoProvisioner, "no public URL: set payments.public_url, the address payers' phones open")
	}
	var out []stickers.Sticker
	for _, m := range d.Machines {
		if machine != "" && m.ID != machine {
			continue
		}
		u, err := stickers.MachineURL(s.opts.PublicURL, d.ID, m.ID)
		if err != nil {
			return nil, errf(ErrNoProvisioner, "%v", err)
		}
		name := m.Name
		if name == "" {
			name = m.ID
		}
		out = append(out, stickers.Sticker{URL: u, Name: name})
	}
	if len(out) == 0 {
		return nil, errf(store.ErrMachineNotFound, "%s/%s", device, machine)
	}
	return out, nil
}
