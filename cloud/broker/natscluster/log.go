package natscluster

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// logger writes an in-process node's log lines to w, each with the node's
// name.
type logger struct {
	mu   *sync.Mutex
	w    io.Writer
	node string
}

var logMu sync.Mutex

func newLogger(w io.Writer, node string) *logger { return &logger{mu: &logMu, w: w, node: node} }

func (l *logger) line(level, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s %s [%s] %s\n", time.Now().UTC().Format("15:04:05.000"), l.node, level, fmt.Sprintf(format, v...))
}

func (l *logger) Noticef(format string, v ...any) { l.line("INF", format, v...) }
func (l *logger) Warnf(format string, v ...any)   { l.line("WRN", format, v...) }
func (l *logger) Fatalf(format string, v ...any)  { l.line("FTL", format, v...) }
func (l *logger) Errorf(format string, v ...any)  { l.line("ERR", format, v...) }
func (l *logger) Debugf(format string, v ...any)  {}
func (l *logger) Tracef(format string, v ...any)  {}
