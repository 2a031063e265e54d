package simdev

import (
	"errors"
	"fmt"
	"os"
)

// Kill ends device i's controller at once (SIGKILL), as when the board
// loses power: its MQTT connection drops without a goodbye, so the broker
// publishes its last will and the cloud sees it go offline. Its emulated
// board stays up; Close stops it as usual and does not count the kill as
// a failure. Errors: i out of range, a controller not started.
func (r *Relay) Kill(i int) error {
	if i < 0 || i >= len(r.Devices) {
		return fmt.Errorf("simdev: relay device %d: have %d", i, len(r.Devices))
	}
	d := r.Devices[i]
	if d.cmd == nil {
		return fmt.Errorf("simdev: relay device %s: not started", d.ID)
	}
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("simdev: kill controller %s: %w", d.ID, err)
	}
	<-d.exited
	d.waitErr = nil // killed on purpose
	return nil
}

// Running reports whether device i's controller process is running
// (started and not exited); false for a bad i.
func (r *Relay) Running(i int) bool {
	if i < 0 || i >= len(r.Devices) {
		return false
	}
	d := r.Devices[i]
	if d.cmd == nil || d.exited == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// LogPath returns the file device i's controller writes its log to; ""
// for a bad i.
func (r *Relay) LogPath(i int) string {
	if i < 0 || i >= len(r.Devices) {
		return ""
	}
	return r.Devices[i].logPath
}
