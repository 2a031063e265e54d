package service

import (
	"context"
	"encoding/json"
	"fmt"

	"beaconvend/cloud/store"
)

// Audit records a change made by the actor in ctx in the audit log:
// action (a dotted verb: "price.set", "session.settle", "account.role"),
// target (what it changed: "device/machine", a session ID, an account's
// email) and the state before and after (JSON-encodable values, nil for
// none). The service methods that change an operator's business call it
// right after the change, so the console and the operator API are
// audited alike. Without an actor in ctx (the cloud itself, the command
// line) the entry names no account and no operator: use AuditFor.
// Errors: store.ErrInput (an empty action, a value that does not encode
// as JSON or is too long) and the store's.
func (s *Service) Audit(ctx context.Context, action, target string, before, after any) error {
	return s.AuditFor(ctx, "", action, target, before, after)
}

// AuditFor is Audit for a change to operator's business: the entry is
// the actor's when ctx carries one (its operator then), else the cloud's
// own ("system") for operator.
func (s *Service) AuditFor(ctx context.Context, operator, action, target string, before, after any) error {
	e := store.AuditEntry{Operator: operator, Action: action, Target: target, Email: "system"}
	if a, ok := ActorFrom(ctx); ok {
		e.Operator, e.Account, e.Email, e.Role, e.IP = a.Operator, a.Account, a.Email, string(a.Role), a.IP
	}
	var err error
	if e.Before, err = auditJSON(before); err != nil {
		return err
	}
	if e.After, err = auditJSON(after); err != nil {
		return err
	}
	_, err = s.st.AppendAudit(ctx, e)
	return err
}

func auditJSON(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return raw, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: audit value: %v", store.ErrInput, err)
	}
	return b, nil
}

// audited records a change the service just made for operator. The
// change is committed already: an audit entry that cannot be written is
// logged (at error, with everything it would have said) rather than
// turning a done change into a failed request.
func (s *Service) audited(ctx context.Context, operator, action, target string, before, after any) {
	if err := s.AuditFor(context.WithoutCancel(ctx), operator, action, target, before, after); err != nil {
		a, _ := ActorFrom(ctx)
		s.log.Error("service: audit entry not written", "err", err, "operator", operator, "action", action, "target", target,
			"account", a.Account, "before", fmt.Sprint(before), "after", fmt.Sprint(after))
	}
}

// AuditLog returns operator's audit entries matching f, newest first
// (store.AuditLog). It needs PermAudit. Errors: auth.forbidden,
// store.input.
func (s *Service) AuditLog(ctx context.Context, operator string, f store.AuditFilter) ([]store.AuditEntry, error) {
	if err := s.authorizeFor(ctx, operator, PermAudit); err != nil {
		return nil, err
	}
	return s.st.AuditLog(ctx, operator, f)
}
