package service

import (
	"context"
	"fmt"

	"beaconvend/cloud/store"
)

// ReconMissingInOurs is reconciliation's hook for a statement row the
// provider paid that we never booked (cloud/payments/reconcile): a
// payment of an order we issued is asked of its channel and recorded, so a
// paid answer credits the wallet once (key chan:<channel>:<order>, the
// same as a notification's); anything else (an order number we never
// issued, a refund we do not know, an order the provider's query does not
// call paid) becomes an alert for an operator. It is idempotent: a re-run
// of the day finds the order credited, and records no alert twice.
func (s *Service) ReconMissingInOurs(ctx context.Context, channel string, o store.ReconOutcome) error {
	if o.RowKind == "payment" {
		if p, err := s.st.GetPayment(ctx, o.OrderNo); err == nil && p.Channel == channel {
			if ch, ok := s.channel(channel); ok {
				p, err := s.queryPayment(ctx, ch, p)
				if err != nil || p.State == store.PaymentPaid {
					return err
				}
				// The statement says paid, the provider's own answer
				// does not: nothing is credited on a statement's word.
				return s.reconAlert(ctx, store.ChannelAlert{Channel: channel, OrderNo: o.OrderNo, Code: "recon.missing_in_ours",
					Detail: fmt.Sprintf("payment %s listed as paid (%s) by the statement, %s by the provider's query; not credited", o.OrderNo, o.ProviderID, p.State)})
			}
		}
	}
	return s.reconAlert(ctx, store.ChannelAlert{Channel: channel, OrderNo: o.OrderNo, Code: "recon.missing_in_ours",
		Detail: fmt.Sprintf("%s %s %s at the provider (%s), not in our records", o.RowKind, o.OrderNo, o.RefundNo, o.ProviderID)})
}

// reconAlert records a reconciliation alert unless the same one (channel,
// order, code and detail) was recorded before: a re-run of the day, which
// calls the hooks again for every open outcome, alerts no one twice.
func (s *Service) reconAlert(ctx context.Context, a store.ChannelAlert) error {
	prev, err := s.st.ChannelAlerts(ctx, a.OrderNo)
	if err != nil {
		return err
	}
	for _, p := range prev {
		if p.Channel == a.Channel && p.Code == a.Code && p.Detail == a.Detail {
			return nil
		}
	}
	a.At = s.now()
	return s.recordAlert(ctx, a)
}

// ReconMissingInTheirs is reconciliation's hook for a record we credited
// that the provider's statement does not list: an alert for an operator
// (once, however often the day is run).
// The outcome itself stays open (action freeze) in the reconciliation
// results until an operator resolves it.
func (s *Service) ReconMissingInTheirs(ctx context.Context, channel string, o store.ReconOutcome) error {
	return s.reconAlert(ctx, store.ChannelAlert{Channel: channel, OrderNo: o.OrderNo, Code: "recon.missing_in_theirs",
		Detail: fmt.Sprintf("%s %s %s credited by us, absent from the provider's statement", o.RowKind, o.OrderNo, o.RefundNo)})
}
