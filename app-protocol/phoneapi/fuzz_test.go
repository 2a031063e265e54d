package phoneapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// FuzzSSE checks that the SSE parser never panics, keeps its limits, and
// gives the same events and error whether the stream arrives whole or one
// byte at a time.
func FuzzSSE(f *testing.F) {
	f.Add([]byte("retry: 2000\n\nid: 1\nevent: progress\ndata: {\"a\":1}\n\n"))
	f.Add([]byte("data: a\r\ndata: b\r\n\r\n: c\r\rdata\r\r"))
	f.Add([]byte("\xef\xbb\xbfid: 1\x00\ndata:x\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxLine, maxEvent = 64, 256
		whole, werr := readAll(phoneapi.NewSSEReader(bytes.NewReader(in), maxLine, maxEvent))
		bytewise, berr := readAll(phoneapi.NewSSEReader(iotest.OneByteReader(bytes.NewReader(in)), maxLine, maxEvent))
		if !reflect.DeepEqual(whole, bytewise) || !sameErr(werr, berr) {
			t.Fatalf("whole: %v, %v\nbyte-wise: %v, %v", whole, werr, bytewise, berr)
		}
		if werr == nil {
			t.Fatal("readAll ended without an error")
		}
		for _, ev := range whole {
			if len(ev.Data) > maxEvent || len(ev.ID) > maxLine || len(ev.Type) > maxLine {
				t.Fatalf("event over the limits: %+v", ev)
			}
			if strings.ContainsRune(ev.ID, 0) || strings.ContainsAny(ev.Type, "\r\n") {
				t.Fatalf("bad id or type: %+v", ev)
			}
			if ev.Type == "" {
				t.Fatalf("empty type: %+v", ev)
			}
		}
	})
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

// FuzzDecodeError checks that any error body decodes to an APIError with a
// known kind, a dotted code, bounded valid UTF-8 message, and that the
// error unwraps to a vend.Error of the same kind and code.
func FuzzDecodeError(f *testing.F) {
	f.Add(409, []byte(`{"error":{"kind":"conflict","code":"machine.busy","message":"sessions: machine tap1 is busy"}}`))
	f.Add(502, []byte(`<html>bad gateway</html>`))
	f.Add(200, []byte(`{"error":{"kind":"weird","code":"a..b","message":"\xff"}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := phoneapi.DecodeError(status, body)
		if e.Status != status {
			t.Fatalf("status %d, want %d", e.Status, status)
		}
		if got := phoneapi.HTTPStatus(e.Kind); phoneapi.KindForStatus(got) != e.Kind {
			t.Fatalf("kind %q is not in the table", e.Kind)
		}
		if len(e.Message) > 1024 || !utf8.ValidString(e.Message) {
			t.Fatalf("message of %d bytes, valid UTF-8 %v", len(e.Message), utf8.ValidString(e.Message))
		}
		if e.Code == "" || strings.ContainsAny(e.Code, " \n/") {
			t.Fatalf("code %q", e.Code)
		}
		var err error = e
		var ve *vend.Error
		if !errors.As(err, &ve) || ve.Kind != e.Kind || ve.Code != e.Code {
			t.Fatalf("unwraps to %v", ve)
		}
		if vend.KindOf(err) != e.Kind || vend.CodeOf(err) != e.Code {
			t.Fatalf("KindOf/CodeOf = %s/%s", vend.KindOf(err), vend.CodeOf(err))
		}
	})
}

// FuzzDecodeSession checks that decoding a Session never panics and that a
// Session that decodes and validates re-encodes to a fixed point: decoding
// its JSON gives the same JSON again.
func FuzzDecodeSession(f *testing.F) {
	f.Add([]byte(sessJSON))
	f.Add([]byte(`{"id":"5f0c6a2e-3b1d-4c8e-9a7f-2d4b6e8c1a90","device":"d1","machine":"m1","slot":"A1","state":"settled","unit":"item","price":{"minor":150,"per":1},"currency":"EUR","source":"wallet","hold":{"minor":150,"currency":"EUR"},"cap_units":1,"units":1,"amount":{"minor":150,"currency":"EUR"},"outcome":"completed","created_at":"2026-03-01T09:30:00+01:00","ended_at":"2026-03-01T09:30:06.5Z"}`))
	f.Add([]byte(`{"id":"x","unit":"furlong"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var s phoneapi.Session
		if err := json.Unmarshal(in, &s); err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			if vend.KindOf(err) != vend.Invalid || !strings.HasPrefix(err.Error(), "phoneapi: ") {
				t.Fatalf("Validate error %v of kind %s", err, vend.KindOf(err))
			}
			return
		}
		b1, err := json.Marshal(&s)
		if err != nil {
			t.Fatalf("valid session does not marshal: %v", err)
		}
		var s2 phoneapi.Session
		if err := json.Unmarshal(b1, &s2); err != nil {
			t.Fatalf("own JSON %s does not decode: %v", b1, err)
		}
		if err := s2.Validate(); err != nil {
			t.Fatalf("own JSON %s fails Validate: %v", b1, err)
		}
		b2, err := json.Marshal(&s2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("not a fixed point:\n%s\n%s (%v)", b1, b2, err)
		}
	})
}
