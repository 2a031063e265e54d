package service_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/csv"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// money is a service over a real SQLite store with one operator, one
// device whose signing key the test holds, and one payer with 100.00 EUR.
type money struct {
	t    *testing.T
	ctx  context.Context
	svc  *service.Service
	st   *store.Store
	op   string
	user string
	priv ed25519.PrivateKey
	seq  uint64
}

func newMoney(t *testing.T) *money {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	op, _ := st.CreateOperator(ctx, "op")
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := st.CreateDevice(ctx, store.Device{ID: "wd-1", OperatorID: op.ID, Name: "=cmd|' /C calc'!A0", IdentityKey: [16]byte{1}, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	u, _ := st.CreateUser(ctx, "a@example.com", "password-123")
	if _, err := st.TopUp(ctx, u.ID, vend.Amount{Minor: 10000, Currency: "EUR"}, "sandbox_card", "k1"); err != nil {
		t.Fatal(err)
	}
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: &FakePublisher{}, CloudKey: cloud})
	if err != nil {
		t.Fatal(err)
	}
	return &money{t: t, ctx: ctx, svc: svc, st: st, op: op.ID, user: u.ID, priv: priv}
}

// as returns a context acting as an account of role.
func (m *money) as(role service.Role, account string) context.Context {
	return service.WithActor(m.ctx, service.Actor{Operator: m.op, Account: account, Email: account + "@example.com", Role: role})
}

// settled runs a session of units ml and settles it from a signed report
// (0.50 EUR per litre).
func (m *money) settled(key string, units uint64) store.Session {
	m.t.Helper()
	ss, err := m.st.StartSession(m.ctx, store.StartInput{User: m.user, Device: "wd-1", Machine: "tap1", CapUnits: 20000, IdemKey: key})
	if err != nil {
		m.t.Fatal(err)
	}
	if err := m.st.Advance(m.ctx, ss.ID, store.Running, time.Now()); err != nil {
		m.t.Fatal(err)
	}
	cost, _ := ss.Price.Cost(units)
	m.seq++
	u := signed.Usage{Device: ss.Device, Seq: m.seq, Session: ss.ID, Machine: ss.Machine, Unit: ss.Unit, Units: units, Price: ss.Price,
		Currency: ss.Currency, Amount: cost, StartedAt: time.Now(), EndedAt: time.Now().Add(time.Second), MeterEnd: units, Outcome: vend.OutcomeCompleted}
	b, err := signed.SignUsage(m.priv, u)
	if err != nil {
		m.t.Fatal(err)
	}
	keys, _ := signed.NewKeys(m.priv.Public().(ed25519.PublicKey))
	v, err := signed.OpenUsage(b, keys)
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := m.st.Settle(m.ctx, v, b); err != nil {
		m.t.Fatal(err)
	}
	return ss
}

func (m *money) revenue() int64 {
	m.t.Helper()
	a, err := m.st.Balance(m.ctx, store.OperatorRevenue, m.op, "EUR")
	if err != nil {
		m.t.Fatal(err)
	}
	return a.Minor
}

func euro(minor int64) vend.Amount { return vend.Amount{Minor: minor, Currency: "EUR"} }

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if vend.CodeOf(err) != code {
		t.Fatalf("error = %v (code %q), want %q", err, vend.CodeOf(err), code)
	}
}

func TestMoneyRoles(t *testing.T) {
	m := newMoney(t)
	ss := m.settled("s1", 10000) // 5.00
	viewer, tech, mgr := m.as(service.RoleViewer, "v"), m.as(service.RoleTechnician, "t"), m.as(service.RoleManager, "m")
	if _, err := m.svc.SearchSessions(viewer, store.SessionQuery{}); err != nil {
		t.Fatalf("viewer search: %v", err)
	}
	if _, err := m.svc.SessionDetail(viewer, ss.ID); err != nil {
		t.Fatalf("viewer detail: %v", err)
	}
	_, err := m.svc.RequestRefund(viewer, ss.ID, "k", euro(100), "leak")
	wantCode(t, err, "auth.forbidden")
	_, err = m.svc.RequestRefund(tech, ss.ID, "k", euro(100), "leak")
	wantCode(t, err, "auth.forbidden")
	_, err = m.svc.ReviewRefund(tech, ss.ID, euro(100))
	wantCode(t, err, "auth.forbidden")
	_, err = m.svc.VoidUnreported(viewer, ss.ID, "x")
	wantCode(t, err, "auth.forbidden")
	err = m.svc.Export(viewer, service.ExportSessions, service.ExportRange{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour)}, &bytes.Buffer{})
	wantCode(t, err, "auth.forbidden")
	err = m.svc.SetRefundThreshold(mgr, &vend.Amount{Minor: 200, Currency: "EUR"})
	wantCode(t, err, "auth.forbidden")
	// No actor at all: refused, not run as the cloud.
	_, err = m.svc.SearchSessions(m.ctx, store.SessionQuery{})
	wantCode(t, err, "auth.forbidden")
	// Another operator's manager does not find the session.
	op2, err := m.st.CreateOperator(m.ctx, "another")
	if err != nil {
		t.Fatal(err)
	}
	other := service.WithActor(m.ctx, service.Actor{Operator: op2.ID, Account: "x", Role: service.RoleOwner})
	_, err = m.svc.RequestRefund(other, ss.ID, "k", euro(100), "leak")
	wantCode(t, err, "session.not_found")
	// A manager refunds; the same key again refunds once.
	for i := 0; i < 2; i++ {
		out, err := m.svc.RequestRefund(mgr, ss.ID, "form-1", euro(100), "leak")
		if err != nil || out.Refund == nil || out.Refund.Wallet.Minor != 100 {
			t.Fatalf("refund %d = %+v, %v", i, out, err)
		}
	}
	if r := m.revenue(); r != 400 {
		t.Fatalf("revenue after one refund of 1.00 = %d, want 400", r)
	}
}

func TestRefundAboveThresholdNeedsAnotherOwner(t *testing.T) {
	m := newMoney(t)
	ss := m.settled("s1", 10000) // 5.00
	owner1, owner2, mgr := m.as(service.RoleOwner, "o1"), m.as(service.RoleOwner, "o2"), m.as(service.RoleManager, "m")
	if err := m.svc.SetRefundThreshold(owner1, &vend.Amount{Minor: 200, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	rv, err := m.svc.ReviewRefund(mgr, ss.ID, euro(300))
	if err != nil || !rv.NeedsApproval || rv.Plan.Wallet.Minor != 300 {
		t.Fatalf("review = %+v, %v; want wallet 3.00 needing approval", rv, err)
	}
	// At the threshold: refunded at once.
	out, err := m.svc.RequestRefund(mgr, ss.ID, "f1", euro(200), "short")
	if err != nil || out.Refund == nil {
		t.Fatalf("refund at the threshold = %+v, %v", out, err)
	}
	// Above: an approval, once per form key.
	out, err = m.svc.RequestRefund(mgr, ss.ID, "f2", euro(300), "broken")
	if err != nil || out.Approval == nil || out.Refund != nil {
		t.Fatalf("refund above the threshold = %+v, %v", out, err)
	}
	again, err := m.svc.RequestRefund(mgr, ss.ID, "f2", euro(300), "broken")
	if err != nil || again.Approval.ID != out.Approval.ID {
		t.Fatalf("double submission made another approval: %+v, %v", again, err)
	}
	if r := m.revenue(); r != 300 {
		t.Fatalf("revenue before approval = %d, want 300", r)
	}
	id := out.Approval.ID
	_, err = m.svc.ApproveRefund(mgr, id, "")
	wantCode(t, err, "auth.forbidden")
	// An owner who asked cannot approve their own.
	own, err := m.svc.RequestRefund(owner1, ss.ID, "f3", euro(250), "mine")
	if err != nil || own.Approval == nil {
		t.Fatalf("owner's request = %+v, %v", own, err)
	}
	_, err = m.svc.ApproveRefund(owner1, own.Approval.ID, "")
	wantCode(t, err, "refund.approval_self")
	// Another owner approves; twice refunds once.
	for i := 0; i < 2; i++ {
		a, err := m.svc.ApproveRefund(owner1, id, "ok")
		if err != nil || a.State != store.ApprovalApproved || a.Refund == "" {
			t.Fatalf("approve %d = %+v, %v", i, a, err)
		}
	}
	if r := m.revenue(); r != 0 {
		t.Fatalf("revenue after approval = %d, want 0", r)
	}
	// Nothing left for the owner's own request: approving it fails and
	// leaves it pending, to be rejected.
	_, err = m.svc.ApproveRefund(owner2, own.Approval.ID, "")
	wantCode(t, err, "refund.exceeds_refundable")
	rej, err := m.svc.RejectRefund(owner2, own.Approval.ID, "already refunded")
	if err != nil || rej.State != store.ApprovalRejected {
		t.Fatalf("reject = %+v, %v", rej, err)
	}
	// Each step is in the audit log once, with who did it.
	log, err := m.st.AuditLog(m.ctx, m.op, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := len(log) - 1; i >= 0; i-- {
		got = append(got, log[i].Action+" "+log[i].Email)
	}
	want := "[refund.threshold o1@example.com session.refund m@example.com refund.requested m@example.com refund.requested o1@example.com " +
		"refund.approved o1@example.com refund.rejected o2@example.com]"
	if fmt.Sprint(got) != want {
		t.Fatalf("audit log = %v\nwant %s", got, want)
	}
}

func TestSessionDetailChecksTheReport(t *testing.T) {
	m := newMoney(t)
	ss := m.settled("s1", 4000)
	v := m.as(service.RoleViewer, "v")
	d, err := m.svc.SessionDetail(v, ss.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Report == nil || d.Report.Units != 4000 || d.ReportErr != "" || d.Receipt == nil || d.Refundable.Minor != 200 || len(d.Ledger) < 2 {
		t.Fatalf("detail = report %+v (%s), receipt %v, refundable %v, ledger %d", d.Report, d.ReportErr, d.Receipt, d.Refundable, len(d.Ledger))
	}
	// A stored report whose bytes were changed is shown as failing its check.
	if _, err := m.st.DB().Exec(`UPDATE usage_reports SET signed = substr(signed, 1, length(signed) - 1) || X'00' WHERE session_id = ?`, ss.ID.String()); err != nil {
		t.Fatal(err)
	}
	d, err = m.svc.SessionDetail(v, ss.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Report != nil || d.ReportErr == "" {
		t.Fatalf("tampered report: %+v, err %q; want it refused", d.Report, d.ReportErr)
	}
}

func TestExportCSVIsExactAndInert(t *testing.T) {
	m := newMoney(t)
	mgr := m.as(service.RoleManager, "m")
	ss := m.settled("s1", 3000) // 1.50
	if _, err := m.svc.RequestRefund(mgr, ss.ID, "f", euro(25), "@SUM(1+1)"); err != nil {
		t.Fatal(err)
	}
	if err := m.svc.SetDeviceLocation(mgr, "wd-1", "+Station Road"); err != nil {
		t.Fatal(err)
	}
	r := service.ExportRange{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Group: store.ByLocation}
	read := func(kind string) [][]string {
		t.Helper()
		var b bytes.Buffer
		if err := m.svc.Export(mgr, kind, r, &b); err != nil {
			t.Fatalf("export %s: %v", kind, err)
		}
		rows, err := csv.NewReader(&b).ReadAll()
		if err != nil {
			t.Fatalf("export %s is not CSV: %v", kind, err)
		}
		return rows
	}
	rev := read(service.ExportRevenue)
	if fmt.Sprint(rev[1]) != "['+Station Road EUR 1 150 1.50 25 0.25 125 1.25]" {
		t.Fatalf("revenue row = %q", rev[1])
	}
	book := read(service.ExportMovements)
	if len(book) != 3 || book[2][2] != "session_refund" || book[2][5] != "-25" || book[2][6] != "-0.25" || book[2][8] != "1.25" {
		t.Fatalf("account book = %q", book)
	}
	sess := read(service.ExportSessions)
	if len(sess) != 2 || sess[1][1] != "R-"+ss.ID.String() || sess[1][13] != "150" || sess[1][14] != "1.50" {
		t.Fatalf("sessions = %q", sess)
	}
	for _, row := range append(append(rev, book...), sess...) {
		for _, cell := range row {
			if cell != "" && strings.ContainsRune("=+@", rune(cell[0])) {
				t.Fatalf("cell %q would run as a formula", cell)
			}
		}
	}
	err := m.svc.Export(mgr, "everything", r, &bytes.Buffer{})
	wantCode(t, err, "request.field")
}

func TestDecimalIsExact(t *testing.T) {
	for _, c := range []struct {
		minor int64
		cur   vend.Currency
		want  string
	}{{0, "EUR", "0.00"}, {5, "EUR", "0.05"}, {-150, "EUR", "-1.50"}, {123456789, "EUR", "1234567.89"}, {150, "JPY", "150"}, {1500, "KWD", "1.500"},
		{-9223372036854775808, "EUR", "-92233720368547758.08"}} {
		if got := service.Decimal(c.minor, c.cur); got != c.want {
			t.Errorf("Decimal(%d, %s) = %q, want %q", c.minor, c.cur, got, c.want)
		}
	}
	for _, c := range []struct {
		in   string
		cur  vend.Currency
		want int64
		ok   bool
	}{{"1.5", "EUR", 150, true}, {"1.50", "EUR", 150, true}, {"2", "EUR", 200, true}, {".25", "EUR", 25, true}, {"0.1", "EUR", 10, true},
		{"150", "JPY", 150, true}, {"1.5", "JPY", 0, false}, {"1.505", "EUR", 0, false}, {"-1", "EUR", 0, false}, {"1e3", "EUR", 0, false},
		{"", "EUR", 0, false}, {"1.", "EUR", 0, false}, {"99999999999999", "EUR", 0, false}} {
		got, err := service.ParseDecimal(c.in, c.cur)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseDecimal(%q, %s) = %d, %v; want %d ok=%v", c.in, c.cur, got, err, c.want, c.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "service:") {
			t.Errorf("error %q does not name the package", err)
		}
	}
}
