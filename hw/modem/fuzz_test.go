package modem_test

import (
	"errors"
	"strings"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/modem"
)

// Seed corpora live in testdata/fuzz/<Name>/ as well.

// FuzzParse feeds arbitrary bytes to the response parser for several
// commands and every information line to the value parsers: no panic,
// bounded output, and an error exactly when the result is not OK.
func FuzzParse(f *testing.F) {
	f.Add([]byte("AT+CSQ\r\r\n+CSQ: 20,0\r\n+CREG: 5\r\n\r\nOK\r\n"))
	f.Add([]byte("\r\n+CME ERROR: 4\r\n"))
	f.Add([]byte("\n\r+CEREG: 2,1,\"1A2B\",\"01C3D4E5\",7\rRING\nOK"))
	f.Add([]byte("\x00\xff+COPS: 0,0,\"A,B\",7\r\nOK\r\n"))
	cmds := []string{"AT+CSQ", "AT+CESQ", "AT+CREG?", "AT+CEREG?", "AT+COPS?", "AT+CGSN", "AT+CCID", "ATI"}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, cmd := range cmds {
			r, err := modem.ParseResponse(data, cmd)
			if r == nil {
				t.Fatalf("ParseResponse(%q, %s) returned a nil response", data, cmd)
			}
			if len(r.Lines)+len(r.URCs) > modem.MaxResponseLines {
				t.Fatalf("ParseResponse(%q, %s) kept %d lines", data, cmd, len(r.Lines)+len(r.URCs))
			}
			total := 0
			for _, l := range append(append([]string(nil), r.Lines...), r.URCs...) {
				total += len(l)
				if l == "" || len(l) > modem.MaxLineLen || strings.TrimSpace(l) != l {
					t.Fatalf("ParseResponse(%q, %s): bad line %q", data, cmd, l)
				}
				for i := 0; i < len(l); i++ {
					if l[i] < 0x20 || l[i] > 0x7e {
						t.Fatalf("ParseResponse(%q, %s): non-printable byte in %q", data, cmd, l)
					}
				}
			}
			if total > modem.MaxResponseBytes {
				t.Fatalf("ParseResponse(%q, %s) kept %d bytes", data, cmd, total)
			}
			if (err == nil) != (r.Final == modem.ResultOK && !errors.Is(err, modem.ErrTooLarge)) {
				t.Fatalf("ParseResponse(%q, %s): final %q with error %v", data, cmd, r.Final, err)
			}
			if err != nil && vend.CodeOf(err) == "internal" {
				t.Fatalf("ParseResponse(%q, %s): untyped error %v", data, cmd, err)
			}
			for _, l := range r.Lines {
				checkLine(t, l)
			}
		}
	})
}

// checkLine runs every value parser on l and checks what they accept.
func checkLine(t *testing.T, l string) {
	t.Helper()
	if c, err := modem.ParseCSQ(l); err == nil {
		if d, ok := c.DBm(); ok && (d < -116 || d > -25) {
			t.Fatalf("ParseCSQ(%q) = %v dBm", l, d)
		}
	} else if vend.KindOf(err) != vend.Invalid {
		t.Fatalf("ParseCSQ(%q) error kind %s", l, vend.KindOf(err))
	}
	if q, err := modem.ParseCESQ(l); err == nil {
		if d, ok := q.RSRPDBm(); ok && (d < -141 || d > -44) {
			t.Fatalf("ParseCESQ(%q) RSRP %v", l, d)
		}
	} else if vend.KindOf(err) != vend.Invalid {
		t.Fatalf("ParseCESQ(%q) error kind %s", l, vend.KindOf(err))
	}
	if o, err := modem.ParseCOPS(l); err == nil {
		if o.Mode < 0 || o.Mode > 4 || o.Format < -1 || o.Format > 2 || o.Act < -1 || o.Act > 13 {
			t.Fatalf("ParseCOPS(%q) = %+v", l, o)
		}
	}
	if v, err := modem.ParseIMEI(l); err == nil && len(v) != 15 {
		t.Fatalf("ParseIMEI(%q) = %q", l, v)
	}
	if v, err := modem.ParseICCID(l); err == nil && (len(v) < 19 || len(v) > 20 || !strings.HasPrefix(v, "89")) {
		t.Fatalf("ParseICCID(%q) = %q", l, v)
	}
}

// FuzzParseCREG checks that ParseRegistration accepts only what TS 27.007
// allows and never panics.
func FuzzParseCREG(f *testing.F) {
	f.Add("+CREG: 2,1,\"1A2B\",\"01C3D4E5\",7")
	f.Add("+CEREG: 5")
	f.Add("+CEREG: 4,1,\"1A2B\",\"01C3D4E5\",7,,,\"00100100\",\"01000111\"")
	f.Add("+CREG: 1,1A2B,01C3D4E5")
	f.Fuzz(func(t *testing.T, line string) {
		r, err := modem.ParseRegistration(line)
		if err != nil {
			if vend.KindOf(err) != vend.Invalid || !strings.HasPrefix(err.Error(), "modem: ") {
				t.Fatalf("ParseRegistration(%q) error %v (kind %s)", line, err, vend.KindOf(err))
			}
			return
		}
		if r.N < -1 || r.N > 5 || r.Stat < 0 || r.Stat > 11 || r.Act < -1 || r.Act > 13 {
			t.Fatalf("ParseRegistration(%q) = %+v out of range", line, r)
		}
		for _, h := range []string{r.LAC, r.CI} {
			if len(h) > 10 || strings.Trim(h, "0123456789ABCDEF") != "" {
				t.Fatalf("ParseRegistration(%q) = %+v: bad hex", line, r)
			}
		}
		switch r.State() {
		case modem.RegHome, modem.RegRoaming, modem.RegSearching, modem.RegDenied, modem.RegUnknown, modem.RegNotRegistered:
		default:
			t.Fatalf("ParseRegistration(%q).State() = %q", line, r.State())
		}
		if !strings.HasPrefix(line, r.Cmd+":") {
			t.Fatalf("ParseRegistration(%q).Cmd = %q", line, r.Cmd)
		}
	})
}
