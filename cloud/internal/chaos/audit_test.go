package chaos

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/store"
	"beaconvend/hw/emu"
)

var t0 = time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func kinds(vs []Violation) []string {
	var k []string
	for _, v := range vs {
		k = append(k, v.Kind)
	}
	slices.Sort(k)
	return k
}

func water(id string, state string, created, ended int, hold, captured int64) *dbSession {
	return &dbSession{ID: id, Device: "d1", Machine: "tap1", State: state, Price: vend.Price{Minor: 50, Per: 1000},
		Hold: hold, Captured: captured, Released: hold - captured, Created: at(created), Ended: at(ended), Updated: at(ended), HasHold: true, IdemKey: "k-" + id}
}

// The audit bills each session with what its machine gave in its window
// (from its creation to the next session's on the machine), and flags
// goods given without a session, under- and overcharges, and sessions
// that did not end.
func TestAuditSessionsWater(t *testing.T) {
	tap := machineTruth{device: "d1", machine: "tap1", kind: vend.KindWater, deliveries: []emu.Delivery{
		{Seq: 1, Kind: emu.KindWater, Start: at(-500), End: at(-100), DeliveredUL: 40_000},    // before any session
		{Seq: 2, Kind: emu.KindWater, Start: at(1000), End: at(5000), DeliveredUL: 400_000},   // s1: 400 mL = 20
		{Seq: 3, Kind: emu.KindWater, Start: at(11000), End: at(13000), DeliveredUL: 200_500}, // s2: 200 mL = 10
		{Seq: 4, Kind: emu.KindWater, Start: at(21000), End: at(22000), DeliveredUL: 100_000}, // s3: 100 mL = 5
		{Seq: 5, Kind: emu.KindWater, Start: at(31000), End: at(32000), DeliveredUL: 100_000}, // s4: 100 mL = 5
	}}
	sessions := []*dbSession{
		water("s1", "settled", 0, 6000, 40, 20),      // right
		water("s2", "refunded", 10000, 14000, 40, 0), // the water was free
		water("s3", "settled", 20000, 23000, 40, 9),  // charged for 180 mL, gave 100
		water("s4", "authorized", 30000, 0, 40, 0),   // never ended
	}
	got := kinds(auditSessions(sessions, []machineTruth{tap}, nil, time.Minute))
	want := []string{"delivered_without_session", "not_terminal", "overcharged", "undercharged"}
	if !slices.Equal(got, want) {
		t.Fatalf("violations %v, want %v", got, want)
	}
	// One meter pulse (2.2 mL) either way is not a violation.
	sessions[2].Captured, sessions[2].Released = 5, 35
	tap.deliveries[3].DeliveredUL = 102_000
	if got := kinds(auditSessions(sessions, []machineTruth{tap}, nil, time.Minute)); !slices.Equal(got, []string{"delivered_without_session", "not_terminal", "undercharged"}) {
		t.Fatalf("with the meter's slack: %v", got)
	}
}

// A washer's cycle started in a refunded session, and a coin pulse of
// credit given in a session that bills nothing, are goods given away.
func TestAuditSessionsWasher(t *testing.T) {
	w := machineTruth{device: "w", machine: "washer1", kind: vend.KindWasher, deliveries: []emu.Delivery{
		{Seq: 1, Kind: emu.KindWasher, Start: at(100), End: at(150), Valid: true},
		{Seq: 2, Kind: emu.KindWasher, Start: at(250), End: at(300), Valid: true, CycleStarted: true},     // s1, billed
		{Seq: 3, Kind: emu.KindWasher, Start: at(10100), End: at(10150), Valid: true},                     // s2: stopped after one pulse
		{Seq: 4, Kind: emu.KindWasher, Start: at(20100), End: at(20150), Valid: true, CycleStarted: true}, // s3: completes s2's credit
		{Seq: 5, Kind: emu.KindWasher, Start: at(20250), End: at(20300), Valid: true, Ignored: true},
	}}
	w.status.Machines = []emu.MachineStatus{{Name: "washer1", Kind: emu.KindWasher, Washer: &emu.WasherStatus{Credit: 1}}}
	mk := func(id, state string, created int, captured int64) *dbSession {
		return &dbSession{ID: id, Device: "w", Machine: "washer1", State: state, Price: vend.Price{Minor: 350, Per: 1},
			Hold: 350, Captured: captured, Released: 350 - captured, Created: at(created), Ended: at(created + 9000), Updated: at(created + 9000), HasHold: true}
	}
	sessions := []*dbSession{mk("s1", "settled", 0, 350), mk("s2", "refunded", 10000, 0), mk("s3", "refunded", 20000, 0)}
	got := kinds(auditSessions(sessions, []machineTruth{w}, nil, time.Minute))
	want := []string{"credit_given_unbilled", "undercharged", "washer_credit_banked"}
	if !slices.Equal(got, want) {
		t.Fatalf("violations %v, want %v", got, want)
	}
}

// What the phone agreed to and was told: a hold above the cap at the
// shown price, a start reported failed that ran, a hold not given back,
// an end past its bound; unreported follows its policy.
func TestAuditSessionsPhone(t *testing.T) {
	tap := machineTruth{device: "d1", machine: "tap1", kind: vend.KindWater, deliveries: []emu.Delivery{
		{Seq: 1, Kind: emu.KindWater, Start: at(1000), End: at(2000), DeliveredUL: 100_000},
	}}
	s1 := water("s1", "settled", 0, 3000, 60, 5) // hold priced after a price rise
	s1.Price = vend.Price{Minor: 75, Per: 1000}
	s1.Captured, s1.Released = 7, 53
	s2 := water("s2", "refunded", 10000, 300000, 40, 0) // ended after the bound, hold kept
	s2.Released = 10
	s3 := water("s3", "unreported", 400000, 0, 40, 0) // policy: release; nothing captured
	attempts := []*attempt{
		{IdemKey: "k-s1", CapUnits: 800, Shown: vend.Price{Minor: 50, Per: 1000}, StartCode: "service.unavailable", Final: phoneapi.StateSettled},
		{IdemKey: "k-s2", CapAmount: 40, StartCode: "ok", Session: phoneapi.SessionID{1}, Final: phoneapi.StateRefunded},
	}
	got := kinds(auditSessions([]*dbSession{s1, s2, s3}, []machineTruth{tap}, attempts, time.Minute))
	want := []string{"hold_above_cap", "hold_stranded", "late_end", "ran_after_failed_start"}
	if !slices.Equal(got, want) {
		t.Fatalf("violations %v, want %v", got, want)
	}
	// A board whose clock is 10 min ahead signs an end time 10 min late;
	// the cloud closed the session in time: no late_end.
	s4 := water("s4", "refunded", 500000, 501000, 40, 0)
	s4.Ended = at(501000 + 600000)
	if got := kinds(auditSessions([]*dbSession{s4}, []machineTruth{{device: "d1", machine: "tap1", kind: vend.KindWater}}, nil, time.Minute)); len(got) != 0 {
		t.Fatalf("session closed in time by a board 10 min ahead: %v", got)
	}
	// A session expired (hold released), then its report came late and
	// was captured from the wallet: judged on what it was charged in all,
	// not as late, and its two closing transactions are not a double
	// settlement.
	s5 := water("s5", "expired", 0, 3000, 60, 0)
	s5.Released, s5.Updated = 60, at(600000)
	s5.Late, s5.LateMinor = true, 5
	if got := kinds(auditSessions([]*dbSession{s5}, []machineTruth{tap}, nil, time.Minute)); len(got) != 0 {
		t.Fatalf("late capture of a delivered 100 mL: %v", got)
	}
	s5.LateMinor = 0
	if got := kinds(auditSessions([]*dbSession{s5}, []machineTruth{tap}, nil, time.Minute)); !slices.Equal(got, []string{"undercharged"}) {
		t.Fatalf("expired session whose delivery was never charged: %v", got)
	}
	s3.Captured = 3
	tap.deliveries = nil
	if got := kinds(auditSessions([]*dbSession{s3}, []machineTruth{tap}, nil, time.Hour)); !slices.Equal(got, []string{"policy_capture"}) {
		t.Fatalf("unreported with a capture: %v", got)
	}
}

// The ledger audit reads the tables: a balanced top-up passes, an entry
// that unbalances its transaction and account is caught.
func TestAuditLedger(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testAuditLedger(t, "sqlite:"+filepath.Join(t.TempDir(), "c.db")) })
	t.Run("postgres", func(t *testing.T) { testAuditLedger(t, svctest.PostgresDSN(t, "chaos")) })
}

func testAuditLedger(t *testing.T, dsn string) {
	ctx := context.Background()
	st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.CreateUser(ctx, "a@chaos.example", "password-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.TopUp(ctx, u.ID, vend.Amount{Minor: 500, Currency: "EUR"}, "card_sandbox", "k1"); err != nil {
		t.Fatal(err)
	}
	if vs, err := auditLedger(ctx, st.DB(), nil); err != nil || len(vs) != 0 {
		t.Fatalf("balanced ledger: %v, %v", vs, err)
	}
	if _, err := st.DB().ExecContext(ctx, `INSERT INTO entries (tx_id, account_id, amount, currency) SELECT tx_id, account_id, 7, currency FROM entries LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	vs, err := auditLedger(ctx, st.DB(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(vs); !slices.Equal(got, []string{"ledger_account_mismatch", "ledger_unbalanced", "ledger_unbalanced"}) {
		t.Fatalf("unbalanced ledger: %v", vs)
	}
}
