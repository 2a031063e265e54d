package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// errNoInput: standard input is closed (or there is none); a prompt cannot
// be answered.
var errNoInput = errors.New("phone: no input")

// lineReader reads standard input one line per request on its own
// goroutine, so a prompt or the session's "press Enter" can be abandoned
// when the context ends; an abandoned read is handed to the next request.
type lineReader struct {
	r       *bufio.Reader
	f       *os.File // set when the input is a terminal: passwords are read without echo
	req     chan bool
	resp    chan lineResult
	pending bool
	started bool
}

type lineResult struct {
	line string
	err  error
}

func newLineReader(r io.Reader) *lineReader {
	l := &lineReader{req: make(chan bool), resp: make(chan lineResult, 1)}
	if r == nil {
		return l
	}
	l.r = bufio.NewReader(r)
	if f, ok := r.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		l.f = f
	}
	return l
}

// terminal reports whether the input is a terminal.
func (l *lineReader) terminal() bool { return l.f != nil }

func (l *lineReader) loop() {
	for password := range l.req {
		var res lineResult
		if password && l.f != nil {
			b, err := term.ReadPassword(int(l.f.Fd()))
			res = lineResult{string(b), err}
		} else {
			s, err := l.r.ReadString('\n')
			if err == io.EOF && s != "" {
				err = nil
			}
			res = lineResult{strings.TrimRight(s, "\r\n"), err}
		}
		l.resp <- res
	}
}

// ReadLine returns the next line without its end. At the end of the input
// (or with no input) it returns errNoInput.
func (l *lineReader) ReadLine(ctx context.Context, password bool) (string, error) {
	if l.r == nil {
		return "", errNoInput
	}
	if !l.started {
		l.started = true
		go l.loop()
	}
	if !l.pending {
		select {
		case l.req <- password:
			l.pending = true
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	select {
	case res := <-l.resp:
		l.pending = false
		if res.err != nil {
			l.r = nil // EOF or broken: no more input
			return "", errNoInput
		}
		return res.line, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
