package modem

import (
	"fmt"
	"strconv"
	"strings"

	"beaconvend/app-protocol/vend"
)

// DBm is a power level in whole dBm (decibels relative to one milliwatt).
type DBm int

// String reads "-83 dBm".
func (d DBm) String() string { return strconv.Itoa(int(d)) + " dBm" }

// TenthDB is a ratio in tenths of a decibel: -105 is -10.5 dB.
type TenthDB int

// String reads "-10.5 dB".
func (d TenthDB) String() string {
	s := ""
	v := int(d)
	if v < 0 {
		s, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%d dB", s, v/10, v%10)
}

// field is one comma-separated parameter of an information line.
type field struct {
	s      string
	quoted bool
}

// fields splits the parameters after "prefix:" ("+CSQ: 20,99" → "20","99"),
// honouring double quotes. It fails when line lacks the prefix or has an
// unterminated quote.
func fields(line, prefix string) ([]field, error) {
	if !strings.HasPrefix(line, prefix) {
		return nil, vend.Errorf(ErrSyntax, "%q: want %s", clip(line), prefix)
	}
	rest := strings.TrimSpace(line[len(prefix):])
	var out []field
	for {
		rest = strings.TrimLeft(rest, " ")
		var f field
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return nil, vend.Errorf(ErrSyntax, "%q: unterminated quote", clip(line))
			}
			f = field{s: rest[1 : 1+end], quoted: true}
			rest = strings.TrimLeft(rest[2+end:], " ")
			if rest != "" && rest[0] != ',' {
				return nil, vend.Errorf(ErrSyntax, "%q: text after quoted field", clip(line))
			}
		} else {
			i := strings.IndexByte(rest, ',')
			if i < 0 {
				i = len(rest)
			}
			f = field{s: strings.TrimSpace(rest[:i])}
			rest = rest[i:]
		}
		out = append(out, f)
		if rest == "" {
			return out, nil
		}
		rest = rest[1:] // the comma
		if len(out) > 32 {
			return nil, vend.Errorf(ErrSyntax, "%q: too many fields", clip(line))
		}
	}
}

// num parses an unquoted decimal field in [0, max] (or equal to one of
// extra), naming it in the error.
func num(line string, f field, name string, max int, extra ...int) (int, error) {
	if f.quoted || f.s == "" || len(f.s) > 6 {
		return 0, vend.Errorf(ErrSyntax, "%q: %s %q is not a number", clip(line), name, f.s)
	}
	n, err := strconv.Atoi(f.s)
	if err != nil || f.s[0] == '+' || f.s[0] == '-' {
		return 0, vend.Errorf(ErrSyntax, "%q: %s %q is not a number", clip(line), name, f.s)
	}
	if n >= 0 && n <= max {
		return n, nil
	}
	for _, e := range extra {
		if n == e {
			return n, nil
		}
	}
	return 0, vend.Errorf(ErrRange, "%q: %s %d out of range", clip(line), name, n)
}

// clip shortens a line for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// CSQ is the reply to AT+CSQ (TS 27.007 §8.5).
type CSQ struct {
	RSSI int // 0-31 (GSM/UMTS/LTE scale), 100-191 (TD-SCDMA scale), 99 unknown
	BER  int // channel bit error rate, RXQUAL 0-7, 99 unknown
}

// ParseCSQ parses "+CSQ: <rssi>,<ber>". It returns ErrSyntax for another
// shape and ErrRange for values the standard does not define.
func ParseCSQ(line string) (CSQ, error) {
	f, err := fields(line, "+CSQ:")
	if err != nil {
		return CSQ{}, err
	}
	if len(f) != 2 {
		return CSQ{}, vend.Errorf(ErrSyntax, "%q: want 2 fields", clip(line))
	}
	var c CSQ
	if c.RSSI, err = num(line, f[0], "rssi", 31, 99); err != nil {
		if n, e := strconv.Atoi(f[0].s); e == nil && n >= 100 && n <= 191 {
			c.RSSI, err = n, nil
		} else {
			return CSQ{}, err
		}
	}
	if c.BER, err = num(line, f[1], "ber", 7, 99); err != nil {
		return CSQ{}, err
	}
	return c, nil
}

// DBm converts RSSI: 0 → -113 dBm (or less), n → -113+2n, 31 → -51 dBm (or
// more); on the TD-SCDMA scale 100 → -116 dBm, n → n-216. It reports false
// for 99 (not known or not detectable).
func (c CSQ) DBm() (DBm, bool) {
	switch {
	case c.RSSI >= 0 && c.RSSI <= 31:
		return DBm(-113 + 2*c.RSSI), true
	case c.RSSI >= 100 && c.RSSI <= 191:
		return DBm(c.RSSI - 216), true
	}
	return 0, false
}

// CESQ is the reply to AT+CESQ, extended signal quality (TS 27.007
// §8.69). Each field is the raw index; the methods convert to dBm or dB
// and report false for "not known or not detectable" (99 for RxLev and
// BER, 255 for the others). Only the fields of the serving radio access
// technology are known: RxLev/BER on GSM, RSCP/EcNo on UMTS, RSRQ/RSRP on LTE.
type CESQ struct {
	RxLev int // GSM received signal strength, 0-63, 99 unknown
	BER   int // GSM bit error rate RXQUAL, 0-7, 99 unknown
	RSCP  int // UMTS received signal code power, 0-96, 255 unknown
	EcNo  int // UMTS Ec/No, 0-49, 255 unknown
	RSRQ  int // LTE reference signal received quality, 0-34, 255 unknown
	RSRP  int // LTE reference signal received power, 0-97, 255 unknown
}

// UnknownCESQ is a CESQ with every field unknown.
var UnknownCESQ = CESQ{RxLev: 99, BER: 99, RSCP: 255, EcNo: 255, RSRQ: 255, RSRP: 255}

// ParseCESQ parses "+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>". It
// returns ErrSyntax for another shape and ErrRange for undefined values.
func ParseCESQ(line string) (CESQ, error) {
	f, err := fields(line, "+CESQ:")
	if err != nil {
		return CESQ{}, err
	}
	if len(f) != 6 {
		return CESQ{}, vend.Errorf(ErrSyntax, "%q: want 6 fields", clip(line))
	}
	var q CESQ
	for i, p := range []struct {
		dst     *int
		name    string
		max     int
		unknown int
	}{
		{&q.RxLev, "rxlev", 63, 99}, {&q.BER, "ber", 7, 99}, {&q.RSCP, "rscp", 96, 255},
		{&q.EcNo, "ecno", 49, 255}, {&q.RSRQ, "rsrq", 34, 255}, {&q.RSRP, "rsrp", 97, 255},
	} {
		if *p.dst, err = num(line, f[i], p.name, p.max, p.unknown); err != nil {
			return CESQ{}, err
		}
	}
	return q, nil
}

// RxLevDBm converts RxLev: 0 → below -110 dBm (reported as -111), n → -111+n
// (the lower edge of its 1 dB band), 63 → -48 dBm or more.
func (q CESQ) RxLevDBm() (DBm, bool) {
	if q.RxLev < 0 || q.RxLev > 63 {
		return 0, false
	}
	return DBm(-111 + q.RxLev), true
}

// RSCPDBm converts RSCP: 0 → below -120 dBm (reported as -121), n → -121+n, 96 → -25 dBm or more.
func (q CESQ) RSCPDBm() (DBm, bool) {
	if q.RSCP < 0 || q.RSCP > 96 {
		return 0, false
	}
	return DBm(-121 + q.RSCP), true
}

// EcNoDB converts Ec/No in 0.5 dB steps: 0 → below -24 dB (reported as
// -24.5), n → -24.5+n/2, 49 → 0 dB or more.
func (q CESQ) EcNoDB() (TenthDB, bool) {
	if q.EcNo < 0 || q.EcNo > 49 {
		return 0, false
	}
	return TenthDB(-245 + 5*q.EcNo), true
}

// RSRQDB converts RSRQ in 0.5 dB steps: 0 → below -19.5 dB (reported as
// -20), n → -20+n/2, 34 → -3 dB or more.
func (q CESQ) RSRQDB() (TenthDB, bool) {
	if q.RSRQ < 0 || q.RSRQ > 34 {
		return 0, false
	}
	return TenthDB(-200 + 5*q.RSRQ), true
}

// RSRPDBm converts RSRP: 0 → below -140 dBm (reported as -141), n → -141+n, 97 → -44 dBm or more.
func (q CESQ) RSRPDBm() (DBm, bool) {
	if q.RSRP < 0 || q.RSRP > 97 {
		return 0, false
	}
	return DBm(-141 + q.RSRP), true
}

// RegState is a network registration state as telemetry reports it.
type RegState string

// Registration states.
const (
	RegHome          RegState = "home"           // registered, home network
	RegRoaming       RegState = "roaming"        // registered, roaming
	RegSearching     RegState = "searching"      // not registered, searching for an operator
	RegDenied        RegState = "denied"         // registration denied
	RegUnknown       RegState = "unknown"        // the modem does not know (e.g. out of coverage), or no answer yet
	RegNotRegistered RegState = "not_registered" // not registered and not searching (or emergency only)
)

// Registered reports whether s is home or roaming.
func (s RegState) Registered() bool { return s == RegHome || s == RegRoaming }

// StatState maps the <stat> of +CREG/+CGREG/+CEREG (TS 27.007 §7.2, §10.1.20,
// §10.1.22): 1, 6 (SMS only), 9 (CSFB not preferred) → home; 5, 7, 10 →
// roaming; 2 → searching; 3 → denied; 0 and 8 (emergency only) →
// not_registered; 4 and anything else → unknown.
func StatState(stat int) RegState {
	switch stat {
	case 1, 6, 9:
		return RegHome
	case 5, 7, 10:
		return RegRoaming
	case 2:
		return RegSearching
	case 3:
		return RegDenied
	case 0, 8:
		return RegNotRegistered
	}
	return RegUnknown
}

// Tech is the radio access technology in use.
type Tech string

// Access technologies; "" is unknown.
const (
	TechGSM   Tech = "gsm"
	TechUMTS  Tech = "umts"
	TechLTE   Tech = "lte"
	TechNBIoT Tech = "nbiot"
	TechCatM  Tech = "catm"
	TechNR    Tech = "nr"
)

// ActTech maps an <AcT> value (TS 27.007 §7.3): 0, 1, 3 → gsm; 2, 4, 5, 6 →
// umts; 7, 10 → lte; 8 → catm; 9 → nbiot; 11, 12, 13 → nr; others → "".
// The standard assigns 8 to EC-GSM-IoT, but the LPWA modules that report it
// (Quectel BG9x and others) use it for LTE Cat-M1, and EC-GSM-IoT is not deployed.
func ActTech(act int) Tech {
	switch act {
	case 0, 1, 3:
		return TechGSM
	case 2, 4, 5, 6:
		return TechUMTS
	case 7, 10:
		return TechLTE
	case 8:
		return TechCatM
	case 9:
		return TechNBIoT
	case 11, 12, 13:
		return TechNR
	}
	return ""
}

// Registration is a +CREG, +CGREG or +CEREG line (TS 27.007 §7.2,
// §10.1.20, §10.1.22), from the query (AT+CREG?: "+CREG: <n>,<stat>[,...]")
// or unsolicited ("+CREG: <stat>[,...]").
type Registration struct {
	Cmd  string // "+CREG", "+CGREG", "+CEREG" or "+C5GREG"
	N    int    // the URC mode from the query form; -1 in the unsolicited form
	Stat int    // 0-11 as in TS 27.007
	LAC  string // location or tracking area code, upper-case hex; "" when absent
	CI   string // cell identity, upper-case hex; "" when absent
	Act  int    // access technology, -1 when absent
}

// State maps Stat with [StatState].
func (r Registration) State() RegState { return StatState(r.Stat) }

// Tech maps Act with [ActTech]; "" when absent.
func (r Registration) Tech() Tech { return ActTech(r.Act) }

// Unsolicited reports whether r came from a URC.
func (r Registration) Unsolicited() bool { return r.N < 0 }

// ParseRegistration parses a +CREG, +CGREG, +CEREG or +C5GREG line in
// either form. The forms are told apart by their second field: the query
// form has a decimal <stat> there, the URC form a quoted (or hex) area
// code or nothing. It returns ErrSyntax or ErrRange for other lines.
func ParseRegistration(line string) (Registration, error) {
	var cmd string
	for _, p := range []string{"+CREG", "+CGREG", "+CEREG", "+C5GREG"} {
		if strings.HasPrefix(line, p+":") {
			cmd = p
		}
	}
	if cmd == "" {
		return Registration{}, vend.Errorf(ErrSyntax, "%q: want +CREG/+CGREG/+CEREG", clip(line))
	}
	f, err := fields(line, cmd+":")
	if err != nil {
		return Registration{}, err
	}
	r := Registration{Cmd: cmd, N: -1, Act: -1}
	query := len(f) >= 2 && !f[1].quoted && isDecimal(f[1].s)
	if query {
		if r.N, err = num(line, f[0], "n", 5); err != nil {
			return Registration{}, err
		}
		f = f[1:]
	}
	if r.Stat, err = num(line, f[0], "stat", 11); err != nil {
		return Registration{}, err
	}
	if len(f) >= 3 {
		if r.LAC, err = hexField(line, f[1], "lac"); err != nil {
			return Registration{}, err
		}
		if r.CI, err = hexField(line, f[2], "ci"); err != nil {
			return Registration{}, err
		}
	} else if len(f) == 2 {
		return Registration{}, vend.Errorf(ErrSyntax, "%q: area code without cell id", clip(line))
	}
	if len(f) >= 4 && f[3].s != "" {
		if r.Act, err = num(line, f[3], "act", 13); err != nil {
			return Registration{}, err
		}
	}
	// Further fields (+CEREG n=4/5: rac, cause, PSM timers) are not used.
	return r, nil
}

func isDecimal(s string) bool {
	if s == "" || len(s) > 6 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func hexField(line string, f field, name string) (string, error) {
	if f.s == "" {
		return "", nil
	}
	if len(f.s) > 10 {
		return "", vend.Errorf(ErrSyntax, "%q: %s too long", clip(line), name)
	}
	s := strings.ToUpper(f.s)
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'A' && s[i] <= 'F') {
			return "", vend.Errorf(ErrSyntax, "%q: %s %q is not hex", clip(line), name, f.s)
		}
	}
	return s, nil
}

// Operator is the reply to AT+COPS? (TS 27.007 §7.3).
type Operator struct {
	Mode   int    // 0 automatic, 1 manual, 2 deregistered, 3 set format only, 4 manual/automatic
	Format int    // 0 long alphanumeric, 1 short alphanumeric, 2 numeric (MCC+MNC); -1 absent
	Name   string // in Format; "" when not registered
	Act    int    // access technology, -1 when absent
}

// Tech maps Act with [ActTech].
func (o Operator) Tech() Tech { return ActTech(o.Act) }

// ParseCOPS parses "+COPS: <mode>[,<format>,<oper>[,<AcT>]]". It returns
// ErrSyntax or ErrRange for other lines.
func ParseCOPS(line string) (Operator, error) {
	f, err := fields(line, "+COPS:")
	if err != nil {
		return Operator{}, err
	}
	o := Operator{Format: -1, Act: -1}
	if o.Mode, err = num(line, f[0], "mode", 4); err != nil {
		return Operator{}, err
	}
	switch {
	case len(f) == 1:
		return o, nil
	case len(f) == 2 || len(f) > 4:
		return Operator{}, vend.Errorf(ErrSyntax, "%q: want 1, 3 or 4 fields", clip(line))
	}
	if o.Format, err = num(line, f[1], "format", 2); err != nil {
		return Operator{}, err
	}
	if len(f[2].s) > 64 {
		return Operator{}, vend.Errorf(ErrSyntax, "%q: operator name too long", clip(line))
	}
	o.Name = f[2].s
	if o.Format == 2 && !isDecimal(o.Name) || o.Format == 2 && len(o.Name) != 5 && len(o.Name) != 6 {
		return Operator{}, vend.Errorf(ErrSyntax, "%q: numeric operator %q is not MCC+MNC", clip(line), o.Name)
	}
	if len(f) == 4 && f[3].s != "" {
		if o.Act, err = num(line, f[3], "act", 13); err != nil {
			return Operator{}, err
		}
	}
	return o, nil
}

// ParseIMEI parses the reply line of AT+CGSN (TS 27.007 §5.4) — bare
// digits, or "+CGSN: <sn>" with or without quotes — and returns the 15-digit
// IMEI. It returns ErrIMEI unless the value is 15 digits whose last is the
// Luhn check digit of the first 14 (3GPP TS 23.003 §6.2.1).
func ParseIMEI(line string) (string, error) {
	s := strings.TrimSpace(line)
	if strings.HasPrefix(s, "+CGSN:") {
		s = strings.TrimSpace(s[len("+CGSN:"):])
	}
	s = strings.Trim(s, `"`)
	if len(s) != 15 || !allDigits(s) {
		return "", vend.Errorf(ErrIMEI, "%q: want 15 digits", clip(line))
	}
	if !luhn(s) {
		return "", vend.Errorf(ErrIMEI, "%q: check digit mismatch", clip(line))
	}
	return s, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// luhn reports whether the decimal string s ends with its Luhn check digit.
func luhn(s string) bool {
	sum := 0
	double := false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// iccidPrefixes are the vendor forms of the ICCID reply.
var iccidPrefixes = []string{"+CCID:", "+ICCID:", "+QCCID:", "^ICCID:", "+CICCID:", "ICCID:"}

// ParseICCID parses the reply line of AT+CCID, AT+ICCID or AT+QCCID — bare
// digits, or prefixed ("+CCID:", "+ICCID:", "ICCID:", "+QCCID:", "^ICCID:"),
// quoted or not — and returns the ICCID (ITU-T E.118) in upper case without
// trailing F padding. It returns ErrICCID unless the value is 19 or 20
// digits (the last may be an F filler) beginning with 89, the telecom
// industry identifier. The check digit is not verified: 20-digit ICCIDs
// from several issuers do not carry one.
func ParseICCID(line string) (string, error) {
	s := strings.TrimSpace(line)
	for _, p := range iccidPrefixes {
		if strings.HasPrefix(strings.ToUpper(s), p) {
			s = strings.TrimSpace(s[len(p):])
			break
		}
	}
	s = strings.ToUpper(strings.Trim(s, `"`))
	if len(s) < 19 || len(s) > 20 {
		return "", vend.Errorf(ErrICCID, "%q: want 19-20 digits", clip(line))
	}
	if s[len(s)-1] == 'F' {
		s = s[:len(s)-1]
	}
	if len(s) < 18 || !allDigits(s) {
		return "", vend.Errorf(ErrICCID, "%q: want digits", clip(line))
	}
	if len(s) == 18 {
		return "", vend.Errorf(ErrICCID, "%q: want 19-20 digits", clip(line))
	}
	if !strings.HasPrefix(s, "89") {
		return "", vend.Errorf(ErrICCID, "%q: does not begin with 89", clip(line))
	}
	return s, nil
}

// Info returns the first information line of r, ErrMissing when there is
// none, or r's error for a final result other than OK.
func (r *Response) Info() (string, error) {
	if err := r.Err(); err != nil {
		return "", err
	}
	if len(r.Lines) == 0 {
		return "", vend.Errorf(ErrMissing, "%s", r.Cmd)
	}
	return r.Lines[0], nil
}
