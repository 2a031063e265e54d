package simdev

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/store"
	"beaconvend/controller/config"
)

// cloudSecrets are the files `cloud serve` reads from its data directory.
// The bench writes them itself so that several instances share one
// signing key and one broker account (as a fleet's instances do), and so
// that it knows the broker password to put in Mosquitto's password file.
type cloudSecrets struct {
	Key          ed25519.PrivateKey
	MQTTPassword string
}

func newCloudSecrets() cloudSecrets {
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	pw := make([]byte, 32)
	rand.Read(pw)
	return cloudSecrets{Key: ed25519.NewKeyFromSeed(seed), MQTTPassword: hex.EncodeToString(pw)}
}

// writeTo seeds a data directory with the secrets; each directory gets its
// own MQTT client id from `cloud serve` itself.
func (c cloudSecrets) writeTo(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := config.WriteSecret(filepath.Join(dir, "cloud.key"), []byte(hex.EncodeToString(c.Key.Seed())+"\n")); err != nil {
		return err
	}
	return config.WriteSecret(filepath.Join(dir, "mqtt-cloud.secret"), []byte(c.MQTTPassword+"\n"))
}

// cloudProc is one running `cloud serve`.
type cloudProc struct {
	cmd  *exec.Cmd
	urls map[string]string // http, mqtt, debug
	log  string
	done chan struct{}
	err  error // the exit status, once done is closed
}

// startCloud runs `cloud serve -json` with args, its log in logPath, and
// returns the process and its {"http","mqtt",…} line.
func startCloud(bin, logPath string, args ...string) (*cloudProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"serve", "-dev", "-json"}, args...)...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &cloudProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, out)
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case l, ok := <-line:
		if !ok || json.Unmarshal([]byte(l), &p.urls) != nil || p.urls["http"] == "" || p.urls["mqtt"] == "" {
			cmd.Process.Kill()
			<-p.done
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("simdev: cloud serve printed %q; log:\n%s", l, tail(b, 4000))
		}
		return p, nil
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-p.done
		return nil, errors.New("simdev: cloud serve did not start within 60 s")
	}
}

// stop sends SIGTERM and waits up to within, then kills. It returns the
// exit error, or an error saying it had to kill.
func (p *cloudProc) stop(within time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(within):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("simdev: cloud serve did not stop within %s after SIGTERM", within)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startMosquitto runs Mosquitto with the cloud's generated password file,
// ACL and configuration (cloud/broker) for entries, the files a deployment
// runs it with; like `cloud device add -mosquitto-dir` it logs to its
// output (dir/mosquitto.out) with Mosquitto's default log types, not every
// PUBLISH.
func startMosquitto(bin, dir string, entries []broker.PasswordEntry) (*mosquittoProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var pw, acl bytes.Buffer
	if err := broker.WritePasswordFile(&pw, entries); err != nil {
		return nil, err
	}
	if err := broker.WriteACLFile(&acl, broker.Options{}.Tree, broker.DefaultCloudUser); err != nil {
		return nil, err
	}
	pwFile, aclFile := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	if err := os.WriteFile(pwFile, pw.Bytes(), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(aclFile, acl.Bytes(), 0o600); err != nil {
		return nil, err
	}
	return runMosquitto(bin, dir, func(port int) ([]byte, error) {
		cfg := broker.MosquittoConfig{Addr: fmt.Sprintf("127.0.0.1:%d", port), PasswordFile: pwFile, ACLFile: aclFile}
		if os.Geteuid() == 0 {
			cfg.User = "root"
		}
		var conf bytes.Buffer
		_, err := cfg.WriteTo(&conf)
		return conf.Bytes(), err
	})
}

// provision writes an operator, n water devices named prefix-NNNN and m
// funded phone users into the store at dsn, and returns the devices'
// identities (without the cloud keys) and the phones' bearer tokens.
func provision(ctx context.Context, dsn, prefix string, n, m int) ([]Identity, []string, error) {
	st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4})
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	op, err := st.CreateOperator(ctx, "Bench Co "+prefix)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]Identity, n)
	errs := make([]error, n)
	parallel(n, 8, func(i int) {
		var idKey proxid.Key
		rand.Read(idKey[:])
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			errs[i] = err
			return
		}
		pwb := make([]byte, 32)
		rand.Read(pwb)
		pw := hex.EncodeToString(pwb)
		hash, err := broker.HashPassword(pw)
		if err != nil {
			errs[i] = err
			return
		}
		id := fmt.Sprintf("%s-%05d", prefix, i)
		price := vend.Price{Minor: 50, Per: 1000}
		if errs[i] = st.CreateDevice(ctx, store.Device{ID: id, OperatorID: op.ID, Name: id, IdentityKey: idKey, K: proxid.DefaultK, SignKey: pub, MQTTHash: hash,
			Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "Water 1", Unit: vend.KindWater.Unit(), Price: price, Currency: "EUR"}}}); errs[i] == nil {
			ids[i] = Identity{ID: id, IDKey: idKey, K: proxid.DefaultK, Sign: priv, Password: pw}
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	var toks []string
	for i := range m {
		u, err := st.CreateUser(ctx, fmt.Sprintf("%s-phone%d@bench.example", prefix, i), "bench-password-1")
		if err != nil {
			return nil, nil, err
		}
		tok, err := st.IssueToken(ctx, u.ID, 24*time.Hour)
		if err != nil {
			return nil, nil, err
		}
		if _, err := st.TopUp(ctx, u.ID, vend.Amount{Minor: 1_000_000_000, Currency: "EUR"}, "card_sandbox", "bench-topup"); err != nil {
			return nil, nil, err
		}
		toks = append(toks, tok)
	}
	return ids, toks, nil
}

// countOnline is the number of devices the store has online: the view
// every instance shares, whichever instance handled each device's state.
func countOnline(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE online = 1`).Scan(&n)
	return n, err
}

// waitOnline polls the store until at least n devices are online.
func waitOnline(ctx context.Context, db *sql.DB, n int, within time.Duration) error {
	var last int
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var err error
		if last, err = countOnline(ctx, db); err == nil && last >= n {
			return nil
		}
	}
	return fmt.Errorf("simdev: %d of %d devices online after %s", last, n, within)
}

// scrape sums the values of a Prometheus text-format metric (all series
// whose line starts with name and contains every one of labels) over the
// given /metrics URLs.
func scrape(ctx context.Context, urls []string, name string, labels ...string) (float64, error) {
	var sum float64
	for _, u := range urls {
		req, _ := http.NewRequestWithContext(ctx, "GET", u+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
	lines:
		for sc.Scan() {
			l := sc.Text()
			if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != '{' && l[len(name)] != ' ') {
				continue
			}
			for _, lb := range labels {
				if !strings.Contains(l, lb) {
					continue lines
				}
			}
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum += v
			}
		}
		resp.Body.Close()
		if err := sc.Err(); err != nil {
			return 0, err
		}
	}
	return sum, nil
}

// raiseFileLimit lifts the soft open-files limit to the hard one: ten
// thousand devices are ten thousand sockets in this process and as many in
// the broker (children inherit the limit).
func raiseFileLimit() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, err
		}
	}
	return r.Cur, nil
}
