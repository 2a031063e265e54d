package claim

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/controller/wiring"
	"beaconvend/hw/profile"
)

// Files in the state directory.
const (
	SealKeyFile = "seal.key"      // the sealing private key
	ResetFile   = "reset.pending" // a factory reset under way: the journal paths to set aside, one a line
)

// stagingPrefix names the staging directories Accept makes in the config
// directory; Open removes any left by a crash.
const stagingPrefix = ".claim-"

// replacedPrefix names the directories a reset or an interrupted claim sets
// files aside into.
const replacedPrefix = "replaced-"

// ErrClaim is returned for a state or config directory the board cannot run
// registration mode from (unreadable or malformed seal key, a config that
// does not load, bad options).
var ErrClaim = vend.E(vend.Invalid, "claim.state", "claim: bad claim state")

// Opts configures Open.
type Opts struct {
	// ConfigPath is the controller's config, normally
	// /etc/beaconvend/controller.yaml: its base name must be
	// wiring.ConfigFile, and its directory receives the key files.
	ConfigPath string
	// WiringPath is the board's installed wiring file (package
	// controller/wiring): which outputs and inputs each machine uses.
	WiringPath string
	// Import is passed to wiring.Import (beacon backend, plaintext broker
	// for development); its Force is ignored.
	Import wiring.Opts
	// Now stamps the names of set-aside files; nil means time.Now.
	Now func() time.Time
	// Logger receives what Accept and Reset do; nil discards.
	Logger *slog.Logger
}

// Board is a board's claim state. Its methods are safe for concurrent use.
type Board struct {
	stateDir, cfgPath, cfgDir string
	o                         Opts
	log                       *slog.Logger
	// step is called between the steps of Accept and Reset (a test's
	// fault injection); nil means none.
	step func(name string) error

	mu      sync.Mutex
	key     *ecdh.PrivateKey
	claimed bool
	device  string
	signKey ed25519.PublicKey
	cfgErr  error         // the claimed board's config does not load
	done    chan struct{} // closed when a bundle is accepted
}

// Open reads the claim state from stateDir (created 0700 if missing),
// generating and storing the sealing key at first boot, and removes staging
// directories a crashed claim left in the config directory. The board is
// claimed when o.ConfigPath exists; its config must then load with its keys.
// Errors: ErrClaim, and the file system's.
func Open(stateDir string, o Opts) (*Board, error) {
	if o.ConfigPath == "" || filepath.Base(o.ConfigPath) != wiring.ConfigFile {
		return nil, vend.Errorf(ErrClaim, "config path %q: want a path ending in %s", o.ConfigPath, wiring.ConfigFile)
	}
	if o.WiringPath == "" {
		return nil, vend.Errorf(ErrClaim, "no wiring file: registration mode needs the board's wiring")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfgPath, err := filepath.Abs(o.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	b := &Board{stateDir: stateDir, cfgPath: cfgPath, cfgDir: filepath.Dir(cfgPath), o: o, log: log, done: make(chan struct{})}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("claim: state directory: %w", err)
	}
	if err := b.removeStaging(); err != nil {
		return nil, err
	}
	b.key, err = readKey(filepath.Join(stateDir, SealKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		b.key, err = b.newKey()
		if err == nil {
			log.Info("claim: first boot: sealing key generated", "tag", fmt.Sprintf("%x", b.tag()))
		}
	}
	if err != nil {
		return nil, err
	}
	if _, err := b.finishReset(); err != nil {
		return nil, err
	}
	if err := b.loadClaimed(); err != nil {
		// Claimed, but broken: a factory reset can still recover it.
		b.claimed, b.cfgErr = true, err
		log.Warn("claim: the claimed board's config does not load", "err", err)
	}
	if b.claimed {
		close(b.done)
	}
	return b, nil
}

// ConfigErr returns why the claimed board's config or keys do not load
// (ErrClaim), or nil. Such a board is claimed (its config file exists) and
// runs nothing until a factory reset or a repair.
func (b *Board) ConfigErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfgErr
}

// ConfigPath returns the absolute path of the controller's config.
func (b *Board) ConfigPath() string { return b.cfgPath }

// Registration reports whether the board is in registration mode
// (unclaimed).
func (b *Board) Registration() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.claimed
}

// Claimed is closed once the board is claimed (at once for a board opened
// claimed).
func (b *Board) Claimed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.done
}

// Info returns the board's ClaimInfo value: the sealing public key, and the
// device ID and Ed25519 public key once claimed.
func (b *Board) Info() gattapi.ClaimInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	ci := gattapi.ClaimInfo{State: gattapi.Unclaimed, SealKey: b.key.PublicKey().Bytes()}
	if b.claimed {
		ci.State, ci.Device, ci.SignKey = gattapi.Claimed, b.device, append(ed25519.PublicKey(nil), b.signKey...)
	}
	return ci
}

// SealKey returns the board's X25519 sealing public key (32 bytes).
func (b *Board) SealKey() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.key.PublicKey().Bytes()
}

func (b *Board) tag() []byte { return b.key.PublicKey().Bytes()[:4] }

// Accept claims the board with a sealed bundle (see the package doc for the
// steps) and returns the config's path. Errors: gattapi.ErrNotRegistration
// (claimed already), provision.ErrOpen (claim.open: not sealed to this
// board, or not a sealed bundle at all), gattapi.ErrField (the bundle does
// not decode or validate, or does not fit the board's wiring), and the file
// system's (nothing is then claimed; the board stays unclaimed).
func (b *Board) Accept(sealed []byte) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.claimed {
		return "", vend.Errorf(gattapi.ErrNotRegistration, "claim: device %s is claimed; a factory reset (claim input held at power-up) is needed first", b.device)
	}
	if len(sealed) > gattapi.MaxBundle {
		return "", vend.Errorf(gattapi.ErrTooLong, "claim: sealed bundle of %d bytes, limit %d", len(sealed), gattapi.MaxBundle)
	}
	doc, err := provision.Open(b.key, sealed)
	if err != nil {
		return "", fmt.Errorf("claim: %w", err)
	}
	bundle, err := provision.Decode(bytes.NewReader(doc))
	if err == nil {
		err = bundle.Validate()
	}
	if err != nil {
		return "", vend.Errorf(gattapi.ErrField, "claim: bundle: %v", err)
	}
	w, err := wiring.Load(b.o.WiringPath)
	if err != nil {
		return "", fmt.Errorf("claim: the board's wiring: %w", err)
	}
	if err := os.MkdirAll(b.cfgDir, 0o700); err != nil {
		return "", fmt.Errorf("claim: %w", err)
	}
	stage, err := os.MkdirTemp(b.cfgDir, stagingPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("claim: %w", err)
	}
	defer os.RemoveAll(stage)
	wo := b.o.Import
	wo.Force = false
	if _, err := wiring.Import(bundle, w, stage, wo); err != nil {
		if vend.KindOf(err) == vend.Invalid {
			return "", vend.Errorf(gattapi.ErrField, "claim: bundle %s does not fit the board's wiring: %v", bundle.DeviceID, err)
		}
		return "", fmt.Errorf("claim: stage: %w", err)
	}
	if err := b.hook("staged"); err != nil {
		return "", err
	}
	// A new device never inherits a journal (and its outbox, signed by
	// another device key) left at the path its config names.
	if err := b.setJournalsAside([]string{b.journalPath(w)}, replacedPrefix+b.o.Now().UTC().Format("20060102T150405.000000000Z")); err != nil {
		return "", err
	}
	if err := b.promote(stage); err != nil {
		// The state follows the disk: claimed if controller.yaml made it.
		if lerr := b.loadClaimed(); lerr == nil && b.claimed {
			close(b.done)
		}
		return "", err
	}
	if err := b.loadClaimed(); err != nil {
		return "", err
	}
	if !b.claimed {
		return "", vend.Errorf(ErrClaim, "claim: %s missing after the claim", b.cfgPath)
	}
	close(b.done)
	b.log.Info("claim: claimed", "device", b.device, "config", b.cfgPath)
	return b.cfgPath, nil
}

// promote moves the staged files into the config directory: files a
// crashed promotion left there aside first, then the key files, then
// controller.yaml (the commit), then an fsync of the directory.
func (b *Board) promote(stage string) error {
	if _, err := b.setAside(false, replacedPrefix+b.o.Now().UTC().Format("20060102T150405.000000000Z")); err != nil {
		return err
	}
	ents, err := os.ReadDir(stage)
	if err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); n != wiring.ConfigFile && !strings.HasPrefix(n, ".") {
			names = append(names, n)
		}
	}
	for _, n := range append(names, wiring.ConfigFile) {
		if err := b.hook("promote " + n); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(stage, n), filepath.Join(b.cfgDir, n)); err != nil {
			return fmt.Errorf("claim: install %s: %w", n, err)
		}
	}
	if err := b.hook("promoted"); err != nil {
		return err
	}
	return syncDir(b.cfgDir)
}

// Reset is the factory reset that enters registration mode (see the package
// doc): a new sealing key; then, on a claimed board, a reset intent in the
// state directory naming the old journal, the journal and the config with
// its key files set aside, and the intent removed. Open finishes a reset
// whose intent it finds. It returns the directory the config went to (""
// when there was none). Errors: the file system's; a failed Reset leaves
// the claimed board with a new sealing key (before the intent is stored)
// or a reset that the next Open finishes.
func (b *Board) Reset() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key, err := b.newKey()
	if err != nil {
		return "", err
	}
	b.key = key
	if err := b.hook("rekeyed"); err != nil {
		return "", err
	}
	if _, err := os.Lstat(b.cfgPath); err == nil {
		// The journal the old config names, and the one the next claim's
		// config will name (they differ only if the wiring changed).
		var journals []string
		if c, err := config.Load(b.cfgPath); err == nil {
			journals = append(journals, c.Path(c.Journal))
		}
		if w, err := wiring.Load(b.o.WiringPath); err == nil {
			if j := b.journalPath(w); !slices.Contains(journals, j) {
				journals = append(journals, j)
			}
		}
		if err := config.WriteSecret(filepath.Join(b.stateDir, ResetFile), []byte(strings.Join(journals, "\n")+"\n")); err != nil {
			return "", fmt.Errorf("claim: store the reset intent: %w", err)
		}
		if err := b.hook("intent"); err != nil {
			return "", err
		}
	}
	return b.finishReset()
}

// finishReset carries out a stored reset intent, if any: the journal and
// then the config set aside, the intent removed. Every step is idempotent.
func (b *Board) finishReset() (string, error) {
	intent := filepath.Join(b.stateDir, ResetFile)
	raw, err := os.ReadFile(intent)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("claim: reset intent: %w", err)
	}
	stamp := replacedPrefix + b.o.Now().UTC().Format("20060102T150405.000000000Z")
	journals := strings.Fields(string(raw))
	if err := b.setJournalsAside(journals, stamp); err != nil {
		return "", err
	}
	dir, err := b.setAside(true, stamp)
	if err != nil {
		return dir, err
	}
	if err := os.Remove(intent); err != nil {
		return dir, fmt.Errorf("claim: remove the reset intent: %w", err)
	}
	if err := syncDir(b.stateDir); err != nil {
		return dir, err
	}
	b.claimed, b.device, b.signKey, b.cfgErr = false, "", nil, nil
	if b.isClosed() {
		b.done = make(chan struct{})
	}
	b.log.Warn("claim: factory reset: registration mode", "set_aside", dir, "journals", journals)
	return dir, nil
}

func (b *Board) isClosed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// setAside moves every file Import writes, present in the config directory,
// into a new replaced-<stamp> directory there, controller.yaml first. With
// config false controller.yaml must be absent (an interrupted claim's
// leftovers). It returns the directory ("" when nothing was there).
func (b *Board) setAside(cfg bool, stamp string) (string, error) {
	names := []string{wiring.ConfigFile, wiring.IdentityKeyFile, wiring.DeviceKeyFile, wiring.PasswordFile, wiring.CAFile}
	var present []string
	for _, n := range names {
		_, err := os.Lstat(filepath.Join(b.cfgDir, n))
		switch {
		case err == nil:
			if n == wiring.ConfigFile && !cfg {
				return "", vend.Errorf(ErrClaim, "claim: %s exists", b.cfgPath)
			}
			present = append(present, n)
		case errors.Is(err, fs.ErrNotExist):
		default:
			return "", fmt.Errorf("claim: %w", err)
		}
	}
	if len(present) == 0 {
		return "", nil
	}
	dir := filepath.Join(b.cfgDir, stamp)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("claim: %w", err)
	}
	for _, n := range present {
		if err := b.hook("aside " + n); err != nil {
			return dir, err
		}
		if err := os.Rename(filepath.Join(b.cfgDir, n), filepath.Join(dir, n)); err != nil {
			return dir, fmt.Errorf("claim: set %s aside: %w", n, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return dir, err
	}
	if err := syncDir(b.cfgDir); err != nil {
		return dir, err
	}
	b.log.Info("claim: files set aside", "dir", dir, "files", present)
	return dir, nil
}

// journalPath is the journal a config made from w names, as the controller
// resolves it (relative to the config directory).
func (b *Board) journalPath(w *wiring.Wiring) string {
	j := w.Journal
	if j == "" {
		j = wiring.DefaultJournal
	}
	if !filepath.IsAbs(j) {
		j = filepath.Join(b.cfgDir, j)
	}
	return j
}

// setJournalsAside renames each journal file present to <path>.<stamp>
// (bbolt keeps one file; nothing is deleted).
func (b *Board) setJournalsAside(paths []string, stamp string) error {
	for _, j := range paths {
		if _, err := os.Lstat(j); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := b.hook("journal"); err != nil {
			return err
		}
		if err := os.Rename(j, j+"."+stamp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("claim: set the old journal aside: %w", err)
		}
		if err := syncDir(filepath.Dir(j)); err != nil {
			return err
		}
		b.log.Info("claim: journal set aside", "journal", j, "to", j+"."+stamp)
	}
	return nil
}

// loadClaimed sets the claimed fields from the config directory.
func (b *Board) loadClaimed() error {
	if _, err := os.Stat(b.cfgPath); errors.Is(err, fs.ErrNotExist) {
		b.claimed, b.device, b.signKey, b.cfgErr = false, "", nil, nil
		return nil
	}
	c, err := config.Load(b.cfgPath)
	if err != nil {
		return vend.Errorf(ErrClaim, "claimed board's config: %v", err)
	}
	s, err := c.LoadSecrets()
	if err != nil {
		return vend.Errorf(ErrClaim, "claimed board's keys: %v", err)
	}
	b.claimed, b.device, b.signKey, b.cfgErr = true, c.DeviceID, s.Device.Public().(ed25519.PublicKey), nil
	return nil
}

func (b *Board) removeStaging() error {
	ents, err := os.ReadDir(b.cfgDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), stagingPrefix) {
			if err := os.RemoveAll(filepath.Join(b.cfgDir, e.Name())); err != nil {
				return fmt.Errorf("claim: remove an interrupted claim's staging: %w", err)
			}
			b.log.Info("claim: interrupted claim's staging removed", "dir", e.Name())
		}
	}
	return nil
}

// newKey generates a sealing key and stores it atomically.
func (b *Board) newKey() (*ecdh.PrivateKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("claim: generate sealing key: %w", err)
	}
	if err := config.WriteSecret(filepath.Join(b.stateDir, SealKeyFile), []byte(hex.EncodeToString(k.Bytes())+"\n")); err != nil {
		return nil, fmt.Errorf("claim: store sealing key: %w", err)
	}
	return k, nil
}

func readKey(path string) (*ecdh.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("claim: %w", err)
	}
	d, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, vend.Errorf(ErrClaim, "%s: not hex", path)
	}
	k, err := ecdh.X25519().NewPrivateKey(d)
	if err != nil {
		return nil, vend.Errorf(ErrClaim, "%s: %v", path, err)
	}
	return k, nil
}

func (b *Board) hook(name string) error {
	if b.step == nil {
		return nil
	}
	if err := b.step(name); err != nil {
		return fmt.Errorf("claim: %s: %w", name, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("claim: sync %s: %w", dir, err)
	}
	return nil
}

// Wiring loads the board's installed wiring file and resolves its board
// profile (a built-in name, or a file relative to the wiring file), for
// the claim input and the unclaimed frame's beacon settings. Errors: the
// wiring's and the profile's.
func (b *Board) Wiring() (*wiring.Wiring, *profile.Profile, error) {
	w, err := wiring.Load(b.o.WiringPath)
	if err != nil {
		return nil, nil, err
	}
	p := w.Profile
	if (strings.ContainsRune(p, '/') || strings.HasSuffix(p, ".yaml")) && !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(b.o.WiringPath), p)
	}
	prof, err := profile.Resolve(p)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: profile: %w", b.o.WiringPath, err)
	}
	return w, prof, nil
}
