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
// issued, a refund we do not know) becomes an alert for an operator. It is
// idempotent: a re-run of the day finds the order credited.
func (s *Service) ReconMissingInOurs(ctx context.Context, channel string, o store.ReconOutcome) error {
	if o.RowKind == "payment" {
		if p, err := s.st.GetPayment(ctx, o.OrderNo); err == nil && p.Channel == channel {
			if ch, ok := s.channel(channel); ok {
				_, err := s.queryPayment(ctx, ch, p)
				return err
			}
		}
	}
	return s.st.RecordChannelAlert(ctx, store.ChannelAlert{Channel: channel, OrderNo: o.OrderNo, Code: "recon.missing_in_ours",
		Detail: fmt.Sprintf("%s %s %s at the provider (%s), not in our records", o.RowKind, o.OrderNo, o.RefundNo, o.ProviderID), At: s.now()})
}

// ReconMissingInTheirs is reconciliation's hook for a record we credited
// that the provider's statement does not list: an alert for an operator.
// The outcome itself stays open (action freeze) in the reconciliation
// results until an operator resolves it.
func (s *Service) ReconMissingInTheirs(ctx context.Context, channel string, o store.ReconOutcome) error {
	return s.st.RecordChannelAlert(ctx, store.ChannelAlert{Channel: channel, OrderNo: o.OrderNo, Code: "recon.missing_in_theirs",
		Detail: fmt.Sprintf("%s %s %s credited by us, absent from the provider's statement", o.RowKind, o.OrderNo, o.RefundNo), At: s.now()})
}
