package clusterfault

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Planted defects: the test's proof that its audit can fail. With
// Config.Plant set (the clusterfault command's hidden -plant flag), the
// run corrupts the store in the named ways after the deployment settled
// and before the audit, and the audit must then name each defect
// (plantWants). Production code is not touched: the defects are written
// by SQL, as the store's own API refuses to make them.
const (
	// PlantDuplicateCapture adds a second capture transaction to a settled
	// session (a session settled twice): the audit says
	// doubled_capture_or_release.
	PlantDuplicateCapture = "duplicate-capture"
	// PlantUnsettleAcked moves a session whose report a device saw
	// acknowledged back to ending (its settlement lost): the audit says
	// lost (and live_after_settle).
	PlantUnsettleAcked = "unsettle-acked"
)

// plantWants is the violation kind each planted defect must produce.
var plantWants = map[string]string{
	PlantDuplicateCapture: vDoubled,
	PlantUnsettleAcked:    vLost,
}

// CheckPlant refuses an unknown defect name (Config.Plant).
func CheckPlant(names []string) error {
	for _, n := range names {
		if _, ok := plantWants[n]; !ok {
			known := make([]string, 0, len(plantWants))
			for k := range plantWants {
				known = append(known, k)
			}
			sort.Strings(known)
			return fmt.Errorf("clusterfault: plant %q: want one of %s", n, strings.Join(known, ", "))
		}
	}
	return nil
}

// ackedSettled returns the sessions a device saw acknowledged that the
// store has settled with something captured, in a stable order.
func ackedSettled(in *auditInput) []vend.SessionID {
	var out []vend.SessionID
	for _, d := range in.Devices {
		for _, r := range d.Reports {
			if s, ok := in.Store.Sessions[r.Session]; ok && r.Acked && s.State == store.Settled && !s.Late {
				out = append(out, r.Session)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// plant writes each named defect into the store, each on its own session
// a device saw acknowledged and the store settled, and returns what it
// did. Errors: an unknown name, no such session left, the database's.
func plant(ctx context.Context, st *store.Store, names []string, in *auditInput) ([]string, error) {
	if err := CheckPlant(names); err != nil {
		return nil, err
	}
	cands := ackedSettled(in)
	var did []string
	for i, n := range names {
		if i >= len(cands) {
			return did, fmt.Errorf("clusterfault: plant %s: no acknowledged, settled session left to plant it in", n)
		}
		sid := cands[i]
		var err error
		switch n {
		case PlantDuplicateCapture:
			err = plantDuplicateCapture(ctx, st, sid)
		case PlantUnsettleAcked:
			err = plantUnsettle(ctx, st, sid)
		}
		if err != nil {
			return did, fmt.Errorf("clusterfault: plant %s in session %s: %w", n, sid, err)
		}
		did = append(did, fmt.Sprintf("%s in session %s (the audit must say %s)", n, sid, plantWants[n]))
	}
	return did, nil
}

// plantDuplicateCapture inserts a second capture transaction for session
// sid under another ledger key (the ledger's unique key on capture:<s>
// is what keeps the store from ever doing it).
func plantDuplicateCapture(ctx context.Context, st *store.Store, sid vend.SessionID) error {
	_, err := st.DB().ExecContext(ctx, `INSERT INTO ledger_tx (kind, idem_key, session_id, req_hash, created_ms)
		VALUES ('capture', $1, $2, '', $3)`, "capture:"+sid.String()+":planted", sid.String(), time.Now().UnixMilli())
	return err
}

// plantUnsettle moves session sid back to ending, as if its settlement
// had been lost (Settle only ever moves a session forward).
func plantUnsettle(ctx context.Context, st *store.Store, sid vend.SessionID) error {
	res, err := st.DB().ExecContext(ctx, `UPDATE sessions SET state = 'ending' WHERE id = $1`, sid.String())
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("%d rows changed, want 1", n)
	}
	return nil
}

// plantFound returns a violation (audit_blind) for every planted defect
// whose kind is not among the audit's violations.
func plantFound(names, violations []string) []string {
	var missed []string
	for _, n := range names {
		want := plantWants[n]
		found := false
		for _, v := range violations {
			if strings.HasPrefix(v, want+" ") {
				found = true
				break
			}
		}
		if !found {
			missed = append(missed, fmt.Sprintf("audit_blind: planted %s but the audit did not report %s", n, want))
		}
	}
	return missed
}
