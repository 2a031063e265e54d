package console

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/service"
	"beaconvend/cloud/stickers"
	"beaconvend/cloud/store"
)

// Remote operations (/console/ops…) and inventory (/console/inventory).
// Every change is a two-step form: a review page that shows what will
// change (a price old → new, the output and how long, the reboot) with a
// Confirm button, then the change through the service method the operator
// API uses (which authorizes and audits), and a result page with the
// device's answer: accepted, refused with its code, or no answer in time.
// The pages work without script.

// opsRoutes registers the console's pages of remote operations, provisioning and inventory on m.
func (c *Console) opsRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /console/ops", c.allow(service.PermView, c.opsHome))
	m.HandleFunc("GET /console/ops/devices/{device}", c.allow(service.PermView, c.opsDevice))
	m.HandleFunc("POST /console/ops/devices/{device}/price/review", c.allow(service.PermPrice, c.priceReview))
	m.HandleFunc("POST /console/ops/devices/{device}/price", c.allow(service.PermPrice, c.priceApply))
	m.HandleFunc("POST /console/ops/devices/{device}/test/review", c.allow(service.PermOperate, c.testReview))
	m.HandleFunc("POST /console/ops/devices/{device}/test", c.allow(service.PermOperate, c.testApply))
	m.HandleFunc("POST /console/ops/devices/{device}/reboot/review", c.allow(service.PermOperate, c.rebootReview))
	m.HandleFunc("POST /console/ops/devices/{device}/reboot", c.allow(service.PermOperate, c.rebootApply))
	m.HandleFunc("GET /console/ops/devices/{device}/stickers/{file}", c.allow(service.PermProvision, c.opsStickers))
	m.HandleFunc("GET /console/ops/provision", c.allow(service.PermProvision, c.provisionForm))
	m.HandleFunc("POST /console/ops/provision", c.allow(service.PermProvision, c.provisionAdd))
	m.HandleFunc("POST /console/ops/provision/bundle", c.allow(service.PermProvision, c.provisionBundle))
	m.HandleFunc("GET /console/inventory", c.allow(service.PermView, c.inventory))
	m.HandleFunc("POST /console/inventory/restock", c.allow(service.PermOperate, c.restock))
}

// errField is a console form's invalid field.
var errField = vend.E(vend.Invalid, "request.field", "console: invalid field")

// ownDevice reads one of the signed-in operator's devices.
func (c *Console) ownDevice(r *http.Request, id string) (store.Device, error) {
	a, _ := service.ActorFrom(r.Context())
	d, err := c.st.GetDevice(r.Context(), id)
	if err != nil {
		return store.Device{}, err
	}
	if d.OperatorID != a.Operator {
		return store.Device{}, vend.Errorf(store.ErrDeviceNotFound, "%q", id)
	}
	return d, nil
}

func machineIn(d store.Device, id string) (store.Machine, error) {
	for _, m := range d.Machines {
		if m.ID == id {
			return m, nil
		}
	}
	return store.Machine{}, vend.Errorf(store.ErrMachineNotFound, "%s/%s", d.ID, id)
}

// opsDeviceRow is one device on the operations page.
type opsDeviceRow struct {
	ID, Name string
	Online   bool
	Machines []store.Machine
}

func (c *Console) opsHome(w http.ResponseWriter, r *http.Request) {
	a, _ := service.ActorFrom(r.Context())
	ds, err := c.st.OperatorDevices(r.Context(), a.Operator)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rows := []opsDeviceRow{}
	for _, d := range ds {
		rows = append(rows, opsDeviceRow{ID: d.ID, Name: d.Name, Online: d.Online && d.State == store.DeviceActive, Machines: d.Machines})
	}
	c.render(w, r, http.StatusOK, "ops", "Operations", "ops", rows)
}

// opsMachine is a machine on a device's operations page, with its prices
// as the form shows them (major units).
type opsMachine struct {
	store.Machine
	Unit       string
	PriceInput string
	Slots      []opsSlot
}

// opsSlot is a slot on a device's operations page.
type opsSlot struct {
	store.Slot
	PriceInput string
}

func major(minor int64) string { return fmt.Sprintf("%d.%02d", minor/100, minor%100) }

// opsDevicePage is the data of a device's operations page.
type opsDevicePage struct {
	Device      store.Device
	Machines    []opsMachine
	Online      bool
	MaxTestMS   int64
	MaxRebootS  int64
	HasSlots    bool
	StickerKind []string
}

func (c *Console) opsDevice(w http.ResponseWriter, r *http.Request) {
	d, err := c.ownDevice(r, r.PathValue("device"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := opsDevicePage{Device: d, Online: d.Online && d.State == store.DeviceActive, MaxTestMS: service.MaxTestOutput.Milliseconds(),
		MaxRebootS: int64(service.MaxRebootWait / time.Second), StickerKind: []string{"svg", "png", "pdf"}}
	for _, m := range d.Machines {
		om := opsMachine{Machine: m, Unit: unitName(m.Unit), PriceInput: major(m.Price.Minor)}
		for _, sl := range m.Slots {
			p.HasSlots = true
			om.Slots = append(om.Slots, opsSlot{Slot: sl, PriceInput: major(sl.Price.Minor)})
		}
		p.Machines = append(p.Machines, om)
	}
	c.render(w, r, http.StatusOK, "ops_device", "Operations: "+d.Name, "ops", p)
}

// parseMinor reads a decimal amount in major units with at most two
// decimals ("1", "1.5", "1.50") as minor units.
func parseMinor(field, s string) (int64, error) {
	s = strings.TrimSpace(s)
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || len(frac) > 2 || (dot && frac == "") || len(whole) > 12 {
		return 0, vend.Errorf(errField, "%s %q: want an amount such as 1.50", field, clipText(s))
	}
	for _, ch := range whole + frac {
		if ch < '0' || ch > '9' {
			return 0, vend.Errorf(errField, "%s %q: want an amount such as 1.50", field, clipText(s))
		}
	}
	for len(frac) < 2 {
		frac += "0"
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		return 0, vend.Errorf(errField, "%s %q: want an amount such as 1.50", field, clipText(s))
	}
	return n, nil
}

func parseUint(field, s string, max uint64) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || n > max {
		return 0, vend.Errorf(errField, "%s %q: want a whole number from 0 to %d", field, clipText(s), max)
	}
	return n, nil
}

func clipText(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// priceLine is one price, old and new, on the review page.
type priceLine struct {
	What     string // "machine" or the slot's name
	Slot     string // slot id; "" for the machine's own price
	Old, New vend.Price
	Changed  bool
}

// key names the line in the review's hidden "was." fields.
func (l priceLine) key() string {
	if l.Slot == "" {
		return "machine"
	}
	return "slot." + l.Slot
}

// Key is key for the templates.
func (l priceLine) Key() string { return l.key() }

// Was is the line's current price as the review's hidden field keeps it.
func (l priceLine) Was() string { return priceKey(l.Old) }

func priceKey(p vend.Price) string { return fmt.Sprintf("%d/%d", p.Minor, p.Per) }

// priceForm is a price change read from the form.
type priceForm struct {
	Device   store.Device
	Machine  store.Machine
	Price    vend.Price
	Slots    map[string]vend.Price
	Lines    []priceLine
	Currency vend.Currency
	Unit     string
	Changed  bool
}

// readPrice reads the price form of one machine: price (major units) and
// per (units the price buys) for the machine, slot.<id> for each slot.
func (c *Console) readPrice(r *http.Request) (priceForm, error) {
	d, err := c.ownDevice(r, r.PathValue("device"))
	if err != nil {
		return priceForm{}, err
	}
	m, err := machineIn(d, r.PostFormValue("machine"))
	if err != nil {
		return priceForm{}, err
	}
	f := priceForm{Device: d, Machine: m, Currency: m.Currency, Unit: unitName(m.Unit)}
	minor, err := parseMinor("price", r.PostFormValue("price"))
	if err != nil {
		return f, err
	}
	per, err := parseUint("per", r.PostFormValue("per"), 1<<32-1)
	if err != nil {
		return f, err
	}
	f.Price = vend.Price{Minor: minor, Per: uint32(per)}
	if err := f.Price.Validate(); err != nil {
		return f, vend.Errorf(errField, "price: %v", err)
	}
	f.Lines = append(f.Lines, priceLine{What: "the machine", Old: m.Price, New: f.Price, Changed: m.Price != f.Price})
	for _, sl := range m.Slots {
		v := r.PostFormValue("slot." + sl.ID)
		if v == "" {
			continue
		}
		sm, err := parseMinor("slot "+sl.ID, v)
		if err != nil {
			return f, err
		}
		p := vend.Price{Minor: sm, Per: sl.Price.Per}
		if f.Slots == nil {
			f.Slots = map[string]vend.Price{}
		}
		f.Slots[sl.ID] = p
		f.Lines = append(f.Lines, priceLine{What: sl.Name, Slot: sl.ID, Old: sl.Price, New: p, Changed: sl.Price != p})
	}
	for _, l := range f.Lines {
		f.Changed = f.Changed || l.Changed
	}
	return f, nil
}

func unitName(u vend.Unit) string {
	switch u {
	case vend.UnitML:
		return "ml"
	case vend.UnitSecond:
		return "s"
	case vend.UnitCycle:
		return "cycle"
	}
	return "item"
}

func (c *Console) priceReview(w http.ResponseWriter, r *http.Request) {
	f, err := c.readPrice(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "ops_confirm", "Confirm the price change", "ops", opsConfirm{Kind: "price", Device: f.Device, Price: &f})
}

func (c *Console) priceApply(w http.ResponseWriter, r *http.Request) {
	f, err := c.readPrice(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	// The prices the review showed as "now" must still be the prices: if
	// someone changed them meanwhile, review again rather than confirm a
	// comparison that no longer holds.
	for _, l := range f.Lines {
		if r.PostFormValue("was."+l.key()) != priceKey(l.Old) {
			c.render(w, r, http.StatusConflict, "ops_confirm", "Confirm the price change", "ops",
				opsConfirm{Kind: "price", Device: f.Device, Price: &f, Stale: true})
			return
		}
	}
	pc, err := c.svc.ChangePrice(r.Context(), f.Device.ID, f.Machine.ID, f.Price, f.Slots)
	if err != nil && pc.Reply.Command == "" {
		c.fail(w, r, err)
		return
	}
	res := opsResult{Kind: "price", Device: f.Device, Machine: f.Machine.ID, Reply: pc.Reply, Err: errText(err)}
	for _, l := range f.Lines {
		old := l.Old
		if l.Slot == "" {
			old = pc.Before.Price
		} else if p, ok := pc.Before.Slots[l.Slot]; ok {
			old = p
		}
		res.Prices = append(res.Prices, priceLine{What: l.What, Slot: l.Slot, Old: old, New: l.New, Changed: old != l.New})
	}
	res.Currency, res.Unit = f.Currency, f.Unit
	c.render(w, r, http.StatusOK, "ops_result", "Price change", "ops", res)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// opsConfirm is the data of a review page.
type opsConfirm struct {
	Kind     string // price, test, reboot
	Device   store.Device
	Price    *priceForm
	Machine  string
	Output   string
	Duration int64 // ms for a test, s for a reboot
	Stale    bool  // the prices changed since the review: shown again with the new "now"
}

// opsResult is the data of a result page.
type opsResult struct {
	Kind     string
	Device   store.Device
	Machine  string
	Output   string
	Duration int64
	Prices   []priceLine
	Currency vend.Currency
	Unit     string
	Reply    service.CommandResult
	Err      string // the command could not be sent (the change itself was made)
}

func (c *Console) readTest(r *http.Request) (store.Device, string, string, int64, error) {
	d, err := c.ownDevice(r, r.PathValue("device"))
	if err != nil {
		return d, "", "", 0, err
	}
	m, err := machineIn(d, r.PostFormValue("machine"))
	if err != nil {
		return d, "", "", 0, err
	}
	out := strings.TrimSpace(r.PostFormValue("output"))
	if out == "" {
		return d, "", "", 0, vend.Errorf(errField, "output: name the output from the board's wiring, e.g. relay1")
	}
	ms, err := parseUint("duration (ms)", r.PostFormValue("duration_ms"), uint64(service.MaxTestOutput.Milliseconds()))
	if err != nil {
		return d, "", "", 0, err
	}
	if time.Duration(ms)*time.Millisecond < service.MinTestOutput {
		return d, "", "", 0, vend.Errorf(errField, "duration (ms) %d: want %d to %d", ms, service.MinTestOutput.Milliseconds(), service.MaxTestOutput.Milliseconds())
	}
	return d, m.ID, out, int64(ms), nil
}

func (c *Console) testReview(w http.ResponseWriter, r *http.Request) {
	d, m, out, ms, err := c.readTest(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "ops_confirm", "Confirm the output test", "ops", opsConfirm{Kind: "test", Device: d, Machine: m, Output: out, Duration: ms})
}

func (c *Console) testApply(w http.ResponseWriter, r *http.Request) {
	d, m, out, ms, err := c.readTest(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ot, err := c.svc.TestOutput(r.Context(), d.ID, m, out, time.Duration(ms)*time.Millisecond)
	if err != nil && ot.Reply.Command == "" {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "ops_result", "Output test", "ops", opsResult{Kind: "test", Device: d, Machine: m, Output: out, Duration: ms, Reply: ot.Reply, Err: errText(err)})
}

func (c *Console) readReboot(r *http.Request) (store.Device, int64, error) {
	d, err := c.ownDevice(r, r.PathValue("device"))
	if err != nil {
		return d, 0, err
	}
	s, err := parseUint("delay (s)", r.PostFormValue("delay_s"), uint64(service.MaxRebootWait/time.Second))
	return d, int64(s), err
}

func (c *Console) rebootReview(w http.ResponseWriter, r *http.Request) {
	d, s, err := c.readReboot(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "ops_confirm", "Confirm the reboot", "ops", opsConfirm{Kind: "reboot", Device: d, Duration: s})
}

func (c *Console) rebootApply(w http.ResponseWriter, r *http.Request) {
	d, s, err := c.readReboot(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rr, err := c.svc.Reboot(r.Context(), d.ID, time.Duration(s)*time.Second)
	if err != nil && rr.Reply.Command == "" {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "ops_result", "Reboot", "ops", opsResult{Kind: "reboot", Device: d, Duration: s, Reply: rr.Reply, Err: errText(err)})
}

// opsStickers serves a device's QR stickers: stickers.svg, .png or .pdf;
// ?machine= for one machine.
func (c *Console) opsStickers(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	ext := strings.TrimPrefix(file, "stickers.")
	if !strings.HasPrefix(file, "stickers.") || (ext != "svg" && ext != "png" && ext != "pdf") {
		c.message(w, r, http.StatusNotFound, "Not found", "Stickers come as stickers.svg, stickers.png or stickers.pdf.")
		return
	}
	ss, err := c.svc.Stickers(r.Context(), r.PathValue("device"), r.URL.Query().Get("machine"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var b bytes.Buffer
	ctype := map[string]string{"svg": "image/svg+xml", "png": "image/png", "pdf": "application/pdf"}[ext]
	switch ext {
	case "svg":
		err = stickers.WriteSVG(&b, ss)
	case "png":
		err = stickers.WritePNG(&b, ss)
	default:
		err = stickers.WritePDF(&b, ss)
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	secureHeaders(w)
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf("inline; filename=%q", r.PathValue("device")+"-"+file))
	w.Write(b.Bytes())
}

// provisionPage is the data of the provisioning form and its result.
type provisionPage struct {
	Kinds    []vend.MachineKind
	Form     map[string]string
	Done     *service.ProvisionedDevice
	Device   string
	Stickers []string
	Err      string
}

func (c *Console) provisionForm(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "ops_provision", "Add a device", "ops", provisionPage{Kinds: machineKinds,
		Form: map[string]string{"kind": "vending", "machines": "1", "currency": "EUR", "k": "5"}})
}

var machineKinds = []vend.MachineKind{vend.KindWater, vend.KindWasher, vend.KindDryer, vend.KindVending}

// readProvision reads the add-a-device form into a provision request
// (the service fills the operator, broker and output directory).
func readProvision(r *http.Request) (provision.DeviceRequest, map[string]string, error) {
	form := map[string]string{}
	for _, k := range []string{"id", "name", "kind", "machines", "price", "per", "currency", "slots", "k"} {
		form[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	req := provision.DeviceRequest{ID: form["id"], Name: form["name"], Kind: vend.MachineKind(form["kind"]), Currency: vend.Currency(strings.ToUpper(form["currency"]))}
	if form["machines"] != "" {
		n, err := parseUint("machines", form["machines"], provision.MaxMachines)
		if err != nil {
			return req, form, err
		}
		req.Machines = int(n)
	}
	k, err := parseUint("k", form["k"], 15)
	if err != nil {
		return req, form, err
	}
	req.K = uint8(k)
	if form["price"] != "" {
		minor, err := parseMinor("price", form["price"])
		if err != nil {
			return req, form, err
		}
		per := uint64(1)
		if form["per"] != "" {
			if per, err = parseUint("per", form["per"], 1<<32-1); err != nil {
				return req, form, err
			}
		}
		req.Price = &vend.Price{Minor: minor, Per: uint32(per)}
	}
	if form["slots"] != "" {
		ss, err := provision.ParseSlots(form["slots"])
		if err != nil {
			return req, form, err
		}
		req.Slots = ss
	}
	return req, form, nil
}

func (c *Console) provisionAdd(w http.ResponseWriter, r *http.Request) {
	req, form, err := readProvision(r)
	page := provisionPage{Kinds: machineKinds, Form: form}
	if err == nil {
		var pd service.ProvisionedDevice
		pd, err = c.svc.ProvisionDevice(r.Context(), req)
		if err == nil {
			page.Done, page.Device, page.Stickers = &pd, pd.Device, []string{"svg", "png", "pdf"}
			c.render(w, r, http.StatusOK, "ops_provision", "Device added", "ops", page)
			return
		}
	}
	if vend.KindOf(err) != vend.Invalid && vend.KindOf(err) != vend.Conflict {
		c.fail(w, r, err)
		return
	}
	page.Err = err.Error()
	c.render(w, r, http.StatusBadRequest, "ops_provision", "Add a device", "ops", page)
}

// provisionBundle answers the one download of a new device's bundle.
func (c *Console) provisionBundle(w http.ResponseWriter, r *http.Request) {
	dev, data, err := c.svc.TakeBundle(r.Context(), r.PostFormValue("token"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	secureHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", dev+"-"+provision.BundleFile))
	w.Write(data)
}

// inventoryPage is the data of the inventory page.
type inventoryPage struct {
	Device string
	Slots  []service.SlotInventory
	Done   *restockDone
	Max    int
}

// restockDone says what a restock changed, for the status line.
type restockDone struct {
	Slot          string
	Before, After uint64
	Tracked       bool
}

// inventory shows the slots (?device= for one device); after a restock
// (?restocked=device/machine/slot&from=N, or from=new) it says what the
// count was and is now.
func (c *Console) inventory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	device := q.Get("device")
	slots, err := c.svc.Inventory(r.Context(), device)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	sort.SliceStable(slots, func(i, j int) bool { return slots[i].Device < slots[j].Device })
	var done *restockDone
	if at := q.Get("restocked"); at != "" {
		for _, s := range slots {
			if s.Device+"/"+s.Machine+"/"+s.Slot == at && s.Tracked {
				done = &restockDone{Slot: at, After: s.Stock}
				if n, err := strconv.ParseUint(q.Get("from"), 10, 64); err == nil {
					done.Before, done.Tracked = n, true
				}
			}
		}
	}
	c.render(w, r, http.StatusOK, "inventory", "Inventory", "ops", inventoryPage{Device: device, Slots: slots, Done: done, Max: store.MaxStock})
}

func (c *Console) restock(w http.ResponseWriter, r *http.Request) {
	dev, mach, slot := r.PostFormValue("device"), r.PostFormValue("machine"), r.PostFormValue("slot")
	n, err := parseUint("stock", r.PostFormValue("stock"), store.MaxStock)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	low, err := parseUint("low-stock threshold", r.PostFormValue("low_at"), store.MaxStock)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	before, err := c.svc.Inventory(r.Context(), dev)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if _, err := c.svc.Restock(r.Context(), dev, mach, slot, n, low); err != nil {
		c.fail(w, r, err)
		return
	}
	from := "new"
	for _, s := range before {
		if s.Machine == mach && s.Slot == slot && s.Tracked {
			from = strconv.FormatUint(s.Stock, 10)
		}
	}
	// Post/redirect/get: reloading the page must not count the slot
	// again (it would undo the vends settled since).
	q := url.Values{"restocked": {dev + "/" + mach + "/" + slot}, "from": {from}}
	if b := r.PostFormValue("back_device"); b != "" {
		q.Set("device", b)
	}
	http.Redirect(w, r, "/console/inventory?"+q.Encode(), http.StatusSeeOther)
}

// PriceInput is the new machine price as the form takes it.
func (f *priceForm) PriceInput() string { return major(f.Price.Minor) }

// SlotInput is a slot's new price as the form takes it.
func (f *priceForm) SlotInput(slot string) string { return major(f.Slots[slot].Minor) }
