package service

import (
	"context"
	"fmt"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Role is what an operator account may do in its operator's business. The
// roles are ordered: owner > manager > technician > viewer; each may do
// everything the roles below it may.
type Role string

// The roles of an operator account.
const (
	RoleOwner      Role = "owner"      // everything, including users, the audit log, alert settings and refund approval
	RoleManager    Role = "manager"    // prices, settle/void, refunds, exports, provisioning
	RoleTechnician Role = "technician" // acknowledge alerts, test outputs, reboot, restock
	RoleViewer     Role = "viewer"     // look only
)

// Roles lists the roles from the most to the least powerful.
var Roles = []Role{RoleOwner, RoleManager, RoleTechnician, RoleViewer}

// ErrRole is a role name that is none of Roles.
var ErrRole = vend.E(vend.Invalid, "request.field", "service: invalid field: role (want owner, manager, technician or viewer)")

// ParseRole returns the role named s. Errors: ErrRole.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if r.rank() == 0 {
		return "", vend.Errorf(ErrRole, "%q", s)
	}
	return r, nil
}

// rank is 4 for owner down to 1 for viewer, 0 for an unknown role.
func (r Role) rank() int {
	switch r {
	case RoleOwner:
		return 4
	case RoleManager:
		return 3
	case RoleTechnician:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}

// AtLeast reports whether r is min or a more powerful role. An unknown
// role is below every role.
func (r Role) AtLeast(min Role) bool { return r.rank() > 0 && r.rank() >= min.rank() }

// Perm is one thing an operator account may be allowed to do. Its value
// names it in errors and in the console.
type Perm string

// The permissions, with the least role that has each.
const (
	PermView          Perm = "view"           // viewer: fleet, alerts, sessions, revenue
	PermAckAlert      Perm = "ack_alert"      // technician: acknowledge an alert
	PermOperate       Perm = "operate"        // technician: output test, reboot, restock
	PermPrice         Perm = "price"          // manager: change prices and the web checkout switch
	PermSettle        Perm = "settle"         // manager: settle or void an unreported session
	PermRefund        Perm = "refund"         // manager: refund a session
	PermExport        Perm = "export"         // manager: CSV exports of sessions, revenue, ledger
	PermProvision     Perm = "provision"      // manager: add devices, bundles, stickers
	PermApproveRefund Perm = "approve_refund" // owner: second approval of a large refund
	PermUsers         Perm = "users"          // owner: accounts and their roles
	PermAudit         Perm = "audit"          // owner: the audit log and its export
	PermAlertSettings Perm = "alert_settings" // owner: alert thresholds, quiet periods, delivery
)

// permRole is the least role that has each permission.
var permRole = map[Perm]Role{
	PermView:          RoleViewer,
	PermAckAlert:      RoleTechnician,
	PermOperate:       RoleTechnician,
	PermPrice:         RoleManager,
	PermSettle:        RoleManager,
	PermRefund:        RoleManager,
	PermExport:        RoleManager,
	PermProvision:     RoleManager,
	PermApproveRefund: RoleOwner,
	PermUsers:         RoleOwner,
	PermAudit:         RoleOwner,
	PermAlertSettings: RoleOwner,
}

// MinRole returns the least role that has p, or "" for an unknown
// permission (which no role has).
func (p Perm) MinRole() Role { return permRole[p] }

// Can reports whether role r has permission p.
func (r Role) Can(p Perm) bool {
	min, ok := permRole[p]
	return ok && r.AtLeast(min)
}

// Actor is who makes a request: an operator account signed in to the
// console or the operator API. Services read it from the context to check
// permissions (Authorize) and to record changes (Audit).
type Actor struct {
	Operator string // the tenant, "op_…"
	Account  string // the operator account, "opa_…"
	Email    string
	Role     Role
	IP       string // the client address as the HTTP layer sees it (trusted proxies applied)
}

type actorKey struct{}

// WithActor returns ctx carrying a as the request's actor.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor that ctx carries, if any.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// ErrForbidden refuses a request whose actor's role lacks a permission
// (HTTP 403). Its message names the permission and the least role that
// has it.
var ErrForbidden = vend.E(vend.Unauthorized, "auth.forbidden", "service: not allowed for this account's role")

// Authorize checks that the actor in ctx may do p: nil when allowed,
// otherwise ErrForbidden naming p. A context without an actor is the
// cloud's own work or an administrator's command line (which holds the
// database already) and is allowed; the console and the operator API
// always put the signed-in account's actor in the context.
func (s *Service) Authorize(ctx context.Context, p Perm) error {
	a, ok := ActorFrom(ctx)
	if !ok {
		return nil
	}
	return Allowed(a, p)
}

// Allowed reports, as an error, whether a may do p: nil, or ErrForbidden
// naming p and the least role that has it.
func Allowed(a Actor, p Perm) error {
	if a.Role.Can(p) {
		return nil
	}
	min := p.MinRole()
	if min == "" {
		return vend.Errorf(ErrForbidden, "unknown permission %q", string(p))
	}
	return fmt.Errorf("%w: %s needs the %s role or above; this account is %s", ErrForbidden, p, min, roleName(a.Role))
}

func roleName(r Role) string {
	if r == "" {
		return "without a role"
	}
	return string(r)
}

// authorizeFor is Authorize for a request about operator's business: the
// actor, when there is one, must also belong to operator (another
// operator's account is refused as auth.forbidden).
func (s *Service) authorizeFor(ctx context.Context, operator string, p Perm) error {
	if a, ok := ActorFrom(ctx); ok && a.Operator != operator {
		return vend.Errorf(ErrForbidden, "the account belongs to another operator")
	}
	return s.Authorize(ctx, p)
}

// accountView is what the audit log keeps of an account.
type accountView struct {
	Email    string `json:"email"`
	Role     string `json:"role"`
	Disabled bool   `json:"disabled"`
}

func viewAccount(a store.OperatorAccount) accountView {
	return accountView{Email: a.Email, Role: a.Role, Disabled: a.Disabled}
}

// OperatorAccounts lists operator's console accounts (PermUsers).
// Errors: auth.forbidden and the store's.
func (s *Service) OperatorAccounts(ctx context.Context, operator string) ([]store.OperatorAccount, error) {
	if err := s.authorizeFor(ctx, operator, PermUsers); err != nil {
		return nil, err
	}
	return s.st.OperatorAccounts(ctx, operator)
}

// AddOperatorAccount adds a console account with role and an initial
// password (8-72 bytes; its user should change it) to operator
// (PermUsers), audited as account.add. Errors: auth.forbidden,
// request.field (role), store.input, auth.email_taken.
func (s *Service) AddOperatorAccount(ctx context.Context, operator, email, password string, role Role) (store.OperatorAccount, error) {
	if err := s.authorizeFor(ctx, operator, PermUsers); err != nil {
		return store.OperatorAccount{}, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return store.OperatorAccount{}, err
	}
	a, err := s.st.CreateOperatorAccountRole(ctx, operator, email, password, string(role))
	if err != nil {
		return store.OperatorAccount{}, err
	}
	s.audited(ctx, operator, "account.add", a.Email, nil, viewAccount(a))
	return a, nil
}

// SetAccountRole gives operator's account the role (PermUsers), audited
// as account.role with the role before and after. Errors: auth.forbidden,
// request.field, operator_account.not_found, account.last_owner.
func (s *Service) SetAccountRole(ctx context.Context, operator, account string, role Role) (store.OperatorAccount, error) {
	if err := s.authorizeFor(ctx, operator, PermUsers); err != nil {
		return store.OperatorAccount{}, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return store.OperatorAccount{}, err
	}
	before, after, err := s.st.SetOperatorAccountRole(ctx, operator, account, string(role))
	if err != nil {
		return store.OperatorAccount{}, err
	}
	if before.Role != after.Role {
		s.audited(ctx, operator, "account.role", after.Email, viewAccount(before), viewAccount(after))
	}
	return after, nil
}

// SetAccountDisabled disables (revoking every session of the account at
// once) or enables operator's account (PermUsers), audited as
// account.disable or account.enable. It returns the account and how many
// sessions it revoked. Errors: auth.forbidden,
// operator_account.not_found, account.last_owner.
func (s *Service) SetAccountDisabled(ctx context.Context, operator, account string, disabled bool) (store.OperatorAccount, int, error) {
	if err := s.authorizeFor(ctx, operator, PermUsers); err != nil {
		return store.OperatorAccount{}, 0, err
	}
	before, after, n, err := s.st.SetOperatorAccountDisabledByID(ctx, operator, account, disabled)
	if err != nil {
		return store.OperatorAccount{}, 0, err
	}
	if before.Disabled != after.Disabled {
		action := "account.enable"
		if disabled {
			action = "account.disable"
		}
		type change struct {
			accountView
			RevokedSessions int `json:"revoked_sessions,omitempty"`
		}
		s.audited(ctx, operator, action, after.Email, viewAccount(before), change{viewAccount(after), n})
	}
	return after, n, nil
}
