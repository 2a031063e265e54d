package phoneapi_test

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"beaconvend/app-protocol/phoneapi"
)

// readAll returns every event of stream and the error that ended it.
func readAll(r *phoneapi.SSEReader) ([]phoneapi.SSEEvent, error) {
	var evs []phoneapi.SSEEvent
	for {
		ev, err := r.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func TestSSEReader(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name, in string
		want     []phoneapi.SSEEvent
		err      error
	}{
		{"lf", "data: a\n\n", []phoneapi.SSEEvent{{Type: "message", Data: "a"}}, io.EOF},
		{"crlf", "event: x\r\ndata: a\r\n\r\n", []phoneapi.SSEEvent{{Type: "x", Data: "a"}}, io.EOF},
		{"cr", "event: x\rdata: a\r\r", []phoneapi.SSEEvent{{Type: "x", Data: "a"}}, io.EOF},
		{"multi-line data", "data: a\ndata:b\ndata:  c\ndata\n\n", []phoneapi.SSEEvent{{Type: "message", Data: "a\nb\n c\n"}}, io.EOF},
		{"comments", ": hi\n:\ndata: a\n: mid\n\n", []phoneapi.SSEEvent{{Type: "message", Data: "a"}}, io.EOF},
		{"no data, no event", "event: x\nid: 3\n\ndata: a\n\n", []phoneapi.SSEEvent{{ID: "3", Type: "message", Data: "a"}}, io.EOF},
		{"id persists and resets", "id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
			[]phoneapi.SSEEvent{{ID: "1", Type: "message", Data: "a"}, {ID: "1", Type: "message", Data: "b"}, {ID: "", Type: "message", Data: "c"}}, io.EOF},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
			[]phoneapi.SSEEvent{{ID: "1", Type: "message", Data: "a"}, {ID: "1", Type: "message", Data: "b"}}, io.EOF},
		{"retry", "retry: 2500\nretry: 12x\ndata: a\n\n", []phoneapi.SSEEvent{{Type: "message", Data: "a", Retry: 2500 * ms}}, io.EOF},
		{"bom", "\xef\xbb\xbfdata: a\n\n", []phoneapi.SSEEvent{{Type: "message", Data: "a"}}, io.EOF},
		{"only first bom", "\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n", []phoneapi.SSEEvent{{Type: "message", Data: "b"}}, io.EOF},
		{"unknown field", "foo: bar\ndata: a\n\n", []phoneapi.SSEEvent{{Type: "message", Data: "a"}}, io.EOF},
		{"one space only", "data: \ndata:  \n\n", []phoneapi.SSEEvent{{Type: "message", Data: "\n "}}, io.EOF},
		{"no space", "data:a:b\n\n", []phoneapi.SSEEvent{{Type: "message", Data: "a:b"}}, io.EOF},
		{"unfinished event dropped", "data: a\n\ndata: b\n", []phoneapi.SSEEvent{{Type: "message", Data: "a"}}, io.ErrUnexpectedEOF},
		{"unterminated line dropped", "data: a\n\ndata: b", []phoneapi.SSEEvent{{Type: "message", Data: "a"}}, io.ErrUnexpectedEOF},
		{"empty", "", nil, io.EOF},
		{"blank lines", "\n\r\n\r\n", nil, io.EOF},
		{"event type resets", "event: x\ndata: a\n\ndata: b\n\n", []phoneapi.SSEEvent{{Type: "x", Data: "a"}, {Type: "message", Data: "b"}}, io.EOF},
	}
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one-byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":     func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data-err": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rn, mk := range readers {
			got, err := readAll(phoneapi.NewSSEReader(mk(tt.in), 0, 0))
			if !reflect.DeepEqual(got, tt.want) || !errors.Is(err, tt.err) {
				t.Errorf("%s/%s: Next(%q) = %+v, %v; want %+v, %v", tt.name, rn, tt.in, got, err, tt.want, tt.err)
			}
		}
	}
}

func TestSSEReaderLimits(t *testing.T) {
	// A line of exactly maxLine bytes passes, one more is refused, whatever the chunking.
	for _, mk := range []func(string) io.Reader{
		func(s string) io.Reader { return strings.NewReader(s) },
		func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	} {
		ok := "data:" + strings.Repeat("x", 15) + "\r\n\r\n" // 20-byte line
		if evs, err := readAll(phoneapi.NewSSEReader(mk(ok), 20, 0)); len(evs) != 1 || err != io.EOF {
			t.Errorf("20-byte line, cap 20: %v, %v", evs, err)
		}
		long := "data:" + strings.Repeat("x", 16) + "\n\n"
		r := phoneapi.NewSSEReader(mk(long), 20, 0)
		if _, err := r.Next(); !errors.Is(err, phoneapi.ErrSSELineTooLong) {
			t.Errorf("21-byte line, cap 20: %v, want ErrSSELineTooLong", err)
		}
		if _, err := r.Next(); !errors.Is(err, phoneapi.ErrSSELineTooLong) {
			t.Errorf("error not sticky: %v", err)
		}
		comment := ":" + strings.Repeat("x", 100) + "\n"
		if _, err := readAll(phoneapi.NewSSEReader(mk(comment), 20, 0)); !errors.Is(err, phoneapi.ErrSSELineTooLong) {
			t.Errorf("long comment: %v, want ErrSSELineTooLong", err)
		}
		many := strings.Repeat("data: 0123456789\n", 10) + "\n"
		if _, err := readAll(phoneapi.NewSSEReader(mk(many), 20, 100)); !errors.Is(err, phoneapi.ErrSSEEventTooLarge) {
			t.Errorf("110-byte event, cap 100: %v, want ErrSSEEventTooLarge", err)
		}
	}
}

// emptyReader returns 0, nil forever.
type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestSSEReaderStall(t *testing.T) {
	if _, err := phoneapi.NewSSEReader(emptyReader{}, 0, 0).Next(); !errors.Is(err, phoneapi.ErrSSEStall) {
		t.Errorf("Next on a reader making no progress = %v, want ErrSSEStall", err)
	}
}

func TestSSEReaderPassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom))
	evs, err := readAll(phoneapi.NewSSEReader(r, 0, 0))
	if len(evs) != 1 || !errors.Is(err, boom) {
		t.Errorf("got %v, %v; want one event and boom", evs, err)
	}
}
