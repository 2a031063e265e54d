package broker_test

import (
	"bytes"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/internal/svctest"
)

// The generated mosquitto.conf: TLS on the given port for devices, the
// plaintext listener only on loopback, absolute paths, persistence and the
// run-as user; bad combinations are refused with a clear error.
func TestMosquittoConfig(t *testing.T) {
	good := broker.MosquittoConfig{Addr: "127.0.0.1:1883", TLSAddr: ":8883", PasswordFile: "/etc/m/passwords", ACLFile: "/etc/m/acl",
		PersistenceDir: "/var/lib/mosquitto", User: "mosquitto", TLSCertFile: "/etc/m/server.crt", TLSKeyFile: "/etc/m/server.key", TLSCAFile: "/etc/m/ca.crt"}
	var b bytes.Buffer
	if _, err := good.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	conf := b.String()
	for _, want := range []string{"listener 1883 127.0.0.1\n", "listener 8883\ncertfile /etc/m/server.crt\nkeyfile /etc/m/server.key\n", "cafile /etc/m/ca.crt\n",
		"password_file /etc/m/passwords\n", "acl_file /etc/m/acl\n", "persistence true\npersistence_location /var/lib/mosquitto/\n", "user mosquitto\n", "allow_anonymous false\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "require_certificate") {
		t.Errorf("client certificates required without asking:\n%s", conf)
	}
	for name, c := range map[string]func(*broker.MosquittoConfig){
		"plaintext on all interfaces": func(c *broker.MosquittoConfig) { c.Addr = "0.0.0.0:1883" },
		"plaintext on a public host":  func(c *broker.MosquittoConfig) { c.Addr = "192.0.2.1:1883" },
		"plaintext without host":      func(c *broker.MosquittoConfig) { c.Addr = ":1883" },
		"relative password file":      func(c *broker.MosquittoConfig) { c.PasswordFile = "passwords" },
		"relative acl":                func(c *broker.MosquittoConfig) { c.ACLFile = "acl" },
		"tls without key":             func(c *broker.MosquittoConfig) { c.TLSKeyFile = "" },
		"no listener":                 func(c *broker.MosquittoConfig) { c.Addr, c.TLSAddr = "", "" },
		"one port for both":           func(c *broker.MosquittoConfig) { c.TLSAddr = ":1883" },
		"client certs without CA":     func(c *broker.MosquittoConfig) { c.TLSCAFile, c.RequireClientCert = "", true },
		"bad port":                    func(c *broker.MosquittoConfig) { c.TLSAddr = ":88830" },
	} {
		bad := good
		c(&bad)
		if _, err := bad.WriteTo(&bytes.Buffer{}); err == nil || !strings.HasPrefix(err.Error(), "broker: ") {
			t.Errorf("%s: WriteTo = %v, want a broker: error", name, err)
		}
	}
}

// MosquittoFiles writes the three files group-readable by the broker's
// group (0640) in a directory the group can search, and rewrites them the
// same way; bad input writes nothing.
func TestMosquittoFilesMode(t *testing.T) {
	g, err := user.LookupGroup(broker.DefaultMosquittoGroup)
	if err != nil {
		svctest.Missing(t, "the "+broker.DefaultMosquittoGroup+" group ("+err.Error()+")", "run scripts/mosquitto.sh: the Debian package makes it")
	}
	gid, _ := strconv.Atoi(g.Gid)
	dir := filepath.Join(t.TempDir(), "mosq")
	hash, _ := broker.HashPassword("pw")
	f := broker.MosquittoFiles{Dir: dir, Group: broker.DefaultMosquittoGroup,
		Passwords: []broker.PasswordEntry{{User: broker.DefaultCloudUser, Hash: hash}},
		ACL:       broker.ACL{CloudUser: broker.DefaultCloudUser},
		Config:    broker.MosquittoConfig{Addr: "127.0.0.1:1883"}}
	for round := range 2 {
		if err := f.Write(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, name := range []string{broker.MosquittoPasswordFile, broker.MosquittoACLFile, broker.MosquittoConfFile} {
			st, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o640 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
				t.Errorf("round %d: %s: mode %v gid %d, want 0640 and %s's %d", round, name, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid, g.Name, gid)
			}
		}
		f.Passwords = append(f.Passwords, broker.PasswordEntry{User: "dev-" + strconv.Itoa(round), Hash: hash})
	}
	if st, _ := os.Stat(dir); st.Mode().Perm()&0o050 != 0o050 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("directory mode %v gid %d: the broker's group cannot search it", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid)
	}
	before, _ := os.ReadFile(filepath.Join(dir, broker.MosquittoPasswordFile))
	f.Passwords = append(f.Passwords, broker.PasswordEntry{User: "bad:user", Hash: hash})
	if err := f.Write(); err == nil {
		t.Fatal("a bad username was written")
	}
	if after, _ := os.ReadFile(filepath.Join(dir, broker.MosquittoPasswordFile)); !bytes.Equal(before, after) {
		t.Error("a refused write changed the password file")
	}
	f.Passwords, f.Group = f.Passwords[:1], "no-such-group-here"
	if err := f.Write(); err == nil || !strings.Contains(err.Error(), "no-such-group-here") {
		t.Errorf("unknown group: %v", err)
	}
}
