package broker

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/atomicfile"
)

// File names in a Mosquitto directory written by [MosquittoFiles.Write].
const (
	MosquittoPasswordFile = "passwords"
	MosquittoACLFile      = "acl"
	MosquittoConfFile     = "mosquitto.conf"
)

// DefaultMosquittoGroup is the group Debian's Mosquitto package runs the
// broker as.
const DefaultMosquittoGroup = "mosquitto"

// MosquittoFiles are the files a site Mosquitto runs from: password_file,
// acl_file and mosquitto.conf, in one directory.
type MosquittoFiles struct {
	Dir string // absolute; a directory for these files only: it is made (or set) group-readable by Group
	// Group is the group Mosquitto runs as. The files are written 0640 in
	// that group (the broker re-reads them as that user on every SIGHUP;
	// root-only files make it refuse every client). Empty: mode 0600 in
	// the process's group, for a broker running as this user.
	Group     string
	Passwords []PasswordEntry
	ACL       ACL
	// Config is the mosquitto.conf; its PasswordFile and ACLFile are set
	// to the files in Dir.
	Config MosquittoConfig
}

// Write renders every file first, so bad input writes nothing, then
// writes the password file, the ACL and the configuration, each
// atomically (a broker reloading meanwhile reads the old file or the new,
// whole) and readable by Group. It returns ErrOptions for bad entries,
// a relative Dir or an unknown Group, and the file system's error.
func (f MosquittoFiles) Write() error {
	if !filepath.IsAbs(f.Dir) {
		return vend.Errorf(ErrOptions, "mosquitto files: directory %q: want an absolute path", clipLog(f.Dir))
	}
	opts := atomicfile.Options{Mode: 0o600, GID: -1}
	if f.Group != "" {
		g, err := user.LookupGroup(f.Group)
		if err != nil {
			return vend.Errorf(ErrOptions, "mosquitto files: group %q (the group Mosquitto runs as): %v", clipLog(f.Group), err)
		}
		gid, err := strconv.Atoi(g.Gid)
		if err != nil {
			return vend.Errorf(ErrOptions, "mosquitto files: group %q: gid %q", f.Group, g.Gid)
		}
		opts = atomicfile.Options{Mode: 0o640, GID: gid}
	}
	var pw, acl, conf bytes.Buffer
	if err := WritePasswordFile(&pw, f.Passwords); err != nil {
		return err
	}
	if err := WriteACL(&acl, f.ACL); err != nil {
		return err
	}
	cfg := f.Config
	cfg.PasswordFile, cfg.ACLFile = filepath.Join(f.Dir, MosquittoPasswordFile), filepath.Join(f.Dir, MosquittoACLFile)
	if _, err := cfg.WriteTo(&conf); err != nil {
		return err
	}
	if err := f.mkdir(opts); err != nil {
		return err
	}
	for _, x := range []struct {
		name string
		data []byte
	}{{MosquittoPasswordFile, pw.Bytes()}, {MosquittoACLFile, acl.Bytes()}, {MosquittoConfFile, conf.Bytes()}} {
		if err := atomicfile.WriteWith(filepath.Join(f.Dir, x.name), x.data, opts); err != nil {
			return fmt.Errorf("broker: mosquitto files: %w", err)
		}
	}
	return nil
}

// mkdir creates Dir and makes it Group's (group read and search), so the
// broker can reach the files in it.
func (f MosquittoFiles) mkdir(o atomicfile.Options) error {
	if err := os.MkdirAll(f.Dir, 0o750); err != nil {
		return fmt.Errorf("broker: mosquitto files: %w", err)
	}
	if o.GID == -1 {
		return nil
	}
	st, err := os.Stat(f.Dir)
	if err != nil {
		return fmt.Errorf("broker: mosquitto files: %w", err)
	}
	if st.Mode().Perm()&0o050 != 0o050 || int(st.Sys().(*syscall.Stat_t).Gid) != o.GID {
		if err := os.Chown(f.Dir, -1, o.GID); err != nil {
			return fmt.Errorf("broker: mosquitto files: %w", err)
		}
		if err := os.Chmod(f.Dir, st.Mode().Perm()|0o050); err != nil {
			return fmt.Errorf("broker: mosquitto files: %w", err)
		}
	}
	return nil
}
