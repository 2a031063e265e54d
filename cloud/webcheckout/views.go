package webcheckout

import (
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/stickers"
)

var funcs = template.FuncMap{}

// money formats minor units with two decimals and the currency code
// ("1.50 EUR"); the pages assume two-decimal currencies, as the service's
// receipts do.
func money(minor int64, cur vend.Currency) string {
	return vend.Amount{Minor: minor, Currency: cur}.String()
}

// quantity formats n units of u for a person: litres, minutes, cycles,
// items.
func quantity(u vend.Unit, n uint64) string {
	switch u {
	case vend.UnitML:
		if n%1000 == 0 {
			return fmt.Sprintf("%d L", n/1000)
		}
		return fmt.Sprintf("%d.%02d L", n/1000, n%1000/10)
	case vend.UnitSecond:
		if n%60 == 0 {
			return fmt.Sprintf("%d min", n/60)
		}
		return fmt.Sprintf("%d min %d s", n/60, n%60)
	case vend.UnitCycle:
		if n == 1 {
			return "1 cycle"
		}
		return fmt.Sprintf("%d cycles", n)
	case vend.UnitItem:
		if n == 1 {
			return "1 item"
		}
		return fmt.Sprintf("%d items", n)
	}
	return fmt.Sprintf("%d %s", n, u)
}

// priceText reads "0.50 EUR per 1 L".
func priceText(p vend.Price, u vend.Unit, cur vend.Currency) string {
	return money(p.Minor, cur) + " per " + quantity(u, uint64(p.Per))
}

// stateView is a machine's live state as words and a shape, so it does
// not rest on colour alone.
type stateView struct {
	Key   string `json:"key"`   // idle, busy, fault, offline
	Label string `json:"label"` // in words
	Shape string `json:"shape"` // circle, square, triangle, ring
}

func machineState(o service.MachineOffer) stateView {
	s := o.State
	if !o.Online {
		s = "offline"
	}
	switch s {
	case "idle":
		return stateView{"idle", "Ready", "circle"}
	case "busy":
		return stateView{"busy", "In use", "square"}
	case "fault":
		return stateView{"fault", "Out of order", "triangle"}
	}
	return stateView{"offline", "Offline", "ring"}
}

// presets are the caps offered per unit, in units.
var presets = map[vend.Unit][]uint64{
	vend.UnitML:     {500, 1000, 2000, 5000},
	vend.UnitSecond: {600, 1800, 3600},
	vend.UnitCycle:  {1, 2},
}

type choice struct {
	Value, Label string
	Checked      bool
}

type slotView struct {
	ID, Name, Price string
	Expected        string // the slot's price as shown, "minor/per", posted as price.<slot>
	Empty, Checked  bool
}

type machineView struct {
	Offer             service.MachineOffer
	State             stateView
	Price             string
	Vending           bool
	Caps              []choice
	Slots             []slotView
	AnySlot           bool
	Sources           []choice
	Form, CSRF        string
	ExpectedPrice     string // "minor/per" as shown
	Currency          string
	CustomPlaceholder string
}

func newMachineView(o service.MachineOffer, form, csrf string) machineView {
	v := machineView{Offer: o, State: machineState(o), Price: priceText(o.Price, o.Unit, o.Currency),
		Vending: o.Kind == vend.KindVending, Form: form, CSRF: csrf, Currency: string(o.Currency),
		ExpectedPrice: fmt.Sprintf("%d/%d", o.Price.Minor, o.Price.Per), CustomPlaceholder: "e.g. 3.00"}
	if v.Vending {
		for _, s := range o.Slots {
			sv := slotView{ID: s.ID, Name: s.Name, Price: money(s.Price.Minor, o.Currency), Empty: s.Empty,
				Expected: fmt.Sprintf("%d/%d", s.Price.Minor, s.Price.Per)}
			if !s.Empty && !v.AnySlot {
				sv.Checked, v.AnySlot = true, true
			}
			v.Slots = append(v.Slots, sv)
		}
	} else {
		for i, n := range presets[o.Unit] {
			cost, err := o.Price.Cost(n)
			if err != nil {
				continue
			}
			v.Caps = append(v.Caps, choice{Value: "u:" + strconv.FormatUint(n, 10),
				Label: quantity(o.Unit, n) + ", up to " + money(cost, o.Currency), Checked: i == 1 || len(presets[o.Unit]) == 1 && i == 0})
		}
	}
	for _, s := range o.Sources {
		if s.Kind == phoneapi.SourceWallet {
			continue
		}
		v.Sources = append(v.Sources, choice{Value: s.ID, Label: sourceLabel(s), Checked: len(v.Sources) == 0})
	}
	return v
}

// sourceName names a channel for a payer.
func sourceName(s phoneapi.PaymentSource) string {
	switch s.Kind {
	case phoneapi.SourceWeChatPay:
		return "WeChat Pay"
	case phoneapi.SourceAlipay:
		return "Alipay"
	case phoneapi.SourceCard:
		if s.Name == "" {
			return "Card"
		}
	}
	if s.Name == "" {
		return s.ID
	}
	return s.Name
}

func sourceLabel(s phoneapi.PaymentSource) string {
	name := sourceName(s)
	if s.Kind == phoneapi.SourceWeChatPay || s.Kind == phoneapi.SourceAlipay {
		name += " (scan a QR code)"
	}
	if s.Test {
		name += " — test mode, no real money"
	}
	return name
}

// parseCheckoutForm turns the machine form into a request, or returns an
// error of kind invalid naming the field.
func parseCheckoutForm(o service.MachineOffer, f url.Values) (phoneapi.CheckoutRequest, error) {
	req := phoneapi.CheckoutRequest{Device: phoneapi.DeviceID(o.Device), Machine: phoneapi.MachineID(o.Machine), Source: f.Get("source")}
	ok := false
	for _, s := range o.Sources {
		ok = ok || (s.ID == req.Source && s.Kind != phoneapi.SourceWallet)
	}
	if !ok {
		return req, vend.Errorf(ErrForm, "choose how to pay")
	}
	// The price the payer was shown: the machine's, or for a vending
	// machine the chosen slot's (each slot posts its own, price.<slot>).
	field := "price"
	if o.Kind == vend.KindVending {
		field = "price." + f.Get("slot")
	}
	if ep := f.Get(field); ep != "" {
		m, p, found := strings.Cut(ep, "/")
		minor, err1 := strconv.ParseInt(m, 10, 64)
		per, err2 := strconv.ParseUint(p, 10, 32)
		if !found || err1 != nil || err2 != nil {
			return req, vend.Errorf(ErrForm, "%s %q", field, ep)
		}
		req.ExpectedPrice = &phoneapi.Price{Minor: minor, Per: uint32(per)}
	}
	if o.Kind == vend.KindVending {
		slot := f.Get("slot")
		for _, s := range o.Slots {
			if s.ID == slot {
				if s.Empty {
					return req, vend.Errorf(ErrForm, "slot %s is sold out", s.Name)
				}
				req.Slot, req.Cap = phoneapi.MachineID(s.ID), phoneapi.Cap{Units: 1}
				return req, req.Validate()
			}
		}
		return req, vend.Errorf(ErrForm, "choose a slot")
	}
	switch c := f.Get("cap"); {
	case strings.HasPrefix(c, "u:"):
		n, err := strconv.ParseUint(c[2:], 10, 64)
		if err != nil || n == 0 {
			return req, vend.Errorf(ErrForm, "amount %q", c)
		}
		req.Cap = phoneapi.Cap{Units: n}
	case c == "custom":
		minor, err := parseMoney(f.Get("custom"))
		if err != nil {
			return req, err
		}
		req.Cap = phoneapi.Cap{Amount: &phoneapi.Amount{Minor: minor, Currency: o.Currency}}
	default:
		return req, vend.Errorf(ErrForm, "choose an amount")
	}
	return req, req.Validate()
}

// parseMoney reads "3", "3.5" or "3.50" as minor units (two decimals),
// more than zero and at most 1,000,000.00.
func parseMoney(s string) (int64, error) {
	s = strings.TrimSpace(s)
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(whole) > 7 || len(frac) > 2 || strings.Trim(whole+frac, "0123456789") != "" {
		return 0, vend.Errorf(ErrForm, "custom amount %q: write it like 3.00", s)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	n, _ := strconv.ParseInt(whole+frac, 10, 64)
	if n <= 0 {
		return 0, vend.Errorf(ErrForm, "custom amount %q: more than zero, please", s)
	}
	return n, nil
}

type refundView struct {
	Amount, State, Source, ID string
}

type checkoutView struct {
	C       phoneapi.Checkout
	Offer   service.MachineOffer
	CSRF    string
	Final   bool
	State   string // in words
	QR      template.HTML
	QRError string
	Card    bool
	Units   string
	Spent   string
	Hold    string
	Capture string
	Return  string
	Refunds []refundView
	Receipt string // path of the receipt link
	// SourceName is the channel the payer paid with, for display.
	SourceName string
	CanStop    bool
	Expires    string
}

var stateWords = map[phoneapi.CheckoutState]string{
	phoneapi.CheckoutAwaitingPayment: "Waiting for your payment",
	phoneapi.CheckoutActionRequired:  "Your card needs confirmation",
	phoneapi.CheckoutStarting:        "Paid — starting the machine",
	phoneapi.CheckoutInSession:       "Running",
	phoneapi.CheckoutSettling:        "Finished — settling",
	phoneapi.CheckoutDone:            "Done",
	phoneapi.CheckoutExpired:         "Expired — not paid in time, nothing taken",
	phoneapi.CheckoutFailed:          "Failed — everything returned",
	phoneapi.CheckoutCancelled:       "Cancelled — everything returned",
}

func newCheckoutView(co phoneapi.Checkout, o service.MachineOffer, csrf string) checkoutView {
	cur := co.Hold.Currency
	if o.Name == "" {
		o.Name = string(co.Machine)
	}
	v := checkoutView{C: co, Offer: o, CSRF: csrf, Final: co.State.Final(), State: stateWords[co.State],
		Hold: co.Hold.String(), Capture: co.Captured.String(), Return: co.Returned.String()}
	if v.State == "" {
		v.State = string(co.State)
	}
	switch co.State { // Stop cancels before the session, stops the machine during it
	case phoneapi.CheckoutAwaitingPayment, phoneapi.CheckoutActionRequired, phoneapi.CheckoutStarting, phoneapi.CheckoutInSession:
		v.CanStop = true
	}
	if co.State == phoneapi.CheckoutAwaitingPayment || co.State == phoneapi.CheckoutActionRequired {
		if co.CodeURL != "" {
			svg, err := stickers.QRSVG(co.CodeURL, "QR code to pay "+co.Hold.String())
			if err != nil {
				v.QRError = err.Error()
			}
			v.QR = template.HTML(svg) // our own markup: paths and numbers only
		} else {
			v.Card = true
		}
		v.Expires = co.ExpiresAt.UTC().Format("15:04 UTC")
	}
	v.Units = strconv.FormatUint(co.Units, 10)
	if o.Unit.Valid() {
		v.Units = quantity(o.Unit, co.Units)
	}
	if cost, err := co.Price.Cost(co.Units); err == nil {
		v.Spent = money(cost, cur)
	}
	names := map[string]string{}
	for _, s := range o.Sources {
		names[s.ID] = sourceName(s)
	}
	name := func(id string) string {
		if n := names[id]; n != "" {
			return n
		}
		return id
	}
	v.SourceName = name(co.Source)
	for _, r := range co.Refunds {
		v.Refunds = append(v.Refunds, refundView{Amount: r.Amount.String(), State: refundWords(r.State), Source: name(r.Source), ID: r.RefundNo})
	}
	if u, err := url.Parse(co.ReceiptURL); err == nil && strings.HasPrefix(u.Path, "/r/") {
		v.Receipt = u.Path
	}
	return v
}

func refundWords(s phoneapi.RefundState) string {
	switch s {
	case phoneapi.RefundPending:
		return "on its way"
	case phoneapi.RefundSucceeded:
		return "refunded"
	case phoneapi.RefundFailed:
		return "failed — the operator has been alerted"
	}
	return string(s)
}

// eventJSON is what the events stream sends: the checkout and the same
// words and figures the page shows.
type eventJSON struct {
	State   phoneapi.CheckoutState `json:"state"`
	Final   bool                   `json:"final"`
	Words   string                 `json:"words"`
	Units   string                 `json:"units"`
	Spent   string                 `json:"spent"`
	Receipt string                 `json:"receipt,omitempty"`
}

func eventView(co phoneapi.Checkout, o service.MachineOffer) eventJSON {
	v := newCheckoutView(co, o, "")
	return eventJSON{State: co.State, Final: v.Final, Words: v.State, Units: v.Units, Spent: v.Spent, Receipt: v.Receipt}
}
