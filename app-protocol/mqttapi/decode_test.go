package mqttapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

var (
	sess  = mustSession("4c12ef51-7541-4eb9-9e31-1c83635c7a61")
	t0    = time.UnixMilli(1767225600000)
	units = func(u uint64) *uint64 { return &u }
	dbm   = func(d int) *int { return &d }
)

func mustSession(s string) vend.SessionID {
	id, err := vend.ParseSessionID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func env(id string) mqttapi.Envelope {
	return mqttapi.Envelope{ID: id, TS: t0.UnixMilli()}
}

// samples returns one valid message of every Registry type, keyed by Name.
func samples() map[string]mqttapi.Message {
	return map[string]mqttapi.Message{
		"State": &mqttapi.State{Envelope: env("st1"), Status: mqttapi.Online, Firmware: "1.4.2",
			Machines: []mqttapi.MachineSummary{{ID: "tap1", Kind: vend.KindWater, State: mqttapi.MachineIdle}}},
		"Telemetry": &mqttapi.Telemetry{Envelope: env("te1"), UptimeS: 3600,
			Modem: &mqttapi.Modem{RSSIdBm: dbm(-83), CSQ: 15, Registration: mqttapi.RegRoaming, Operator: "26201", Tech: "lte"},
			Board: mqttapi.Board{Status: "ok"}, OutboxDepth: 1,
			Machines: []mqttapi.MachineStatus{{ID: "tap1", State: mqttapi.MachineBusy, Session: sess,
				Counters: mqttapi.Counters{Unit: vend.UnitML, UnitsTotal: 5000, SessionsTotal: 2, FaultsTotal: 0}}}},
		"Event": &mqttapi.Event{Envelope: env("ev1"), Kind: mqttapi.EventEnded, Session: sess, Machine: "tap1",
			Units: units(0), Unit: vend.UnitML, Amount: &vend.Amount{Minor: 0, Currency: "EUR"},
			Outcome: vend.OutcomeFault, FaultCode: "flow.sensor"},
		"Usage":     &mqttapi.Usage{Envelope: env("us1"), Session: sess, Seq: 7, Report: []byte{0, 1, 2, 0xff}},
		"Reply":     &mqttapi.Reply{Envelope: env("re1"), CmdID: "cmd1", OK: false, Code: mqttapi.CodeMachineBusy, Message: "tap1 runs a session"},
		"Authorize": &mqttapi.Authorize{Envelope: env("au1"), Machine: "tap1", Grant: []byte("grant-bytes")},
		"Stop":      &mqttapi.Stop{Envelope: env("sp1"), Session: sess, Machine: "tap1"},
		"SetPrices": &mqttapi.SetPrices{Envelope: env("pr1"), Currency: "CNY", Prices: []mqttapi.PriceEntry{
			{Machine: "washer1", Unit: vend.UnitCycle, Price: vend.Price{Minor: 350, Per: 1}},
			{Machine: "snack", Slot: "B2", Unit: vend.UnitItem, Price: vend.Price{Minor: 0, Per: 1}}}},
		"TestOutput": &mqttapi.TestOutput{Envelope: env("to1"), Machine: "tap1", Output: "pump", DurationMS: 10000},
		"Reboot":     &mqttapi.Reboot{Envelope: env("rb1"), DelayS: 0},
		"RotateKey":  &mqttapi.RotateKey{Envelope: env("rk1"), Which: mqttapi.KeyCloud, PublicKey: bytes.Repeat([]byte{7}, 32), Signature: bytes.Repeat([]byte{9}, 64)},
		"Ack":        &mqttapi.Ack{Envelope: env("ak1"), IDs: []string{"ev1", "us1"}},
	}
}

// TestGolden encodes one message of every type and compares it with
// testdata/golden/<Name>.json (go test -update rewrites them), then decodes
// the file back.
func TestGolden(t *testing.T) {
	s := samples()
	for _, e := range mqttapi.Registry() {
		msg, ok := s[e.Name]
		if !ok {
			t.Errorf("no sample for %s", e.Name)
			continue
		}
		got, err := mqttapi.Encode(msg)
		if err != nil {
			t.Errorf("Encode(%s) = %v", e.Name, err)
			continue
		}
		path := filepath.Join("testdata", "golden", e.Name+".json")
		if *update {
			writeFile(t, path, append(got, '\n'))
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		want = bytes.TrimSuffix(want, []byte("\n"))
		if !bytes.Equal(got, want) {
			t.Errorf("Encode(%s) =\n%s\nwant (%s)\n%s", e.Name, got, path, want)
		}
		back, err := mqttapi.Decode(e.Leaf, want)
		if err != nil {
			t.Errorf("Decode(%s, %s) = %v", e.Leaf, want, err)
			continue
		}
		if !reflect.DeepEqual(back, msg) {
			t.Errorf("Decode(%s golden) = %+v, want %+v", e.Name, back, msg)
		}
		if _, err := mqttapi.Decode(otherLeaf(e.Leaf), want); !errors.Is(err, mqttapi.ErrType) {
			t.Errorf("Decode(%s, %s payload) err = %v, want ErrType", otherLeaf(e.Leaf), e.Name, err)
		}
	}
}

func otherLeaf(l mqttapi.Leaf) mqttapi.Leaf {
	if l == mqttapi.LeafCmd {
		return mqttapi.LeafEvt
	}
	return mqttapi.LeafCmd
}

func TestDecodeAs(t *testing.T) {
	b, err := mqttapi.Encode(samples()["Usage"])
	if err != nil {
		t.Fatal(err)
	}
	u, err := mqttapi.DecodeAs[mqttapi.Usage](b)
	if err != nil || u.Seq != 7 || u.Session != sess {
		t.Errorf("DecodeAs[Usage] = %+v, %v", u, err)
	}
	if _, err := mqttapi.DecodeAs[mqttapi.Reply](b); !errors.Is(err, mqttapi.ErrType) {
		t.Errorf("DecodeAs[Reply](usage) err = %v, want ErrType", err)
	}
	if _, err := mqttapi.DecodeAs[mqttapi.Usage](make([]byte, mqttapi.MaxPayload+1)); !errors.Is(err, mqttapi.ErrTooLarge) {
		t.Errorf("DecodeAs oversized err = %v, want ErrTooLarge", err)
	}
}

// ok is a valid usage payload; the cases below break one thing at a time.
const okUsage = `{"v":1,"id":"abc","ts":1767225600000,"type":"usage","session":"4c12ef51-7541-4eb9-9e31-1c83635c7a61","seq":1,"report":"AQID"}`

// decodeErrorCase is a payload Decode must refuse with err (naming field).
type decodeErrorCase struct {
	name    string
	leaf    mqttapi.Leaf
	payload string
	err     *vend.Error
	field   string // for ErrField
}

// decodeErrorCases breaks okUsage and other payloads one thing at a time.
func decodeErrorCases() []decodeErrorCase {
	big := `{"v":1,"id":"abc","ts":1,"type":"event","kind":"power_restored","detail":"` + strings.Repeat("x", mqttapi.MaxPayload) + `"}`
	return []decodeErrorCase{
		{"oversized", mqttapi.LeafEvt, big, mqttapi.ErrTooLarge, ""},
		{"oversized garbage", mqttapi.LeafEvt, strings.Repeat("{", mqttapi.MaxPayload+1), mqttapi.ErrTooLarge, ""},
		{"bad leaf", "status", okUsage, mqttapi.ErrLeaf, ""},
		{"empty", mqttapi.LeafUsage, ``, mqttapi.ErrMalformed, ""},
		{"not json", mqttapi.LeafUsage, `hello`, mqttapi.ErrMalformed, ""},
		{"truncated", mqttapi.LeafUsage, okUsage[:40], mqttapi.ErrMalformed, ""},
		{"trailing", mqttapi.LeafUsage, okUsage + `{}`, mqttapi.ErrMalformed, ""},
		{"array", mqttapi.LeafUsage, `[1,2]`, mqttapi.ErrMalformed, ""},
		{"string", mqttapi.LeafUsage, `"v"`, mqttapi.ErrMalformed, ""},
		{"null", mqttapi.LeafUsage, `null`, mqttapi.ErrMalformed, ""},
		{"duplicate top key", mqttapi.LeafUsage, strings.Replace(okUsage, `"seq":1`, `"seq":1,"seq":2`, 1), mqttapi.ErrMalformed, ""},
		{"duplicate v", mqttapi.LeafUsage, strings.Replace(okUsage, `"v":1`, `"v":1,"v":2`, 1), mqttapi.ErrMalformed, ""},
		{"missing v", mqttapi.LeafUsage, strings.Replace(okUsage, `"v":1,`, ``, 1), mqttapi.ErrVersion, ""},
		{"v 2", mqttapi.LeafUsage, strings.Replace(okUsage, `"v":1`, `"v":2`, 1), mqttapi.ErrVersion, ""},
		{"v 0", mqttapi.LeafUsage, strings.Replace(okUsage, `"v":1`, `"v":0`, 1), mqttapi.ErrVersion, ""},
		{"v string", mqttapi.LeafUsage, strings.Replace(okUsage, `"v":1`, `"v":"1"`, 1), mqttapi.ErrVersion, ""},
		{"v float", mqttapi.LeafUsage, strings.Replace(okUsage, `"v":1`, `"v":1.5`, 1), mqttapi.ErrVersion, ""},
		{"V upper", mqttapi.LeafUsage, strings.Replace(okUsage, `"v":1`, `"V":1`, 1), mqttapi.ErrVersion, ""},
		{"unknown type", mqttapi.LeafUsage, strings.Replace(okUsage, `"usage"`, `"usage2"`, 1), mqttapi.ErrType, ""},
		{"type of another leaf", mqttapi.LeafCmd, okUsage, mqttapi.ErrType, ""},
		{"missing type", mqttapi.LeafUsage, strings.Replace(okUsage, `"type":"usage",`, ``, 1), mqttapi.ErrType, ""},
		{"type number", mqttapi.LeafUsage, strings.Replace(okUsage, `"type":"usage"`, `"type":7`, 1), mqttapi.ErrType, ""},
		{"missing id", mqttapi.LeafUsage, strings.Replace(okUsage, `"id":"abc",`, ``, 1), mqttapi.ErrID, ""},
		{"empty id", mqttapi.LeafUsage, strings.Replace(okUsage, `"id":"abc"`, `"id":""`, 1), mqttapi.ErrID, ""},
		{"id with slash", mqttapi.LeafUsage, strings.Replace(okUsage, `"id":"abc"`, `"id":"a/b"`, 1), mqttapi.ErrID, ""},
		{"id too long", mqttapi.LeafUsage, strings.Replace(okUsage, `"id":"abc"`, `"id":"`+strings.Repeat("a", 65)+`"`, 1), mqttapi.ErrID, ""},
		{"id number", mqttapi.LeafUsage, strings.Replace(okUsage, `"id":"abc"`, `"id":12`, 1), mqttapi.ErrID, ""},
		{"ts zero", mqttapi.LeafUsage, strings.Replace(okUsage, `"ts":1767225600000`, `"ts":0`, 1), mqttapi.ErrField, "ts"},
		{"ts huge", mqttapi.LeafUsage, strings.Replace(okUsage, `"ts":1767225600000`, `"ts":9007199254740992`, 1), mqttapi.ErrField, "ts"},
		{"ts string", mqttapi.LeafUsage, strings.Replace(okUsage, `"ts":1767225600000`, `"ts":"now"`, 1), mqttapi.ErrField, "ts"},
		{"unknown field", mqttapi.LeafUsage, strings.Replace(okUsage, `"seq":1`, `"seq":1,"extra":true`, 1), mqttapi.ErrField, "extra"},
		{"field case", mqttapi.LeafUsage, strings.Replace(okUsage, `"seq":1`, `"SEQ":1`, 1), mqttapi.ErrField, "SEQ"},
		{"missing seq", mqttapi.LeafUsage, strings.Replace(okUsage, `"seq":1,`, ``, 1), mqttapi.ErrField, "seq"},
		{"seq negative", mqttapi.LeafUsage, strings.Replace(okUsage, `"seq":1`, `"seq":-1`, 1), mqttapi.ErrField, "seq"},
		{"bad session", mqttapi.LeafUsage, strings.Replace(okUsage, `4c12ef51-`, `4c12ef51_`, 1), mqttapi.ErrField, "session"},
		{"session number", mqttapi.LeafUsage, strings.Replace(okUsage, `"4c12ef51-7541-4eb9-9e31-1c83635c7a61"`, `5`, 1), mqttapi.ErrField, "session"},
		{"bad base64", mqttapi.LeafUsage, strings.Replace(okUsage, `"AQID"`, `"AQI*"`, 1), mqttapi.ErrField, "report"},
		{"empty report", mqttapi.LeafUsage, strings.Replace(okUsage, `"AQID"`, `""`, 1), mqttapi.ErrField, "report"},
		{"report too big", mqttapi.LeafUsage, strings.Replace(okUsage, `"AQID"`, `"`+strings.Repeat("AAAA", mqttapi.MaxReport/3+1)+`"`, 1), mqttapi.ErrField, "report"},

		{"telemetry csq", mqttapi.LeafTelemetry, `{"v":1,"id":"a","ts":1,"type":"telemetry","uptime_s":1,"modem":{"csq":32,"registration":"home","tech":"lte"},"board":{"status":"ok","consecutive_failures":0},"outbox_depth":0}`, mqttapi.ErrField, "modem.csq"},
		{"telemetry nested unknown", mqttapi.LeafTelemetry, `{"v":1,"id":"a","ts":1,"type":"telemetry","uptime_s":1,"modem":{"csq":3,"Registration":"home","tech":"lte"},"board":{"status":"ok","consecutive_failures":0},"outbox_depth":0}`, mqttapi.ErrField, "modem.Registration"},
		{"telemetry board", mqttapi.LeafTelemetry, `{"v":1,"id":"a","ts":1,"type":"telemetry","uptime_s":1,"board":{"status":"fault","consecutive_failures":3},"outbox_depth":0}`, mqttapi.ErrField, "board.fault_code"},
		{"telemetry counters unit", mqttapi.LeafTelemetry, `{"v":1,"id":"a","ts":1,"type":"telemetry","uptime_s":1,"board":{"status":"ok","consecutive_failures":0},"outbox_depth":0,"machines":[{"id":"m","state":"idle","counters":{"unit":"litre","units_total":0,"sessions_total":0,"faults_total":0}}]}`, mqttapi.ErrField, "machines[0].counters.unit"},
		{"telemetry machines object", mqttapi.LeafTelemetry, `{"v":1,"id":"a","ts":1,"type":"telemetry","uptime_s":1,"board":{"status":"ok","consecutive_failures":0},"outbox_depth":0,"machines":{}}`, mqttapi.ErrField, "machines"},
		{"telemetry duplicate nested", mqttapi.LeafTelemetry, `{"v":1,"id":"a","ts":1,"type":"telemetry","uptime_s":1,"board":{"status":"ok","status":"fault","consecutive_failures":0},"outbox_depth":0}`, mqttapi.ErrMalformed, ""},
		{"telemetry uptime negative", mqttapi.LeafTelemetry, `{"v":1,"id":"a","ts":1,"type":"telemetry","uptime_s":-1,"board":{"status":"ok","consecutive_failures":0},"outbox_depth":0}`, mqttapi.ErrField, "uptime_s"},
		{"event kind", mqttapi.LeafEvt, `{"v":1,"id":"a","ts":1,"type":"event","kind":"exploded"}`, mqttapi.ErrField, "kind"},
		{"event progress without units", mqttapi.LeafEvt, `{"v":1,"id":"a","ts":1,"type":"event","kind":"progress","session":"4c12ef51-7541-4eb9-9e31-1c83635c7a61","machine":"m","amount":{"minor":1,"currency":"EUR"}}`, mqttapi.ErrField, "units"},
		{"event outcome", mqttapi.LeafEvt, `{"v":1,"id":"a","ts":1,"type":"event","kind":"ended","session":"4c12ef51-7541-4eb9-9e31-1c83635c7a61","machine":"m","units":1,"unit":"ml","amount":{"minor":1,"currency":"EUR"},"outcome":"boom"}`, mqttapi.ErrField, "outcome"},
		{"event currency", mqttapi.LeafEvt, `{"v":1,"id":"a","ts":1,"type":"event","kind":"authorized","session":"4c12ef51-7541-4eb9-9e31-1c83635c7a61","machine":"m","amount":{"minor":1,"currency":"eur"}}`, mqttapi.ErrField, "amount.currency"},
		{"event door detail", mqttapi.LeafEvt, `{"v":1,"id":"a","ts":1,"type":"event","kind":"door","machine":"m","detail":"ajar"}`, mqttapi.ErrField, "detail"},
		{"state online reason", mqttapi.LeafState, `{"v":1,"id":"a","ts":1,"type":"state","status":"online","reason":"lost","firmware":"1"}`, mqttapi.ErrField, "reason"},
		{"state machine id", mqttapi.LeafState, `{"v":1,"id":"a","ts":1,"type":"state","status":"online","firmware":"1","machines":[{"id":"a/b","kind":"water","state":"idle"}]}`, mqttapi.ErrField, "machines[0].id"},
		{"prices duplicate", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"set_prices","currency":"EUR","prices":[{"machine":"m","unit":"ml","price":{"minor":1,"per":1}},{"machine":"m","unit":"ml","price":{"minor":2,"per":1}}]}`, mqttapi.ErrField, "prices[1]"},
		{"prices per zero", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"set_prices","currency":"EUR","prices":[{"machine":"m","unit":"ml","price":{"minor":1,"per":0}}]}`, mqttapi.ErrField, "prices[0].price"},
		{"prices empty", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"set_prices","currency":"EUR","prices":[]}`, mqttapi.ErrField, "prices"},
		{"test output long", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"test_output","machine":"m","output":"valve","duration_ms":10001}`, mqttapi.ErrField, "duration_ms"},
		{"test output uint32", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"test_output","machine":"m","output":"valve","duration_ms":4294967296}`, mqttapi.ErrField, "duration_ms"},
		{"reboot delay", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"reboot","delay_s":3601}`, mqttapi.ErrField, "delay_s"},
		{"rotate cloud without signature", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"rotate_key","which":"cloud","public_key":"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="}`, mqttapi.ErrField, "signature"},
		{"rotate which", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"rotate_key","which":"phone"}`, mqttapi.ErrField, "which"},
		{"ack empty", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"ack","ids":[]}`, mqttapi.ErrField, "ids"},
		{"ack bad id", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"ack","ids":["ok","no way"]}`, mqttapi.ErrField, "ids[1]"},
		{"authorize machine", mqttapi.LeafCmd, `{"v":1,"id":"a","ts":1,"type":"authorize","machine":"","grant":"AQ=="}`, mqttapi.ErrField, "machine"},
		{"reply refused without code", mqttapi.LeafReply, `{"v":1,"id":"a","ts":1,"type":"reply","cmd_id":"c","ok":false}`, mqttapi.ErrField, "code"},
		{"reply ok with code", mqttapi.LeafReply, `{"v":1,"id":"a","ts":1,"type":"reply","cmd_id":"c","ok":true,"code":"grant.expired"}`, mqttapi.ErrField, "code"},
		{"reply bad code", mqttapi.LeafReply, `{"v":1,"id":"a","ts":1,"type":"reply","cmd_id":"c","ok":false,"code":"Grant Expired"}`, mqttapi.ErrField, "code"},
		{"reply control char", mqttapi.LeafReply, `{"v":1,"id":"a","ts":1,"type":"reply","cmd_id":"c","ok":false,"code":"x","message":"a\u0007b"}`, mqttapi.ErrField, "message"},
		{"deep nesting", mqttapi.LeafEvt, `{"v":1,"id":"a","ts":1,"type":"event","kind":"power_restored","detail":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, mqttapi.ErrField, "detail"},
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, err := mqttapi.Decode(mqttapi.LeafUsage, []byte(okUsage)); err != nil {
		t.Fatalf("Decode(okUsage) = %v", err)
	}
	tests := decodeErrorCases()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := mqttapi.Decode(tt.leaf, []byte(tt.payload))
			if m != nil || !errors.Is(err, tt.err) {
				t.Fatalf("Decode(%s, %.120q) = %v, %v; want %v", tt.leaf, tt.payload, m, err, tt.err)
			}
			if vend.KindOf(err) != vend.Invalid || vend.CodeOf(err) != tt.err.Code {
				t.Errorf("kind %s code %s, want invalid %s", vend.KindOf(err), vend.CodeOf(err), tt.err.Code)
			}
			if !strings.HasPrefix(err.Error(), "mqttapi: ") && !strings.HasPrefix(err.Error(), "vend: ") {
				t.Errorf("error %q does not begin with the package", err)
			}
			if got := mqttapi.FieldOf(err); got != tt.field {
				t.Errorf("FieldOf(%v) = %q, want %q", err, got, tt.field)
			}
			if tt.field != "" && !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name field %q", err, tt.field)
			}
		})
	}
}

// TestValidateNamesField breaks each sample in Go and checks Encode refuses
// it, naming the field.
func TestValidateNamesField(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(m mqttapi.Message)
		field  string
	}{
		{"State", func(m mqttapi.Message) { m.(*mqttapi.State).Firmware = "" }, "firmware"},
		{"State", func(m mqttapi.Message) { m.(*mqttapi.State).Machines[0].Kind = "toaster" }, "machines[0].kind"},
		{"Telemetry", func(m mqttapi.Message) { m.(*mqttapi.Telemetry).Modem.Tech = "6g" }, "modem.tech"},
		{"Telemetry", func(m mqttapi.Message) { *m.(*mqttapi.Telemetry).Modem.RSSIdBm = 5 }, "modem.rssi_dbm"},
		{"Telemetry", func(m mqttapi.Message) { m.(*mqttapi.Telemetry).Machines[0].State = "sleepy" }, "machines[0].state"},
		{"Event", func(m mqttapi.Message) { m.(*mqttapi.Event).FaultCode = "" }, "fault_code"},
		{"Event", func(m mqttapi.Message) { m.(*mqttapi.Event).Unit = 0 }, "unit"},
		{"Event", func(m mqttapi.Message) { m.(*mqttapi.Event).Amount.Minor = -1 }, "amount.minor"},
		{"Event", func(m mqttapi.Message) { m.(*mqttapi.Event).Session = vend.SessionID{} }, "session"},
		{"Usage", func(m mqttapi.Message) { m.(*mqttapi.Usage).Seq = 0 }, "seq"},
		{"Reply", func(m mqttapi.Message) { m.(*mqttapi.Reply).CmdID = "" }, "cmd_id"},
		{"Reply", func(m mqttapi.Message) { m.(*mqttapi.Reply).PublicKey = make([]byte, 32) }, "public_key"},
		{"Authorize", func(m mqttapi.Message) { m.(*mqttapi.Authorize).Grant = make([]byte, mqttapi.MaxGrant+1) }, "grant"},
		{"Stop", func(m mqttapi.Message) { m.(*mqttapi.Stop).Machine = "-x" }, "machine"},
		{"SetPrices", func(m mqttapi.Message) { m.(*mqttapi.SetPrices).Currency = "EU" }, "currency"},
		{"SetPrices", func(m mqttapi.Message) { m.(*mqttapi.SetPrices).Prices[1].Slot = "b/2" }, "prices[1].slot"},
		{"SetPrices", func(m mqttapi.Message) { m.(*mqttapi.SetPrices).Prices[0].Unit = 9 }, "prices[0].unit"},
		{"TestOutput", func(m mqttapi.Message) { m.(*mqttapi.TestOutput).Output = "" }, "output"},
		{"TestOutput", func(m mqttapi.Message) { m.(*mqttapi.TestOutput).DurationMS = 0 }, "duration_ms"},
		{"Reboot", func(m mqttapi.Message) { m.(*mqttapi.Reboot).DelayS = mqttapi.MaxRebootDelayS + 1 }, "delay_s"},
		{"RotateKey", func(m mqttapi.Message) { m.(*mqttapi.RotateKey).PublicKey = []byte{1} }, "public_key"},
		{"RotateKey", func(m mqttapi.Message) { m.(*mqttapi.RotateKey).Which = mqttapi.KeyDevice }, "signature"},
		{"Ack", func(m mqttapi.Message) { m.(*mqttapi.Ack).IDs = make([]string, mqttapi.MaxAckIDs+1) }, "ids"},
		{"Ack", func(m mqttapi.Message) { m.(*mqttapi.Ack).TS = -5 }, "ts"},
	}
	for _, tt := range tests {
		m := samples()[tt.name]
		tt.break_(m)
		_, err := mqttapi.Encode(m)
		if !errors.Is(err, mqttapi.ErrField) || mqttapi.FieldOf(err) != tt.field {
			t.Errorf("Encode(broken %s, want field %s) = %v (field %q)", tt.name, tt.field, err, mqttapi.FieldOf(err))
		}
	}
	// Envelope problems have their own sentinels.
	m := samples()["Stop"]
	m.Head().ID = ""
	if _, err := mqttapi.Encode(m); !errors.Is(err, mqttapi.ErrID) {
		t.Errorf("Encode without id = %v, want ErrID", err)
	}
	m = samples()["Stop"]
	m.Head().V = 7 // Encode overrides it
	if _, err := mqttapi.Encode(m); err != nil || m.Head().V != mqttapi.Version || m.Head().Type != "stop" {
		t.Errorf("Encode did not set v and type: %v %+v", err, m.Head())
	}
	m.Head().V = 7
	if err := m.Validate(); !errors.Is(err, mqttapi.ErrVersion) {
		t.Errorf("Validate with v 7 = %v, want ErrVersion", err)
	}
}

func TestEncodeTooLarge(t *testing.T) {
	// Every bounded member at its limit still fits; the size check is the last line.
	ids := make([]string, mqttapi.MaxAckIDs)
	for i := range ids {
		ids[i] = strings.Repeat("a", mqttapi.MaxMessageIDLen)
	}
	b, err := mqttapi.Encode(&mqttapi.Ack{Envelope: env(strings.Repeat("z", 64)), IDs: ids})
	if err != nil || len(b) > mqttapi.MaxPayload {
		t.Errorf("Encode(largest Ack) = %d bytes, %v", len(b), err)
	}
	prices := make([]mqttapi.PriceEntry, mqttapi.MaxPrices)
	for i := range prices {
		prices[i] = mqttapi.PriceEntry{Machine: fmt.Sprintf("%032d", i), Slot: strings.Repeat("s", 32), Unit: vend.UnitCycle,
			Price: vend.Price{Minor: 1 << 62, Per: 1<<32 - 1}}
	}
	b, err = mqttapi.Encode(&mqttapi.SetPrices{Envelope: env("p"), Currency: "EUR", Prices: prices})
	if err != nil {
		t.Errorf("Encode(largest SetPrices) = %d bytes, %v", len(b), err)
	}
	ms := make([]mqttapi.MachineStatus, mqttapi.MaxMachines)
	for i := range ms {
		ms[i] = mqttapi.MachineStatus{ID: fmt.Sprintf("%032d", i), State: mqttapi.MachineOffline, Session: sess,
			Counters: mqttapi.Counters{Unit: vend.UnitCycle, UnitsTotal: 1<<64 - 1, SessionsTotal: 1<<64 - 1, FaultsTotal: 1<<64 - 1}}
	}
	b, err = mqttapi.Encode(&mqttapi.Telemetry{Envelope: env("t"), Board: mqttapi.Board{Status: "fault", FaultCode: strings.Repeat("f", 64)},
		Modem: &mqttapi.Modem{CSQ: 99, Registration: mqttapi.RegUnknown, Tech: "unknown", Operator: strings.Repeat("o", 64)}, Machines: ms})
	if err != nil {
		t.Errorf("Encode(largest Telemetry) = %d bytes, %v", len(b), err)
	}
}

func TestReplyAndWill(t *testing.T) {
	r := mqttapi.NewReply(mqttapi.NewEnvelope(t0), "cmd-1", fmt.Errorf("controller: %w", mqttapi.ErrTooLarge))
	b, err := mqttapi.Encode(r)
	if err != nil || r.Code != "payload.too_large" || r.OK {
		t.Errorf("Encode(NewReply(err)) = %s, %v", b, err)
	}
	r = mqttapi.NewReply(mqttapi.NewEnvelope(t0), "cmd-1", errors.New("disk\nfull"+strings.Repeat("é", 300)))
	if _, err := mqttapi.Encode(r); err != nil || r.Code != "internal" {
		t.Errorf("Encode(NewReply(plain error)) = %v (code %q)", err, r.Code)
	}
	r = mqttapi.NewReply(mqttapi.NewEnvelope(t0), "cmd-1", nil)
	if _, err := mqttapi.Encode(r); err != nil || !r.OK || r.Code != "" {
		t.Errorf("Encode(NewReply(nil)) = %v %+v", err, r)
	}

	w, err := mqttapi.Tree{}.LastWill("wd-0042", t0)
	if err != nil {
		t.Fatal(err)
	}
	if w.Topic != "bv/v1/dev/wd-0042/state" || w.QoS != 1 || !w.Retain {
		t.Errorf("LastWill = %+v", w)
	}
	st, err := mqttapi.DecodeAs[mqttapi.State](w.Payload)
	if err != nil || st.Status != mqttapi.Offline || st.Reason != mqttapi.ReasonLost || st.TS != t0.UnixMilli() {
		t.Errorf("LastWill payload %s = %+v, %v", w.Payload, st, err)
	}
	p, err := mqttapi.Tree{}.Publication("wd-0042", samples()["Telemetry"])
	if err != nil || p.Topic != "bv/v1/dev/wd-0042/telemetry" || p.QoS != 0 || p.Retain {
		t.Errorf("Publication(telemetry) = %+v, %v", p, err)
	}
	if _, err := (mqttapi.Tree{}).Publication("WD", samples()["Telemetry"]); !errors.Is(err, vend.ErrDeviceID) {
		t.Errorf("Publication(bad device) err = %v", err)
	}
}

func TestNewMessageID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := mqttapi.NewMessageID()
		if len(id) != 32 || mqttapi.ValidateMessageID(id) != nil || seen[id] {
			t.Fatalf("NewMessageID() = %q (dup %v)", id, seen[id])
		}
		seen[id] = true
	}
}

// TestRoundTripStable: a JSON round trip of every sample is stable byte for
// byte, and every payload starts with the envelope members.
func TestRoundTripStable(t *testing.T) {
	for name, m := range samples() {
		b1, err := mqttapi.Encode(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		e, _ := entryByName(name)
		m2, err := mqttapi.Decode(e.Leaf, b1)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b2, err := mqttapi.Encode(m2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Errorf("%s: %s != %s (%v)", name, b1, b2, err)
		}
		var generic map[string]any
		json.Unmarshal(b1, &generic)
		for _, k := range []string{"v", "id", "ts", "type"} {
			if _, ok := generic[k]; !ok {
				t.Errorf("%s: envelope lacks %q: %s", name, k, b1)
			}
		}
	}
}
