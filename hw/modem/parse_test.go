package modem_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/modem"
)

func TestParseResponse(t *testing.T) {
	long := strings.Repeat("x", 10000)
	tests := []struct {
		name  string
		cmd   string
		in    string
		lines []string
		urcs  []string
		final string
		err   error // nil, a sentinel, or modem.ErrError for a *CommandError
	}{
		{"plain", "AT+CSQ", "\r\n+CSQ: 20,0\r\n\r\nOK\r\n", []string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"echo on", "AT+CSQ", "AT+CSQ\r\r\n+CSQ: 20,0\r\n\r\nOK\r\n", []string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"echo lower case", "AT+CSQ", "at+csq\r\r\n+CSQ: 20,0\r\nOK\r\n", []string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"LF only", "AT+CSQ", "\n+CSQ: 20,0\n\nOK\n", []string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"CR only", "AT+CSQ", "\r+CSQ: 20,0\r\rOK\r", []string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"LF CR mix", "AT+CSQ", "\n\r+CSQ: 20,0\n\r\r\n\nOK\n\r", []string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"blank lines and spaces", "AT+CSQ", "\r\n\r\n   \r\n +CSQ: 20,0 \r\n\r\n\r\nOK  \r\n", []string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"URCs between command and OK", "AT+CSQ",
			"\r\n+CREG: 5\r\n+CSQ: 20,0\r\nRING\r\n+CMTI: \"SM\",3\r\n^SYSINFO: 2,3,0,5,1\r\n\r\nOK\r\n",
			[]string{"+CSQ: 20,0"}, []string{"+CREG: 5", "RING", `+CMTI: "SM",3`, "^SYSINFO: 2,3,0,5,1"}, "OK", nil},
		{"URC before echo", "AT+CEREG?", "\r\nRDY\r\nAT+CEREG?\r\r\n+CPIN: READY\r\n+CEREG: 2,1,\"1A2B\",\"01C3D4E5\",7\r\nOK\r\n",
			[]string{`+CEREG: 2,1,"1A2B","01C3D4E5",7`}, []string{"RDY", "+CPIN: READY"}, "OK", nil},
		{"bare IMEI with URC", "AT+CGSN", "\r\n490154203237518\r\n+CEREG: 1\r\nOK\r\n",
			[]string{"490154203237518"}, []string{"+CEREG: 1"}, "OK", nil},
		{"prefixed IMEI", "AT+CGSN", "\r\n+CGSN: \"490154203237518\"\r\nOK\r\n",
			[]string{`+CGSN: "490154203237518"`}, nil, "OK", nil},
		{"QCCID", "AT+QCCID", "\r\n+QCCID: 8986031644208312345F\r\n+CREG: 1\r\nOK\r\n",
			[]string{"+QCCID: 8986031644208312345F"}, []string{"+CREG: 1"}, "OK", nil},
		{"CCID answered as ICCID", "AT+CCID", "\r\n+ICCID: 8944500102198304826\r\nOK\r\n",
			[]string{"+ICCID: 8944500102198304826"}, nil, "OK", nil},
		{"ATI multi-line", "ATI", "ATI\r\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A03M4G\r\n\r\nOK\r\n",
			[]string{"Quectel", "EC25", "Revision: EC25EFAR06A03M4G"}, nil, "OK", nil},
		{"garbage bytes around lines", "AT+CSQ", "\x00\xff\x1b\r\n+CSQ:\x00 20,0\x07\r\n\xfe\xfeOK\x00\r\n",
			[]string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"garbage line", "AT+CSQ", "~#q!\r\n+CSQ: 20,0\r\nOK\r\n", []string{"+CSQ: 20,0"}, []string{"~#q!"}, "OK", nil},
		{"bytes after final ignored", "AT+CSQ", "+CSQ: 20,0\r\nOK\r\n+CREG: 2\r\n", []string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"ERROR", "AT+CESQ", "\r\nERROR\r\n", nil, nil, "ERROR", modem.ErrError},
		{"CME error", "AT+CESQ", "AT+CESQ\r\r\n+CME ERROR: 4\r\n", nil, nil, "+CME ERROR: 4", modem.ErrError},
		{"CMS error", "AT+CMGS", "\r\n+CMS ERROR: 500\r\n", nil, nil, "+CMS ERROR: 500", modem.ErrError},
		{"CME text error", "AT+CCID", "\r\n+CME ERROR: SIM not inserted\r\n", nil, nil, "+CME ERROR: SIM not inserted", modem.ErrError},
		{"partial line", "AT+CSQ", "\r\n+CSQ: 20,0\r\nO", []string{"+CSQ: 20,0"}, nil, "", modem.ErrIncomplete},
		{"no final", "AT+CSQ", "\r\n+CSQ: 20,0\r\n", []string{"+CSQ: 20,0"}, nil, "", modem.ErrIncomplete},
		{"empty", "AT", "", nil, nil, "", modem.ErrIncomplete},
		{"oversized line dropped", "AT+CSQ", "\r\n" + long + "\r\n+CSQ: 20,0\r\nOK\r\n", []string{"+CSQ: 20,0"}, nil, "OK", nil},
		{"oversized line merged with info", "AT+CSQ", "\r\n" + long + "+CSQ: 20,0\r\nOK\r\n", nil, nil, "OK", nil},
		{"too many lines", "ATI", strings.Repeat("line\r\n", 200) + "OK\r\n", nil, nil, "OK", modem.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := modem.ParseResponse([]byte(tt.in), tt.cmd)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("ParseResponse(%q, %s) error = %v, want %v", clipq(tt.in), tt.cmd, err, tt.err)
			}
			if tt.err == modem.ErrTooLarge {
				if r.Dropped == 0 || len(r.Lines) > modem.MaxResponseLines {
					t.Fatalf("ParseResponse(%q): %d lines kept, %d dropped", clipq(tt.in), len(r.Lines), r.Dropped)
				}
				return
			}
			if !reflect.DeepEqual(r.Lines, tt.lines) {
				t.Errorf("ParseResponse(%q, %s).Lines = %q, want %q", clipq(tt.in), tt.cmd, r.Lines, tt.lines)
			}
			if !reflect.DeepEqual(r.URCs, tt.urcs) {
				t.Errorf("ParseResponse(%q, %s).URCs = %q, want %q", clipq(tt.in), tt.cmd, r.URCs, tt.urcs)
			}
			if r.Final != tt.final {
				t.Errorf("ParseResponse(%q, %s).Final = %q, want %q", clipq(tt.in), tt.cmd, r.Final, tt.final)
			}
		})
	}
}

func TestCommandError(t *testing.T) {
	_, err := modem.ParseResponse([]byte("\r\n+CME ERROR: 10\r\n"), "AT+CCID")
	var ce *modem.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *CommandError", err, err)
	}
	if ce.Code != 10 || ce.Cmd != "AT+CCID" {
		t.Errorf("CommandError = %+v, want code 10 for AT+CCID", ce)
	}
	if got, want := err.Error(), "modem: AT+CCID: +CME ERROR: 10"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if vend.KindOf(err) != vend.Transient || vend.CodeOf(err) != "modem.error" {
		t.Errorf("kind/code = %s/%s, want transient/modem.error", vend.KindOf(err), vend.CodeOf(err))
	}
}

// oneByte returns one byte per Read, interleaved with (0, nil) reads as a
// serial port with a short timeout does.
type oneByte struct {
	b    []byte
	tick bool
}

func (r *oneByte) Read(p []byte) (int, error) {
	if r.tick = !r.tick; r.tick {
		return 0, nil
	}
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestReadResponsePartialReads(t *testing.T) {
	in := "AT+CREG?\r\r\n+CREG: 2,5,\"1A2B\",\"01C3D4E5\",7\r\n+CEREG: 5\r\n\r\nOK\r\nRING\r\n"
	r, err := modem.ReadResponse(&oneByte{b: []byte(in)}, "AT+CREG?")
	if err != nil {
		t.Fatalf("ReadResponse(one byte at a time) error = %v", err)
	}
	if want := []string{`+CREG: 2,5,"1A2B","01C3D4E5",7`}; !reflect.DeepEqual(r.Lines, want) {
		t.Errorf("Lines = %q, want %q", r.Lines, want)
	}
	if want := []string{"+CEREG: 5"}; !reflect.DeepEqual(r.URCs, want) {
		t.Errorf("URCs = %q, want %q", r.URCs, want)
	}
}

func TestReadResponseTimeoutReads(t *testing.T) {
	// A port that only ever times out: incomplete, not a hang.
	_, err := modem.ReadResponse(zeroReader{}, "AT")
	if !errors.Is(err, modem.ErrIncomplete) {
		t.Fatalf("ReadResponse(always (0, nil)) error = %v, want ErrIncomplete", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestSplitterBounded(t *testing.T) {
	var s modem.Splitter
	var got []string
	emit := func(l string) { got = append(got, l) }
	// 1 MB without a terminator, fed in chunks: nothing emitted, bounded buffer.
	chunk := bytes.Repeat([]byte("A"), 4096)
	for range 256 {
		s.Feed(chunk, emit)
		if s.Pending() > modem.MaxLineLen {
			t.Fatalf("Splitter buffers %d bytes, limit %d", s.Pending(), modem.MaxLineLen)
		}
	}
	s.Feed([]byte("\r\nOK\r\n"), emit)
	if want := []string{"OK"}; !reflect.DeepEqual(got, want) || s.Dropped != 1 {
		t.Fatalf("after an overlong line: lines %q dropped %d, want %q dropped 1", got, s.Dropped, want)
	}
	// A line of exactly MaxLineLen is kept.
	got = nil
	s.Feed(append(bytes.Repeat([]byte("B"), modem.MaxLineLen), '\n'), emit)
	if len(got) != 1 || len(got[0]) != modem.MaxLineLen {
		t.Fatalf("line of MaxLineLen bytes: got %d lines", len(got))
	}
}

func TestInfoPrefix(t *testing.T) {
	for cmd, want := range map[string]string{
		"AT+CSQ": "+CSQ:", "AT+CREG?": "+CREG:", "at+cereg?": "+CEREG:", "AT+COPS?": "+COPS:",
		"AT^SYSINFO": "^SYSINFO:", "AT+CREG=2": "+CREG:", "ATI": "", "ATE0": "", "AT+CGSN": "+CGSN:",
		"AT+CCID": "+CCID:", "AT+ICCID": "+ICCID:", "AT": "", "": "",
	} {
		if got := modem.InfoPrefix(cmd); got != want {
			t.Errorf("InfoPrefix(%q) = %q, want %q", cmd, got, want)
		}
	}
}

func clipq(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
