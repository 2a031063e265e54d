// Package childproc runs the child processes of the fault harnesses (the
// chaos soak, the cluster fault test): a program started, killed with
// real signals and started again with the same arguments, its output
// appended to one log across restarts. A program dies with the harness
// (Pdeathsig), so a crashed harness leaves no broker or cloud behind.
package childproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one child program. Set the fields before the first Start.
type Proc struct {
	Name    string   // in the log's start lines and in errors
	Bin     string   // the program
	Args    []string // its arguments, the same at every Start
	LogPath string   // stdout and stderr, appended

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts the program, unless it is running.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("childproc: %s is already running", p.Name)
		}
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("childproc: %s log: %w", p.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== start %s %v at %s\n", p.Name, p.Args, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("childproc: start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// Running reports whether the program is up.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when the current run exits (nil when
// none was started).
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Pid is the current run's process id, 0 when none was started.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig and waits up to within for the exit, then kills the
// program and says so.
func (p *Proc) Signal(sig syscall.Signal, within time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("childproc: %s did not exit within %s of %s; killed", p.Name, within, sig)
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() { _ = p.Signal(syscall.SIGKILL, 10*time.Second) }

// Tail returns the last n bytes of the log, for an error message.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
