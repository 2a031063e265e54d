package service_test

import (
	"context"
	"strings"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// Each role has exactly the permissions of its rank and those below.
func TestRolePermissions(t *testing.T) {
	want := map[service.Perm]service.Role{
		service.PermView: service.RoleViewer, service.PermAckAlert: service.RoleTechnician, service.PermOperate: service.RoleTechnician,
		service.PermPrice: service.RoleManager, service.PermSettle: service.RoleManager, service.PermRefund: service.RoleManager,
		service.PermExport: service.RoleManager, service.PermProvision: service.RoleManager,
		service.PermApproveRefund: service.RoleOwner, service.PermUsers: service.RoleOwner, service.PermAudit: service.RoleOwner,
		service.PermAlertSettings: service.RoleOwner,
	}
	rank := map[service.Role]int{service.RoleViewer: 1, service.RoleTechnician: 2, service.RoleManager: 3, service.RoleOwner: 4}
	for p, min := range want {
		for _, r := range service.Roles {
			if got := r.Can(p); got != (rank[r] >= rank[min]) {
				t.Errorf("%s.Can(%s) = %v, want %v", r, p, got, !got)
			}
		}
		if service.Role("").Can(p) || service.Role("admin").Can(p) {
			t.Errorf("an unknown role has %s", p)
		}
	}
	if service.RoleOwner.Can("no_such_perm") {
		t.Error("an owner has an unknown permission")
	}
	for _, s := range []string{"", "Owner", "admin", "owner "} {
		if _, err := service.ParseRole(s); vend.CodeOf(err) != "request.field" {
			t.Errorf("ParseRole(%q) = %v, want request.field", s, err)
		}
	}
	err := service.Allowed(service.Actor{Role: service.RoleViewer}, service.PermPrice)
	if vend.CodeOf(err) != "auth.forbidden" || !strings.Contains(err.Error(), "price needs the manager role") || !strings.HasPrefix(err.Error(), "service:") {
		t.Errorf("Allowed(viewer, price) = %v", err)
	}
}

// A price change is refused below manager (nothing changes, nothing is
// sent, nothing is audited) and to another operator's account; a
// manager's change is sent and audited with who, before and after.
func TestSetPricesAuthorizedAndAudited(t *testing.T) {
	svc, st, pub, _, _ := setup(t)
	ctx := context.Background()
	d, _ := st.GetDevice(ctx, "wd-1")
	op := d.OperatorID
	price := vend.Price{Minor: 70, Per: 1000}
	for _, a := range []service.Actor{
		{Operator: op, Account: "opa_v", Email: "v@example.com", Role: service.RoleViewer},
		{Operator: op, Account: "opa_t", Email: "t@example.com", Role: service.RoleTechnician},
		{Operator: "op_other", Account: "opa_o", Email: "o@example.com", Role: service.RoleOwner},
	} {
		err := svc.SetPrices(service.WithActor(ctx, a), op, "wd-1", "tap1", price, nil)
		if vend.CodeOf(err) != "auth.forbidden" {
			t.Errorf("SetPrices as %s of %s = %v, want auth.forbidden", a.Role, a.Operator, err)
		}
	}
	if d, _ := st.GetDevice(ctx, "wd-1"); d.Machines[0].Price.Minor != 50 || len(pub.Sent) != 0 {
		t.Fatalf("refused changes: price %d, %d commands sent", d.Machines[0].Price.Minor, len(pub.Sent))
	}
	if es, _ := st.AuditLog(ctx, op, store.AuditFilter{}); len(es) != 0 {
		t.Fatalf("refused changes audited: %+v", es)
	}
	mgr := service.Actor{Operator: op, Account: "opa_m", Email: "m@example.com", Role: service.RoleManager, IP: "192.0.2.7"}
	if err := svc.SetPrices(service.WithActor(ctx, mgr), op, "wd-1", "tap1", price, nil); err != nil {
		t.Fatal(err)
	}
	es, err := st.AuditLog(ctx, op, store.AuditFilter{})
	if err != nil || len(es) != 1 {
		t.Fatalf("audit = %+v, %v; want one entry", es, err)
	}
	e := es[0]
	if e.Action != "price.set" || e.Target != "wd-1/tap1" || e.Account != "opa_m" || e.Email != "m@example.com" || e.Role != "manager" || e.IP != "192.0.2.7" ||
		string(e.Before) != `{"price":{"minor":50,"per":1000}}` || string(e.After) != `{"price":{"minor":70,"per":1000}}` {
		t.Errorf("audit entry = %+v (before %s, after %s)", e, e.Before, e.After)
	}
	// The cloud's own callers (no actor) are allowed and audited as the
	// system.
	if err := svc.SetPrices(ctx, op, "wd-1", "tap1", vend.Price{Minor: 80, Per: 1000}, nil); err != nil {
		t.Fatal(err)
	}
	if es, _ := st.AuditLog(ctx, op, store.AuditFilter{Limit: 1}); len(es) != 1 || es[0].Email != "system" || es[0].Account != "" {
		t.Errorf("audit of a change without an actor = %+v", es)
	}
}

// Account changes need the owner and are audited; an operator keeps an
// enabled owner.
func TestAccountChangesAudited(t *testing.T) {
	svc, st, _, _, _ := setup(t)
	ctx := context.Background()
	d, _ := st.GetDevice(ctx, "wd-1")
	op := d.OperatorID
	own, err := st.CreateOperatorAccount(ctx, op, "own@example.com", "password-123")
	if err != nil {
		t.Fatal(err)
	}
	owner := service.WithActor(ctx, service.Actor{Operator: op, Account: own.ID, Email: own.Email, Role: service.RoleOwner})
	manager := service.WithActor(ctx, service.Actor{Operator: op, Account: "opa_m", Email: "m@example.com", Role: service.RoleManager})
	if _, err := svc.AddOperatorAccount(manager, op, "x@example.com", "password-123", service.RoleViewer); vend.CodeOf(err) != "auth.forbidden" {
		t.Fatalf("a manager adds an account: %v", err)
	}
	if _, err := svc.AddOperatorAccount(owner, op, "x@example.com", "password-123", "admin"); vend.CodeOf(err) != "request.field" {
		t.Fatalf("an unknown role: %v", err)
	}
	a, err := svc.AddOperatorAccount(owner, op, "x@example.com", "password-123", service.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetAccountRole(owner, op, a.ID, service.RoleTechnician); err != nil {
		t.Fatal(err)
	}
	if _, n, err := svc.SetAccountDisabled(owner, op, a.ID, true); err != nil || n != 0 {
		t.Fatalf("disable = %d, %v", n, err)
	}
	if _, err := svc.SetAccountRole(owner, op, own.ID, service.RoleViewer); vend.CodeOf(err) != "account.last_owner" {
		t.Fatalf("demoting the last owner: %v", err)
	}
	es, err := svc.AuditLog(owner, op, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Action+" "+e.Target+" "+string(e.After))
	}
	want := []string{
		`account.disable x@example.com {"email":"x@example.com","role":"technician","disabled":true}`,
		`account.role x@example.com {"email":"x@example.com","role":"technician","disabled":false}`,
		`account.add x@example.com {"email":"x@example.com","role":"viewer","disabled":false}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := svc.AuditLog(manager, op, store.AuditFilter{}); vend.CodeOf(err) != "auth.forbidden" {
		t.Errorf("a manager reads the audit log: %v", err)
	}
}
