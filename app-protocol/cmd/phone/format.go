package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// target is one machine (and, for vending, slot) the user can buy from.
type target struct {
	n    *Nearby
	m    *phoneapi.Machine
	slot *phoneapi.Slot
}

// rows numbers the machines of the listing, in its order, from 1.
func rows(nearby []Nearby) []target {
	var out []target
	for i := range nearby {
		for j := range nearby[i].Machines {
			out = append(out, target{n: &nearby[i], m: &nearby[i].Machines[j]})
		}
	}
	return out
}

// formatNearby renders the machines in range, one numbered row per machine
// (the numbers the prompt asks for) and one row per vending slot.
func formatNearby(nearby []Nearby) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSIGNAL\tDEVICE\tMACHINE\tNAME\tSTATE\tPRICE")
	i := 0
	for _, n := range nearby {
		for k, mc := range n.Machines {
			i++
			sig, dev := "", ""
			if k == 0 {
				sig, dev = fmt.Sprintf("%d dBm", n.RSSI), string(n.Device.ID)
				if n.Device.Name != "" && n.Device.Name != string(n.Device.ID) {
					dev += " (" + n.Device.Name + ")"
				}
			}
			price := formatPrice(mc.Price, mc.Currency, mc.Unit)
			if len(mc.Slots) > 0 {
				price = fmt.Sprintf("%d slots", len(mc.Slots))
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i, sig, dev, mc.ID, mc.Name, mc.State, price)
			for _, s := range mc.Slots {
				state := "available"
				if !s.Available {
					state = "empty"
				}
				fmt.Fprintf(tw, "\t\t\t  slot %s\t%s\t%s\t%s\n", s.ID, s.Name, state, vend.Amount{Minor: s.Price.Minor, Currency: mc.Currency})
			}
		}
	}
	tw.Flush()
	return b.String()
}

// formatPrice renders a price: "0.50 EUR per 1000 ml", "3.50 EUR per cycle".
func formatPrice(p phoneapi.Price, cur phoneapi.Currency, u phoneapi.Unit) string {
	a := vend.Amount{Minor: p.Minor, Currency: cur}
	if p.Per == 1 {
		return fmt.Sprintf("%s per %s", a, u)
	}
	return fmt.Sprintf("%s per %d %s", a, p.Per, u)
}

// formatUnits renders a quantity with its unit, "1500 ml", "1 cycle",
// "2 items".
func formatUnits(n uint64, u phoneapi.Unit) string {
	name := u.String()
	if n != 1 && (u == vend.UnitCycle || u == vend.UnitItem) {
		name += "s"
	}
	return fmt.Sprintf("%d %s", n, name)
}

// formatProgress renders one progress line: a bar of width cells for units
// out of capUnits, then the units and the money against the hold:
//
//	[##########----------]  50%  2000/4000 ml  1.00/2.00 EUR
func formatProgress(units, capUnits uint64, u phoneapi.Unit, amount, hold phoneapi.Amount, width int) string {
	frac := 0.0
	if capUnits > 0 {
		frac = min(float64(units)/float64(capUnits), 1)
	}
	full := int(frac * float64(width))
	bar := strings.Repeat("#", full) + strings.Repeat("-", width-full)
	money := fmt.Sprintf("%s/%s", minorString(amount.Minor), hold)
	return fmt.Sprintf("[%s] %3d%%  %d/%s  %s", bar, int(frac*100), units, formatUnits(capUnits, u), money)
}

// minorString renders minor units with two decimals, as vend.Amount does.
func minorString(minor int64) string {
	s := vend.Amount{Minor: minor, Currency: "XXX"}.String()
	return strings.TrimSuffix(s, " XXX")
}

// formatReceipt renders a receipt for people.
func formatReceipt(r *phoneapi.Receipt) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(&b, "receipt %s\n", r.Number)
	what := string(r.Device) + " / " + string(r.Machine)
	if r.Slot != "" {
		what += " / slot " + string(r.Slot)
	}
	fmt.Fprintf(tw, "  machine\t%s\n", what)
	fmt.Fprintf(tw, "  delivered\t%s at %s\n", formatUnits(r.Units, r.Unit), formatPrice(r.Price, r.Currency, r.Unit))
	fmt.Fprintf(tw, "  outcome\t%s\n", r.Outcome)
	fmt.Fprintf(tw, "  held\t%s from %s\n", r.Held, r.Source)
	fmt.Fprintf(tw, "  charged\t%s\n", r.Captured)
	if r.Captured.Minor == 0 && r.Held.Minor > 0 {
		fmt.Fprintf(tw, "  refunded\t%s (all of it)\n", r.Released)
	} else {
		fmt.Fprintf(tw, "  released\t%s\n", r.Released)
	}
	refunded, parts := receiptRefunds(r)
	formatOperatorRefund(tw, refunded, parts)
	if !r.StartedAt.IsZero() {
		fmt.Fprintf(tw, "  ran\t%s (%s)\n", r.StartedAt.Local().Format(time.TimeOnly), r.EndedAt.Sub(r.StartedAt).Round(100*time.Millisecond))
	} else {
		fmt.Fprintf(tw, "  ran\tnever started\n")
	}
	tw.Flush()
	return b.String()
}

// parseAmount reads money as "2.00"/"2.5"/"2" with a dot (major units, at
// most two decimals) or as a plain integer of minor units ("200"). Only
// positive amounts are valid.
func parseAmount(s string) (int64, error) {
	s = strings.TrimSpace(s)
	major, frac, dot := strings.Cut(s, ".")
	if !dot {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q: want a positive amount such as 2.00 or 200 (minor units)", s)
		}
		return n, nil
	}
	if len(frac) > 2 || major == "" && frac == "" {
		return 0, fmt.Errorf("%q: at most two decimals", s)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	if major == "" {
		major = "0"
	}
	a, err1 := strconv.ParseUint(major, 10, 32)
	c, err2 := strconv.ParseUint(frac, 10, 8)
	if err1 != nil || err2 != nil || a*100+c == 0 {
		return 0, fmt.Errorf("%q: want a positive amount such as 2.00 or 200 (minor units)", s)
	}
	return int64(a*100 + c), nil
}

// formatInRange is the one-line summary of a scan, strongest first:
// "in range: demo-water -48 dBm, demo-laundry -60 dBm".
func formatInRange(nearby []Nearby) string {
	parts := make([]string, len(nearby))
	for i, n := range nearby {
		parts[i] = fmt.Sprintf("%s %d dBm", n.Device.ID, n.RSSI)
	}
	return "in range: " + strings.Join(parts, ", ")
}

// formatPayment renders a payment as a receipt: our order number, the
// channel, the amount, the provider's transaction ID once paid, and what
// has been refunded of it.
func formatPayment(p *Payment, now time.Time) string {
	var b bytes.Buffer
	row := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "  %-12s "+format+"\n", append([]any{label}, args...)...)
	}
	fmt.Fprintf(&b, "payment %s\n", p.Order)
	row("channel", "%s", sourceName(p))
	row("amount", "%s", p.Amount)
	state := string(p.State)
	switch p.State {
	case PaymentPending:
		if !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt) {
			state += ", expired " + clock(p.ExpiresAt)
		} else {
			state += ", payable until " + clock(p.ExpiresAt)
		}
	case PaymentPaid:
		state += " " + clock(p.PaidAt)
	case PaymentClosed:
		state += " unpaid, nothing charged"
	case PaymentFailed:
		state += ", nothing charged"
	}
	row("state", "%s", state)
	row("created", "%s", clock(p.CreatedAt))
	if p.ProviderTxID != "" {
		row("provider tx", "%s", p.ProviderTxID)
	}
	if p.State == PaymentPaid {
		switch {
		case p.Refunded.Minor == 0:
			row("refunded", "nothing")
		case p.Refunded.Minor >= p.Amount.Minor:
			row("refunded", "%s (all of it)", p.Refunded)
		default:
			row("refunded", "%s", p.Refunded)
		}
	}
	return b.String()
}

// formatWithdrawal renders a withdrawal: its state and total, then one
// row per refund with the order it returns money of, the channel, the
// amount, its state and the provider's refund ID.
func formatWithdrawal(wd *Withdrawal) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "withdrawal %s %s: %s back to the channels it came from\n", wd.ID, wd.State, wd.Amount)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  REFUND\tORDER\tCHANNEL\tAMOUNT\tSTATE\tPROVIDER REFUND ID")
	for _, r := range wd.Refunds {
		id := r.ProviderRefundID
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", r.RefundNo, r.Order, r.Source, r.Amount, r.State, id)
	}
	tw.Flush()
	return b.String()
}

// formatOperatorRefund adds to a receipt what an operator refunded of the
// charge: each part returned through the payer's original channel (with
// the order it was refunded against and the provider's refund ID), and
// the rest, returned to the wallet. Nothing when refunded is zero.
func formatOperatorRefund(tw io.Writer, refunded phoneapi.Amount, parts []RefundPart) {
	if refunded.Minor == 0 {
		return
	}
	fmt.Fprintf(tw, "  operator refund\t%s\n", refunded)
	rest := refunded.Minor
	for _, p := range parts {
		id := p.ProviderRefundID
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(tw, "  \t%s to %s, order %s, refund %s (%s), provider refund ID %s\n", p.Amount, p.Source, p.Order, p.RefundNo, p.State, id)
		rest -= p.Amount.Minor
	}
	if rest > 0 {
		fmt.Fprintf(tw, "  \t%s to the wallet\n", vend.Amount{Minor: rest, Currency: refunded.Currency})
	}
}
