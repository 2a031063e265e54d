package atomicfile_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"beaconvend/cloud/internal/atomicfile"
)

// The file gets its content, mode and group; an old file is replaced
// whole and the directory holds no temporary file afterwards.
func TestWriteWith(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "passwords")
	if err := os.WriteFile(p, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gid := os.Getgid()
	if err := atomicfile.WriteWith(p, []byte("new\n"), atomicfile.Options{Mode: 0o640, GID: gid}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "new\n" {
		t.Fatalf("content %q, %v", b, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("mode %v gid %d, want 0640 and %d", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid, gid)
	}
	if err := atomicfile.Write(filepath.Join(dir, "secret"), []byte("s")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "secret")); st.Mode().Perm() != 0o600 {
		t.Errorf("Write: mode %v, want 0600", st.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("directory holds %d entries, want 2 (no temporary files)", len(ents))
	}
}

// A write whose rename fails (the target is a non-empty directory)
// leaves the target as it was and no temporary file.
func TestWriteFailureLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "acl")
	if err := os.MkdirAll(filepath.Join(p, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := atomicfile.WriteWith(p, []byte("new"), atomicfile.Options{Mode: 0o640, GID: -1})
	if err == nil {
		t.Fatal("no error")
	}
	if st, serr := os.Stat(filepath.Join(p, "x")); serr != nil || !st.IsDir() {
		t.Errorf("target changed: %v", serr)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries after a failed write, want 1", len(ents))
	}
}
