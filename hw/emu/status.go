package emu

// Status is the emulator's whole state and the truth about what the
// machines delivered, as the control socket's status command returns it.
type Status struct {
	Board         string            `json:"board"`              // profile name
	SlaveID       byte              `json:"slave_id"`           // Modbus address the board answers
	Coils         map[string]bool   `json:"coils"`              // by output name: true = ON
	Inputs        map[string]bool   `json:"inputs"`             // by input name: the electrical level the register reads (active_low applied, stuck inputs included)
	Counters      map[string]uint32 `json:"counters"`           // by counter name: the value the registers hold (16-bit counters wrap at 65536)
	Watchdog      *WatchdogStatus   `json:"watchdog,omitempty"` // nil when the profile has no watchdog register
	WatchdogTrips int               `json:"watchdog_trips"`     // leases that lapsed and switched every output off
	CommTimeoutMS int64             `json:"comm_timeout_ms"`    // 0 when the communication-loss timeout is off
	CommTrips     int               `json:"comm_trips"`         // silences longer than the comm timeout (each switched every output off)
	ForcedOffs    int               `json:"forced_offs"`        // expire_lease commands
	Stats         Stats             `json:"stats"`              // what the Modbus slave saw
	Faults        FaultStatus       `json:"faults"`             // faults in force
	Machines      []MachineStatus   `json:"machines"`           // in sim config order
}

// WatchdogStatus is the board's output lease.
type WatchdogStatus struct {
	Register    uint16 `json:"register"`     // holding register address
	UnitMS      int    `json:"unit_ms"`      // milliseconds per count
	Value       uint16 `json:"value"`        // last value written (0 = lease off)
	Armed       bool   `json:"armed"`        // a lease is running
	RemainingMS int64  `json:"remaining_ms"` // until the lease lapses, when armed
}

// Stats counts what the Modbus slave saw on the line.
type Stats struct {
	Requests         uint64 `json:"requests"`          // valid requests for this slave answered (exceptions included)
	Exceptions       uint64 `json:"exceptions"`        // of which exception responses
	Broadcasts       uint64 `json:"broadcasts"`        // valid broadcast (address 0) writes, never answered
	CRCErrors        uint64 `json:"crc_errors"`        // frames with a bad CRC, not answered
	OtherSlave       uint64 `json:"other_slave"`       // valid frames for another address, ignored
	GarbageBytes     uint64 `json:"garbage_bytes"`     // bytes discarded while resynchronising
	RepliesCorrupted uint64 `json:"replies_corrupted"` // replies sent with a corrupt CRC (fault)
	RepliesDropped   uint64 `json:"replies_dropped"`   // replies withheld (fault)
	RepliesDelayed   uint64 `json:"replies_delayed"`   // replies sent late (fault)
}

// FaultStatus is the faults in force.
type FaultStatus struct {
	CorruptNext        int             `json:"corrupt_next"`        // replies still to corrupt
	CorruptProbability float64         `json:"corrupt_probability"` // chance each reply is corrupted
	NoReplyNext        int             `json:"no_reply_next"`       // requests still to leave unanswered
	NoReplyProbability float64         `json:"no_reply_probability"`
	DelayMS            int64           `json:"delay_ms"`        // added before every reply
	Stuck              map[string]bool `json:"stuck,omitempty"` // inputs forced to a level, by name
}

// MachineStatus is one machine's state and truth. Exactly one of Water,
// Washer and Vending is set, per Kind.
type MachineStatus struct {
	Name    string         `json:"name"`
	Kind    string         `json:"kind"` // water, washer or vending
	Water   *WaterStatus   `json:"water,omitempty"`
	Washer  *WasherStatus  `json:"washer,omitempty"`
	Vending *VendingStatus `json:"vending,omitempty"`
}

// WaterStatus is a water dispenser's truth: what really flowed.
type WaterStatus struct {
	ValveOpen   bool    `json:"valve_open"`
	FlowLPM     float64 `json:"flow_lpm"`     // litres per minute while open
	KFactor     float64 `json:"k_factor"`     // pulses per litre
	DeliveredML int64   `json:"delivered_ml"` // true volume, millilitres (floor)
	DeliveredUL int64   `json:"delivered_ul"` // true volume, microlitres (floor)
	Pulses      uint64  `json:"pulses"`       // flow meter pulses emitted (floor(volume × K)), not wrapped
	Opens       int     `json:"opens"`        // times the valve opened
	OpenMS      int64   `json:"open_ms"`      // total time open
}

// WasherStatus is a coin-operated washer's truth.
type WasherStatus struct {
	Running         bool  `json:"running"`
	RemainingMS     int64 `json:"remaining_ms"`   // of the running cycle
	Credit          int   `json:"credit"`         // valid pulses banked toward the next cycle
	CreditNeeded    int   `json:"credit_needed"`  // valid pulses per cycle
	CoinPulses      int   `json:"coin_pulses"`    // rising edges seen on the coin output
	ValidPulses     int   `json:"valid_pulses"`   // pulses within pulse_min..pulse_max, counted as credit
	InvalidPulses   int   `json:"invalid_pulses"` // too short or too long
	IgnoredPulses   int   `json:"ignored_pulses"` // valid but sent while a cycle ran (money the machine swallowed)
	CyclesStarted   int   `json:"cycles_started"`
	CyclesCompleted int   `json:"cycles_completed"`
}

// VendingStatus is a vending machine's truth.
type VendingStatus struct {
	Dropping bool         `json:"dropping"` // the drop sensor is active
	Items    int          `json:"items"`    // items dropped, all slots
	Slots    []SlotStatus `json:"slots"`
}

// SlotStatus is one vending slot.
type SlotStatus struct {
	Name    string `json:"name"`
	Motor   string `json:"motor"` // output name
	MotorOn bool   `json:"motor_on"`
	Jammed  bool   `json:"jammed"`
	Items   int    `json:"items"` // items dropped
	Runs    int    `json:"runs"`  // times the motor started
}
