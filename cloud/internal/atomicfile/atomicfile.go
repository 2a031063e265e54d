// Package atomicfile writes a file so that a reader sees either the old
// content or the new, never a part: the data goes to a temporary file in
// the same directory, which gets its mode and group, is synced, and is
// renamed over the target; then the directory is synced so the rename
// survives a power cut. A failure removes the temporary file and leaves
// the target as it was.
//
// Mosquitto re-reads its password and ACL files on SIGHUP as its own
// user: a file written in place can be read half-written, and a file
// recreated root-only (0600) makes it refuse every client. Write such
// files here with the broker's group and mode 0640.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Options say who may read the written file.
type Options struct {
	Mode os.FileMode // permission bits, e.g. 0o600; 0 means 0o600
	// GID is the file's group when not -1 (the process must be root or
	// a member of the group); -1 keeps the process's group. Note that
	// the zero value, 0, is the root group.
	GID int
}

// Write writes data to path with mode 0o600 and the process's group.
func Write(path string, data []byte) error {
	return WriteWith(path, data, Options{Mode: 0o600, GID: -1})
}

// WriteWith writes data to path atomically with o's mode and group. The
// errors name the file and begin with "atomicfile:".
func WriteWith(path string, data []byte, o Options) (err error) {
	mode := o.Mode
	if mode == 0 {
		mode = 0o600
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("atomicfile: %s: %w", path, err)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if o.GID != -1 {
		if err = f.Chown(-1, o.GID); err != nil {
			return err
		}
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		err = d.Sync()
		d.Close()
	}
	return err
}
