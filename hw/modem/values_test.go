package modem_test

import (
	"errors"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/modem"
)

func TestParseCSQ(t *testing.T) {
	tests := []struct {
		in      string
		want    modem.CSQ
		dbm     modem.DBm
		known   bool
		wantErr error
	}{
		{"+CSQ: 0,0", modem.CSQ{0, 0}, -113, true, nil},
		{"+CSQ: 1,7", modem.CSQ{1, 7}, -111, true, nil},
		{"+CSQ: 20,99", modem.CSQ{20, 99}, -73, true, nil},
		{"+CSQ: 31,0", modem.CSQ{31, 0}, -51, true, nil},
		{"+CSQ: 99,99", modem.CSQ{99, 99}, 0, false, nil},
		{"+CSQ:15,3", modem.CSQ{15, 3}, -83, true, nil},
		{"+CSQ: 100,99", modem.CSQ{100, 99}, -116, true, nil},
		{"+CSQ: 191,99", modem.CSQ{191, 99}, -25, true, nil},
		{"+CSQ: 32,0", modem.CSQ{}, 0, false, modem.ErrRange},
		{"+CSQ: 20,8", modem.CSQ{}, 0, false, modem.ErrRange},
		{"+CSQ: -1,0", modem.CSQ{}, 0, false, modem.ErrSyntax},
		{"+CSQ: 20", modem.CSQ{}, 0, false, modem.ErrSyntax},
		{"+CSQ: 20,0,1", modem.CSQ{}, 0, false, modem.ErrSyntax},
		{"+CSQ: a,0", modem.CSQ{}, 0, false, modem.ErrSyntax},
		{"+CESQ: 20,0", modem.CSQ{}, 0, false, modem.ErrSyntax},
		{`+CSQ: "20",0`, modem.CSQ{}, 0, false, modem.ErrSyntax},
	}
	for _, tt := range tests {
		got, err := modem.ParseCSQ(tt.in)
		if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Errorf("ParseCSQ(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if vend.KindOf(err) != vend.Invalid {
				t.Errorf("ParseCSQ(%q) error kind = %s, want invalid", tt.in, vend.KindOf(err))
			}
			continue
		}
		dbm, known := got.DBm()
		if got != tt.want || dbm != tt.dbm || known != tt.known {
			t.Errorf("ParseCSQ(%q) = %+v, %v (%v), want %+v, %v (%v)", tt.in, got, dbm, known, tt.want, tt.dbm, tt.known)
		}
	}
}

func TestParseCESQ(t *testing.T) {
	q, err := modem.ParseCESQ("+CESQ: 99,99,255,255,20,44")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := q.RxLevDBm(); ok {
		t.Errorf("RxLev 99 reported as known")
	}
	if _, ok := q.RSCPDBm(); ok {
		t.Errorf("RSCP 255 reported as known")
	}
	if v, ok := q.RSRQDB(); !ok || v != -100 || v.String() != "-10.0 dB" {
		t.Errorf("RSRQ 20 = %v %v, want -10.0 dB", v, ok)
	}
	if v, ok := q.RSRPDBm(); !ok || v != -97 {
		t.Errorf("RSRP 44 = %v %v, want -97 dBm", v, ok)
	}
	edges := []struct {
		in   string
		conv func(modem.CESQ) (int, bool)
		want int
	}{
		{"+CESQ: 0,0,255,255,255,255", func(q modem.CESQ) (int, bool) { v, ok := q.RxLevDBm(); return int(v), ok }, -111},
		{"+CESQ: 63,7,255,255,255,255", func(q modem.CESQ) (int, bool) { v, ok := q.RxLevDBm(); return int(v), ok }, -48},
		{"+CESQ: 99,99,0,0,255,255", func(q modem.CESQ) (int, bool) { v, ok := q.RSCPDBm(); return int(v), ok }, -121},
		{"+CESQ: 99,99,96,49,255,255", func(q modem.CESQ) (int, bool) { v, ok := q.RSCPDBm(); return int(v), ok }, -25},
		{"+CESQ: 99,99,0,1,255,255", func(q modem.CESQ) (int, bool) { v, ok := q.EcNoDB(); return int(v), ok }, -240},
		{"+CESQ: 99,99,0,49,255,255", func(q modem.CESQ) (int, bool) { v, ok := q.EcNoDB(); return int(v), ok }, 0},
		{"+CESQ: 99,99,255,255,0,0", func(q modem.CESQ) (int, bool) { v, ok := q.RSRQDB(); return int(v), ok }, -200},
		{"+CESQ: 99,99,255,255,34,97", func(q modem.CESQ) (int, bool) { v, ok := q.RSRQDB(); return int(v), ok }, -30},
		{"+CESQ: 99,99,255,255,0,0", func(q modem.CESQ) (int, bool) { v, ok := q.RSRPDBm(); return int(v), ok }, -141},
		{"+CESQ: 99,99,255,255,34,97", func(q modem.CESQ) (int, bool) { v, ok := q.RSRPDBm(); return int(v), ok }, -44},
	}
	for _, e := range edges {
		q, err := modem.ParseCESQ(e.in)
		if err != nil {
			t.Errorf("ParseCESQ(%q) error = %v", e.in, err)
			continue
		}
		if v, ok := e.conv(q); !ok || v != e.want {
			t.Errorf("ParseCESQ(%q) converted = %d (%v), want %d", e.in, v, ok, e.want)
		}
	}
	for _, bad := range []string{
		"+CESQ: 99,99,255,255,35,44", "+CESQ: 99,99,255,255,20,98", "+CESQ: 64,99,255,255,20,44",
		"+CESQ: 99,99,97,255,20,44", "+CESQ: 99,99,255,50,20,44", "+CESQ: 99,99,255,255,20",
		"+CESQ: 99,99,255,255,20,44,1", "+CSQ: 99,99", "+CESQ: 99,99,255,255,20,",
	} {
		if _, err := modem.ParseCESQ(bad); err == nil || vend.KindOf(err) != vend.Invalid {
			t.Errorf("ParseCESQ(%q) error = %v, want an invalid error", bad, err)
		}
	}
}

func TestParseRegistration(t *testing.T) {
	tests := []struct {
		in    string
		want  modem.Registration
		state modem.RegState
		tech  modem.Tech
	}{
		{"+CREG: 0,1", modem.Registration{Cmd: "+CREG", N: 0, Stat: 1, Act: -1}, modem.RegHome, ""},
		{"+CREG: 2,5,\"1a2b\",\"01C3D4E5\",7", modem.Registration{"+CREG", 2, 5, "1A2B", "01C3D4E5", 7}, modem.RegRoaming, modem.TechLTE},
		{"+CREG: 1", modem.Registration{Cmd: "+CREG", N: -1, Stat: 1, Act: -1}, modem.RegHome, ""},
		{"+CREG: 2", modem.Registration{Cmd: "+CREG", N: -1, Stat: 2, Act: -1}, modem.RegSearching, ""},
		{"+CEREG: 5", modem.Registration{Cmd: "+CEREG", N: -1, Stat: 5, Act: -1}, modem.RegRoaming, ""},
		{"+CEREG: 1,\"1A2B\",\"01C3D4E5\",9", modem.Registration{"+CEREG", -1, 1, "1A2B", "01C3D4E5", 9}, modem.RegHome, modem.TechNBIoT},
		{"+CEREG: 2,1,\"1A2B\",\"01C3D4E5\",8", modem.Registration{"+CEREG", 2, 1, "1A2B", "01C3D4E5", 8}, modem.RegHome, modem.TechCatM},
		{"+CEREG: 4,1,\"1A2B\",\"01C3D4E5\",7,,,\"00100100\",\"01000111\"", modem.Registration{"+CEREG", 4, 1, "1A2B", "01C3D4E5", 7}, modem.RegHome, modem.TechLTE},
		{"+CGREG: 0,3", modem.Registration{Cmd: "+CGREG", N: 0, Stat: 3, Act: -1}, modem.RegDenied, ""},
		{"+CREG: 0,0", modem.Registration{Cmd: "+CREG", N: 0, Stat: 0, Act: -1}, modem.RegNotRegistered, ""},
		{"+CREG: 0,4", modem.Registration{Cmd: "+CREG", N: 0, Stat: 4, Act: -1}, modem.RegUnknown, ""},
		{"+CREG: 1,1A2B,01C3D4E5", modem.Registration{"+CREG", -1, 1, "1A2B", "01C3D4E5", -1}, modem.RegHome, ""},
		{"+CREG: 2,1,\"1A2B\",\"01C3D4E5\",0", modem.Registration{"+CREG", 2, 1, "1A2B", "01C3D4E5", 0}, modem.RegHome, modem.TechGSM},
		{"+CREG: 2,1,\"1A2B\",\"01C3D4E5\",2", modem.Registration{"+CREG", 2, 1, "1A2B", "01C3D4E5", 2}, modem.RegHome, modem.TechUMTS},
		{"+CREG: 0,6", modem.Registration{Cmd: "+CREG", N: 0, Stat: 6, Act: -1}, modem.RegHome, ""},
		{"+CREG: 0,10", modem.Registration{Cmd: "+CREG", N: 0, Stat: 10, Act: -1}, modem.RegRoaming, ""},
	}
	for _, tt := range tests {
		got, err := modem.ParseRegistration(tt.in)
		if err != nil {
			t.Errorf("ParseRegistration(%q) error = %v", tt.in, err)
			continue
		}
		if got != tt.want || got.State() != tt.state || got.Tech() != tt.tech {
			t.Errorf("ParseRegistration(%q) = %+v (%s, %q), want %+v (%s, %q)", tt.in, got, got.State(), got.Tech(), tt.want, tt.state, tt.tech)
		}
		if got.Unsolicited() != (tt.want.N < 0) {
			t.Errorf("ParseRegistration(%q).Unsolicited() = %v", tt.in, got.Unsolicited())
		}
	}
	for _, bad := range []string{
		"+CREG:", "+CREG: 12", "+CREG: 0,12", "+CREG: 6,1", "+CREG: 1,\"1A2B\"", "+CREG: 1,\"XYZ\",\"1\"",
		"+CREG: 1,\"1A2B", "+COPS: 0", "CREG: 1", "+CREG: 2,1,\"1A2B\",\"01C3D4E5\",14", "+CREG: x",
	} {
		if _, err := modem.ParseRegistration(bad); err == nil || vend.KindOf(err) != vend.Invalid {
			t.Errorf("ParseRegistration(%q) error = %v, want an invalid error", bad, err)
		}
	}
}

func TestParseCOPS(t *testing.T) {
	tests := []struct {
		in   string
		want modem.Operator
	}{
		{`+COPS: 0,0,"Vodafone.de",7`, modem.Operator{0, 0, "Vodafone.de", 7}},
		{`+COPS: 0,0,"AT&T, Inc",7`, modem.Operator{0, 0, "AT&T, Inc", 7}},
		{`+COPS: 0,2,"26202",2`, modem.Operator{0, 2, "26202", 2}},
		{`+COPS: 1,1,"TMO"`, modem.Operator{1, 1, "TMO", -1}},
		{`+COPS: 0`, modem.Operator{0, -1, "", -1}},
		{`+COPS: 2`, modem.Operator{2, -1, "", -1}},
	}
	for _, tt := range tests {
		got, err := modem.ParseCOPS(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseCOPS(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{`+COPS: 5`, `+COPS: 0,3,"X"`, `+COPS: 0,0`, `+COPS: 0,2,"ABCDE",7`, `+COPS: 0,0,"X",7,1`, `+COPS: 0,0,"X`, `+CSQ: 1,2`} {
		if _, err := modem.ParseCOPS(bad); err == nil || vend.KindOf(err) != vend.Invalid {
			t.Errorf("ParseCOPS(%q) error = %v, want an invalid error", bad, err)
		}
	}
}

func TestParseIMEI(t *testing.T) {
	for in, want := range map[string]string{
		"490154203237518":          "490154203237518",
		"+CGSN: 490154203237518":   "490154203237518",
		`+CGSN: "356938035643809"`: "356938035643809",
	} {
		if got, err := modem.ParseIMEI(in); err != nil || got != want {
			t.Errorf("ParseIMEI(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"490154203237519", "49015420323751", "4901542032375180", "49015420323751X", "", "OK"} {
		if _, err := modem.ParseIMEI(bad); !errors.Is(err, modem.ErrIMEI) {
			t.Errorf("ParseIMEI(%q) error = %v, want ErrIMEI", bad, err)
		}
	}
}

func TestParseICCID(t *testing.T) {
	for in, want := range map[string]string{
		"+CCID: 8944500102198304826":      "8944500102198304826",
		"+CCID: \"89860012345678901234\"": "89860012345678901234",
		"ICCID: 8944500102198304826":      "8944500102198304826",
		"+ICCID: 8944500102198304826":     "8944500102198304826",
		"+QCCID: 8986031644208312345F":    "8986031644208312345",
		"+qccid: 8986031644208312345f":    "8986031644208312345",
		"^ICCID: 89860012345678901234":    "89860012345678901234",
		"89014103211118510720":            "89014103211118510720",
	} {
		if got, err := modem.ParseICCID(in); err != nil || got != want {
			t.Errorf("ParseICCID(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{
		"+CCID: 894450010219830482", "+CCID: 894450010219830482612", "+CCID: 1944500102198304826",
		"+CCID: 89445001021983048F6", "+CCID: 894450010219830482F", "+CCID: ", "ERROR",
	} {
		if _, err := modem.ParseICCID(bad); !errors.Is(err, modem.ErrICCID) {
			t.Errorf("ParseICCID(%q) error = %v, want ErrICCID", bad, err)
		}
	}
}

func TestStatState(t *testing.T) {
	want := map[int]modem.RegState{
		0: modem.RegNotRegistered, 1: modem.RegHome, 2: modem.RegSearching, 3: modem.RegDenied,
		4: modem.RegUnknown, 5: modem.RegRoaming, 8: modem.RegNotRegistered, 11: modem.RegUnknown, -1: modem.RegUnknown,
	}
	for stat, w := range want {
		if got := modem.StatState(stat); got != w {
			t.Errorf("StatState(%d) = %s, want %s", stat, got, w)
		}
	}
}
