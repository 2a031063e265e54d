package journal

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
)

// State is where a session is in its life. The text names are stored in
// the session records and never change.
type State uint8

// Session states. See the package documentation for the transition table.
const (
	Authorized State = 1 // grant accepted, machine reserved, not yet delivering
	Running    State = 2 // the machine delivers; Meter records readings
	Ending     State = 3 // stop decided (Outcome set), outputs going off, final reading awaited
	Reported   State = 4 // usage signed and its message in the outbox; machine free
	Settled    State = 5 // the cloud acknowledged the usage report; terminal
	Expired    State = 6 // the grant expired (or was cancelled) before the machine started
	Failed     State = 7 // the board or machine faulted
	Refunded   State = 8 // the machine ran but delivered nothing billable (vend failed)
	// Credited: credit is about to be given to a coin-operated machine (a
	// washer's coin pulses), committed before the first pulse; the machine
	// has not been seen running yet. A credited session is billable: if it
	// is interrupted (power cut), recovery bills the credit.
	Credited State = 9
)

var stateNames = map[State]string{
	Authorized: "authorized", Running: "running", Ending: "ending", Reported: "reported",
	Settled: "settled", Expired: "expired", Failed: "failed", Refunded: "refunded",
	Credited: "credited",
}

// String returns the state's name, e.g. "running".
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Valid reports whether s is a known state.
func (s State) Valid() bool { _, ok := stateNames[s]; return ok }

// MarshalText encodes the name; an unknown state is ErrInvalid.
func (s State) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, vend.Errorf(ErrInvalid, "state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a name, or returns ErrInvalid.
func (s *State) UnmarshalText(b []byte) error {
	for k, n := range stateNames {
		if n == string(b) {
			*s = k
			return nil
		}
	}
	return vend.Errorf(ErrInvalid, "state %q", string(b))
}

// holdsMachine reports whether a session in s keeps its machine busy: it
// has not been reported yet. Such sessions are "live".
func (s State) holdsMachine() bool {
	switch s {
	case Authorized, Credited, Running, Ending, Expired, Failed, Refunded:
		return true
	}
	return false
}

// ended reports whether s is a state from which EndSession may report.
func (s State) ended() bool {
	switch s {
	case Ending, Expired, Failed, Refunded:
		return true
	}
	return false
}

// transitions is the table of allowed transitions. Reported is reached
// only through EndSession, which signs the usage in the same commit.
var transitions = map[State][]State{
	Authorized: {Running, Credited, Expired, Failed},
	Credited:   {Running, Ending, Failed},
	Running:    {Ending, Failed, Refunded},
	Ending:     {Reported},
	Expired:    {Reported},
	Failed:     {Reported},
	Refunded:   {Reported},
	Reported:   {Settled},
}

// Allowed reports whether the transition table permits from → to.
func Allowed(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Step records one state a session entered and when.
type Step struct {
	State State     `json:"state"`
	At    time.Time `json:"at"`
}

// Session is the durable record of one session. Times are UTC.
type Session struct {
	ID         vend.SessionID `json:"id"`
	Device     string         `json:"device"`         // from the grant
	Machine    string         `json:"machine"`        // from the grant
	Slot       string         `json:"slot,omitempty"` // from the grant
	Unit       vend.Unit      `json:"unit"`           // from the grant
	CapUnits   uint64         `json:"cap_units"`      // from the grant
	Grant      []byte         `json:"grant"`          // the verified signed grant (body ‖ signature)
	State      State          `json:"state"`          // current state
	Units      uint64         `json:"units"`          // metered units so far, in Unit
	MeterStart uint64         `json:"meter_start"`    // raw meter reading at start
	MeterLast  uint64         `json:"meter_last"`     // last committed raw meter reading
	// MeterCounter names the board counter MeterStart and MeterLast are
	// readings of, when the driver records it (a vending machine's drop
	// counter); recovery trusts the readings only against that counter.
	// Empty for water (its flow counter) and in records written before it
	// existed.
	MeterCounter string       `json:"meter_counter,omitempty"`
	AcceptedAt   time.Time    `json:"accepted_at"`      // when Accept committed
	StartedAt    time.Time    `json:"started_at"`       // machine started; zero if it never did
	EndedAt      time.Time    `json:"ended_at"`         // session ended; zero while open
	Outcome      vend.Outcome `json:"outcome,omitzero"` // set on entering an ended state
	FaultCode    uint16       `json:"fault_code,omitempty"`
	// CoinPulses, for a credited session, is the coin pulse committed as
	// about to be driven (see Journal.CoinPulse): pulses 1 to CoinPulses-1
	// were driven in full, pulse CoinPulses may or may not have been. Zero
	// in records written before it existed (nothing known).
	CoinPulses int       `json:"coin_pulses,omitempty"`
	UsageSeq   uint64    `json:"usage_seq,omitempty"`    // set by EndSession
	Usage      []byte    `json:"usage,omitempty"`        // signed usage report, set by EndSession
	UsageMsgID string    `json:"usage_msg_id,omitempty"` // outbox message ID of the usage report
	UpdatedAt  time.Time `json:"updated_at"`             // last commit of this record
	Steps      []Step    `json:"steps"`                  // every state entered, in order
}

// Live reports whether the session still holds its machine (not yet reported).
func (s *Session) Live() bool { return s.State.holdsMachine() }

// sessionRecord is the stored form: the session with a record version.
type sessionRecord struct {
	V int `json:"v"`
	Session
}

// RecordVersion is the version of session, seen and outbox item records.
const RecordVersion = 1

func encodeSession(s *Session) ([]byte, error) {
	b, err := json.Marshal(sessionRecord{V: RecordVersion, Session: *s})
	if err != nil {
		return nil, vend.Errorf(ErrInvalid, "encode session %s: %v", s.ID, err)
	}
	return b, nil
}

// decodeSession decodes and checks a record; the result shares no memory
// with v, so it may outlive the transaction.
func decodeSession(k, v []byte) (*Session, error) {
	var r sessionRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, corrupt(bucketSessions, k, err)
	}
	if r.V != RecordVersion {
		return nil, corrupt(bucketSessions, k, fmt.Errorf("record version %d, want %d", r.V, RecordVersion))
	}
	s := r.Session
	switch {
	case len(k) != 16 || vend.SessionID(k) != s.ID:
		return nil, corrupt(bucketSessions, k, fmt.Errorf("record names session %s", s.ID))
	case !s.State.Valid():
		return nil, corrupt(bucketSessions, k, fmt.Errorf("state %d", s.State))
	case vend.ValidateMachineID(s.Machine) != nil:
		return nil, corrupt(bucketSessions, k, vend.ValidateMachineID(s.Machine))
	case len(s.Grant) == 0:
		return nil, corrupt(bucketSessions, k, fmt.Errorf("no grant"))
	}
	return &s, nil
}

// seen records: version 1 (an accepted grant), 17 bytes:
//
//	u8 1 | accepted ms i64 | grant expires ms i64
//
// or version 2 (a cancellation, see Cancel), 18 bytes:
//
//	u8 2 | cancelled ms i64 | keep until ms i64 | flags u8 (1 = cancelled)
const (
	seenLen          = 17
	seenCancelledLen = 18
	seenCancelledV   = 2
)

// seenEntry is a decoded seen record.
type seenEntry struct {
	accepted  time.Time // accepted, or cancelled, at
	expires   time.Time // the grant's expiry, or how long a cancellation is kept
	cancelled bool
}

func encodeSeen(accepted, expires time.Time) []byte {
	b := make([]byte, seenLen)
	b[0] = RecordVersion
	binary.BigEndian.PutUint64(b[1:], uint64(accepted.UnixMilli()))
	binary.BigEndian.PutUint64(b[9:], uint64(expires.UnixMilli()))
	return b
}

func encodeCancelled(at, until time.Time) []byte {
	b := make([]byte, seenCancelledLen)
	b[0] = seenCancelledV
	binary.BigEndian.PutUint64(b[1:], uint64(at.UnixMilli()))
	binary.BigEndian.PutUint64(b[9:], uint64(until.UnixMilli()))
	b[17] = 1
	return b
}

func decodeSeen(k, v []byte) (seenEntry, error) {
	if len(k) != 16 {
		return seenEntry{}, corrupt(bucketSeen, k, fmt.Errorf("key of %d bytes, want 16", len(k)))
	}
	ok := (len(v) == seenLen && v[0] == RecordVersion) || (len(v) == seenCancelledLen && v[0] == seenCancelledV && v[17] == 1)
	if !ok {
		return seenEntry{}, corrupt(bucketSeen, k, fmt.Errorf("seen record of %d bytes (version %d), want %d bytes version %d or %d bytes version %d", len(v), first(v), seenLen, RecordVersion, seenCancelledLen, seenCancelledV))
	}
	return seenEntry{
		accepted:  time.UnixMilli(int64(binary.BigEndian.Uint64(v[1:]))).UTC(),
		expires:   time.UnixMilli(int64(binary.BigEndian.Uint64(v[9:]))).UTC(),
		cancelled: v[0] == seenCancelledV,
	}, nil
}

func first(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}
